/**
 * The saved states of one workspace for one model: a snapshot of the whole ingested context
 * plus checkpoints taken at file boundaries while it was ingested.
 *
 *   <dir>/snapshot.klcs          the full state after the last ingest, with its token ids; its MLA
 *                                rows are blocks in blocks/, which it lists by sha256
 *   <dir>/blocks/<sha256>.blk    MLA row blocks (see BlockStore)
 *   <dir>/ckpt-<position>.klcs   KDA parts at a file boundary; MLA rows come from the snapshot
 *
 * MLA caches only grow, so the first p rows of the snapshot are exactly the MLA state at p
 * whenever the token ids before p are unchanged. The KDA recurrent state cannot be rewound, which
 * is why checkpoints exist: after an edit, ingest resumes from the last checkpoint before the
 * first changed token instead of from zero. The blocks of the unchanged prefix are the same too,
 * so the next snapshot refers to them and writes only the tail's.
 *
 * Blocks are collected after every commit and abort: those the snapshot on disk does not list go,
 * but for the ones an open reader or an unfinished writer of this process holds (BlockStore pins).
 * Checkpoints list no blocks, so they keep none.
 */
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import {
  blockStoreFor,
  hashIds,
  openStateFile,
  sameKey,
  StateFileError,
  StateFileWriter,
  writeStateFile,
  type CommitSummary,
  type LatentDtype,
  type LatentReader,
  type LatentSink,
  type StateHeader,
  type StateKey,
  type StateShape,
} from './state-file';
import type { SequenceState } from './types';
import { pathExists } from '../../common/path-exists';

export interface Resumed {
  state: SequenceState;
  /** Tokens covered by the restored state. */
  position: number;
  /**
   * 'snapshot' when the whole saved context was reused, 'checkpoint' when a checkpoint's KDA parts
   * were; 'memory' when the caller's held state was continued as it is.
   */
  from: 'snapshot' | 'checkpoint' | 'memory';
  /** Whether the MLA rows came from the held state instead of the snapshot file. */
  latentFromMemory: boolean;
}

/**
 * The state the caller still holds from the previous ingest. Its MLA rows are the snapshot's (the
 * snapshot was saved from it), so a resume takes them from it, shared, instead of reading
 * gigabytes back from disk and holding two copies on the GPU.
 */
export interface HeldState {
  /** Token ids the held state consumed. */
  ids: ArrayLike<number>;
  /** The held state's first `position` tokens with `kda`'s KDA parts; null: all of it, as it is. */
  at(position: number, kda: SequenceState | null): SequenceState;
}

/** A snapshot being written while its state is computed: the StateFileWriter calls the ingest makes. */
export interface SnapshotWriter {
  putLatent(upTo: number, read: LatentReader): Promise<void>;
  commit(state: SequenceState, read: LatentReader): Promise<void>;
  abort(): Promise<void>;
}

function commonPrefix(a: ArrayLike<number>, b: ArrayLike<number>): number {
  const limit = Math.min(a.length, b.length);
  let n = 0;
  while (n < limit && a[n] === b[n]) n++;
  return n;
}

const SNAPSHOT = 'snapshot.klcs';
const CKPT = /^ckpt-(\d+)\.klcs$/;


function blocks(n: number): string {
  return `${n} block${n === 1 ? '' : 's'}`;
}

function megabytes(bytes: number): string {
  return `${(bytes / 1e6).toFixed(bytes < 1e7 ? 1 : 0)} MB`;
}

export class RepoStateStore {
  constructor(
    readonly dir: string,
    readonly key: StateKey,
    private readonly log: (line: string) => void = () => {},
  ) {}

  get snapshotPath(): string {
    return join(this.dir, SNAPSHOT);
  }

