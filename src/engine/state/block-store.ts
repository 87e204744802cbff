/**
 * Content-addressed MLA row blocks shared by the state files of one folder (the repository store):
 *
 *   <dir>/<sha256>.blk   the raw bytes of one block (f32 or bf16 rows, as the referring header says)
 *
 * A block is named by the sha256 of its bytes alone: whatever rows, width or dtype a header reads
 * them as, equal bytes are the same block, and the header that refers to a block checks its size.
 * So a snapshot written after an edit near the end refers to the blocks of the unchanged prefix
 * that are already here and writes only the rest.
 *
 * Removing blocks (collect) must never take one that a state file open in this process still
 * reads, or one that a writer in this process has decided to reuse or has written but not yet
 * committed: both pin the blocks they use. Presence checks and collection take turns per folder,
 * so a block cannot be found present by a writer and removed before that writer pins it.
 */
import { promises as fs } from 'node:fs';
import { join, resolve } from 'node:path';
import { openAtomic, writeError } from '../../common/atomic';

const BLOCK_NAME = /^[0-9a-f]{64}\.blk$/;

/** Pins per absolute block path: blocks in use by open readers and unfinished writers of this process. */
const pins = new Map<string, number>();
/** Per block folder, the tail of the queue that presence checks and collections take turns on. */
const turns = new Map<string, Promise<unknown>>();

export class BlockStore {
  readonly dir: string;

  constructor(dir: string) {
    this.dir = resolve(dir);
  }

  path(sha256: string): string {
    return join(this.dir, `${sha256}.blk`);
  }

  /** Keeps the blocks from being collected until the returned function is called (once). */
  pin(shas: Iterable<string>): () => void {
    const paths = [...shas].map((s) => this.path(s));
    for (const p of paths) pins.set(p, (pins.get(p) ?? 0) + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      for (const p of paths) {
        const n = (pins.get(p) ?? 0) - 1;
        if (n > 0) pins.set(p, n);
        else pins.delete(p);
      }
    };
  }

  /** Whether a block is present with `bytes` bytes (its content is checked when it is read). */
  async has(sha256: string, bytes: number): Promise<boolean> {
    return this.inTurn(async () => {
      try {
        return (await fs.stat(this.path(sha256))).size === bytes;
      } catch {
        return false;
      }
    });
  }

  /**
   * Stores `data`, whose sha256 is `sha256`, unless a block of that name and size is present.
   * The caller pins it first. Returns whether it was written.
   */
  async put(sha256: string, data: Uint8Array): Promise<boolean> {
    if (await this.has(sha256, data.byteLength)) return false;
    const file = this.path(sha256);
    const pending = await openAtomic(file);
    try {
      await pending.handle.write(data, 0, data.byteLength, 0);
    } catch (e) {
      await pending.abort();
      throw writeError(file, e);
    }
    await pending.commit();
    return true;
  }

  /** The bytes of a block, or null when it is missing; a size other than `bytes` is an error the caller reports. */
  async read(sha256: string, bytes: number): Promise<Buffer | null> {
    let data: Buffer;
    try {
      data = await fs.readFile(this.path(sha256));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw e;
    }
    if (data.length !== bytes) throw new Error(`block ${this.path(sha256)} has ${data.length} bytes, ${bytes} expected`);
    return data;
  }

  /** Removes every block but those in `keep` and those pinned in this process; returns how many went. */
  async collect(keep: ReadonlySet<string>): Promise<number> {
    return this.inTurn(async () => {
      let names: string[];
      try {
        names = await fs.readdir(this.dir);
      } catch {
        return 0;
      }
      let removed = 0;
      for (const name of names) {
        if (!BLOCK_NAME.test(name) || keep.has(name.slice(0, 64))) continue;
        const p = join(this.dir, name);
        if (pins.has(p)) continue;
        await fs.rm(p, { force: true });
        removed++;
      }
      return removed;
    });
  }

  private inTurn<T>(fn: () => Promise<T>): Promise<T> {
    const before = turns.get(this.dir) ?? Promise.resolve();
    const mine = before.then(fn, fn);
    const tail = mine.catch(() => {});
    turns.set(this.dir, tail);
    void tail.then(() => {
      if (turns.get(this.dir) === tail) turns.delete(this.dir);
    });
    return mine;
  }
}