  /**
   * The longest saved prefix of `ids` that can be restored, or null. Unusable files (corrupt,
   * truncated, other model or packer) are reported through the log and deleted. With `sink`, MLA
   * rows stream to it (a device) instead of into host caches.
   */
  async resume(ids: ArrayLike<number>, sink?: LatentSink, held?: HeldState): Promise<Resumed | null> {
    const snap = await this.openValid(this.snapshotPath);
    if (!snap) {
      await this.removeCheckpoints(0);
      return null;
    }
    try {
      const old = await snap.readIds();
      const common = commonPrefix(old, ids);
      // The held state counts only where it is the snapshot's state and agrees with the new ids.
      const heldCovers = held && held.ids.length === old.length && commonPrefix(held.ids, old) === old.length ? common : -1;
      if (common === old.length) {
        if (held && heldCovers === old.length) return { state: held.at(old.length, null), position: old.length, from: 'memory', latentFromMemory: true };
        return { state: await snap.readState(old.length, sink), position: old.length, from: 'snapshot', latentFromMemory: false };
      }
      for (const position of (await this.checkpointPositions()).filter((p) => p <= common).sort((a, b) => b - a)) {
        const ckpt = await this.openValid(this.checkpointPath(position));
        if (!ckpt) continue;
        try {
          if (ckpt.header.length !== position || ckpt.header.prefixHash !== hashIds(ids, position)) {
            this.log(`checkpoint at ${position} belongs to other content; removing it`);
            await fs.rm(ckpt.file, { force: true });
            continue;
          }
          const kda = await ckpt.readState(0);
          if (held && heldCovers >= position) return { state: held.at(position, kda), position, from: 'checkpoint', latentFromMemory: true };
          const mla = await snap.readState(position, sink);
          const layers = kda.layers.map((l, i) => (l.kind === 'kda' ? l : mla.layers[i]));
          return { state: { length: position, layers }, position, from: 'checkpoint', latentFromMemory: false };
        } finally {
          await ckpt.close();
        }
      }
      return null;
    } catch (e) {
      if (!(e instanceof StateFileError)) throw e;
      this.log(e.message);
      await this.clear();
      return null;
    } finally {
      await snap.close();
    }
  }

  /** The `meta` the saved snapshot was written with, or undefined when there is no usable snapshot. */
  async snapshotMeta(): Promise<Record<string, unknown> | undefined> {
    const snap = await this.openValid(this.snapshotPath);
    if (!snap) return undefined;
    try {
      return snap.header.meta;
    } finally {
      await snap.close();
    }
  }

  /** Saves the KDA parts of `state` as a checkpoint at its current length; `given`: they are a copy the store may take. */
  async saveCheckpoint(state: SequenceState, ids: ArrayLike<number>, given = false): Promise<void> {
    await fs.mkdir(this.dir, { recursive: true });
    await writeStateFile(this.checkpointPath(state.length), state, { key: this.key, ids, storeIds: false, withLatent: false, stateGiven: given });
  }

  async saveSnapshot(state: SequenceState, ids: ArrayLike<number>, meta?: Record<string, unknown>): Promise<void> {
    await fs.mkdir(this.dir, { recursive: true });
    await this.committed(await writeStateFile(this.snapshotPath, state, { key: this.key, ids, meta, sharedBlocks: true }));
  }

  /**
   * A snapshot of a state of `shape` written while it is computed (see StateFileWriter): the
   * previous snapshot stays until commit(), so a failed or cancelled ingest leaves it as it was.
   * `resumedRows`: how many leading MLA rows of the state came from the current snapshot (read
   * from it, or held in memory since it was saved); its full blocks among them, where its ids agree
   * with `ids`, are referred to instead of being read from the LatentReader and written again.
   */
  async openSnapshot(shape: StateShape, ids: ArrayLike<number>, meta?: Record<string, unknown>, latentDtype?: LatentDtype, resumedRows = 0): Promise<SnapshotWriter> {
    const reuse = resumedRows > 0 ? await this.reusable(ids, resumedRows) : undefined;
    const writer = await StateFileWriter.open(this.snapshotPath, shape, { key: this.key, ids, meta, latentDtype, sharedBlocks: true, reuse });
    return {
      putLatent: (upTo, read) => writer.putLatent(upTo, read),
      commit: async (state, read) => this.committed(await writer.commit(state, read)),
      abort: async () => {
        await writer.abort();
        await this.collectAfterAbort();
      },
    };
  }

  /** The current snapshot's header and how many of its leading rows belong to `ids` too (at most `rows`); undefined when it cannot serve. */
  private async reusable(ids: ArrayLike<number>, rows: number): Promise<{ header: StateHeader; rows: number } | undefined> {
    let snap;
    try {
      snap = await openStateFile(this.snapshotPath);
    } catch (e) {
      if (e instanceof StateFileError) return undefined;
      throw e;
    }
    try {
      if (!sameKey(snap.header.key, this.key)) return undefined;
      return { header: snap.header, rows: Math.min(rows, commonPrefix(await snap.readIds(), ids)) };
    } catch (e) {
      if (e instanceof StateFileError) return undefined;
      throw e;
    } finally {
      await snap.close();
    }
  }

  private async committed(summary: CommitSummary): Promise<void> {
    const removed = await this.collect(summary.blocks);
    this.log(
      `state: snapshot written: ${blocks(summary.blocksWritten)} (${megabytes(summary.blockBytesWritten)}) new, ${summary.blocksReused} reused, ` +
        `${megabytes(summary.fileBytes)} of ids and KDA state in ${SNAPSHOT}${removed > 0 ? `; ${blocks(removed)} no longer used removed` : ''}`,
    );
  }

  /** Removes the blocks of an abandoned snapshot: all that the snapshot on disk does not list; none while it cannot be read. */
  private async collectAfterAbort(): Promise<void> {
    let keep = new Set<string>();
    if (await pathExists(this.snapshotPath)) {
      try {
        const snap = await openStateFile(this.snapshotPath);
        keep = snap.blocks();
        await snap.close();
      } catch (e) {
        if (e instanceof StateFileError) return;
        throw e;
      }
    }
    await this.collect(keep);
  }

  /** Removes blocks not in `keep`; a failure only leaves them for the next collection, so it is logged, not thrown. */
  private async collect(keep: ReadonlySet<string>): Promise<number> {
    try {
      return await blockStoreFor(this.snapshotPath).collect(keep);
    } catch (e) {
      this.log(`state: could not remove unused blocks in ${join(this.dir, 'blocks')} (${(e as Error).message}); they are removed after the next ingest`);
      return 0;
    }
  }

  /** Removes checkpoints beyond `position`: they describe content that is about to change. */
  async removeCheckpoints(after: number): Promise<void> {
    for (const p of await this.checkpointPositions()) {
      if (p > after) await fs.rm(this.checkpointPath(p), { force: true });
    }
  }

  async clear(): Promise<void> {
    await fs.rm(this.dir, { recursive: true, force: true });
  }

  async checkpointPositions(): Promise<number[]> {
    let names: string[];
    try {
      names = await fs.readdir(this.dir);
    } catch {
      return [];
    }
    return names.flatMap((n) => {
      const m = CKPT.exec(n);
      return m ? [Number(m[1])] : [];
    });
  }

  private checkpointPath(position: number): string {
    return join(this.dir, `ckpt-${position}.klcs`);
  }

  private async openValid(file: string) {
    if (!(await pathExists(file))) return null;
    try {
      const f = await openStateFile(file);
      if (!sameKey(f.header.key, this.key)) {
        this.log(`saved state ${file} was made by another model, tokenizer or packer version; rebuilding it`);
        await f.close();
        await fs.rm(file, { force: true });
        return null;
      }
      return f;
    } catch (e) {
      if (!(e instanceof StateFileError)) throw e;
      this.log(e.message);
      await fs.rm(file, { force: true });
      return null;
    }
  }
}
