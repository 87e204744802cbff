/**
 * On-disk format of a saved sequence state (a RepoState snapshot, a checkpoint or a standalone file).
 *
 *   offset 0   "KLCSTATE"                     8 bytes magic
 *          8   u32 LE format version
 *         12   u32 LE header length H
 *         16   sha256 of the header bytes      32 bytes
 *         48   header: UTF-8 JSON (StateHeader)
 *     48 + H   in-file segments, back to back, in header order; each has its own sha256
 *
 * Segments hold i32 (token ids), f32 (KDA states; MLA rows) or bf16 (MLA rows of a state whose
 * cache is bf16, as the CUDA backend keeps it in tensor-core mode: half the bytes, no rounding,
 * since the values are already bf16). Readers widen bf16 rows to fp32, so any backend restores
 * either kind.
 *
 * Per-segment checksums let a reader verify only what it uses: resuming from a checkpoint at
 * token p reads the first p rows of each MLA cache, not the whole multi-gigabyte state. MLA rows are
 * therefore split into blocks of BLOCK_ROWS rows (`layer.<i>.latent.<b>`). In the repository store
 * a block is not in the file but in the blocks/ folder beside it, named by its sha256 (see
 * BlockStore; such a segment has no offset): a snapshot written after an edit near the end refers
 * to the unchanged prefix's blocks already there and writes only the tail's. A standalone file
 * keeps every segment in the file. Files and blocks are written to a temp file and renamed, blocks
 * before the file that refers to them, so a reader sees an old complete state or a new complete
 * one, never a torn one.
 *
 * Versions: 3 added blocks outside the file; 2 added bf16; versions 1 and 2 (every segment in the
 * file) read unchanged, so a cache saved before blocks existed still resumes, and the next
 * snapshot is written as version 3.
 */
import { createHash } from 'node:crypto';
import { sha256Hex, sha256Taking } from './hash-pool';
import { promises as fs } from 'node:fs';
import { dirname, join } from 'node:path';
import { openAtomic, writeError, type PendingFile } from '../../common/atomic';
import { UserError } from '../../common/errors';
import { BlockStore } from './block-store';
import { LatentCache } from './latent-cache';
import { latentBf16, latentF32, type LatentRows } from './latent-rows';
import type { LayerState, MlaLayerState, SequenceState } from './types';

export const STATE_FORMAT_VERSION = 3;
/** Versions this reader takes: 1 and 2 differ from 3 only in lacking bf16 segments (1) and blocks outside the file (1, 2). */
const READABLE_VERSIONS = [1, 2, 3];
const MAGIC = Buffer.from('KLCSTATE', 'latin1');
const PREAMBLE = 48;
const BLOCK_ROWS = 4096;
const SHA256_HEX = /^[0-9a-f]{64}$/;

/** The block folder of a state file whose MLA blocks are kept outside it. */
export function blockStoreFor(file: string): BlockStore {
  return new BlockStore(join(dirname(file), 'blocks'));
}

/** Identifies what a state was computed from; a state is used only when its key matches. */
export interface StateKey {
  modelId: string;
  packerVersion: string;
  tokenizerId: string;
}

export type SegmentDtype = 'f32' | 'i32' | 'bf16';
/** How MLA rows are stored. */
export type LatentDtype = 'f32' | 'bf16';
const DTYPE_BYTES: Record<SegmentDtype, number> = { f32: 4, i32: 4, bf16: 2 };

export interface SegmentInfo {
  name: string;
  dtype: SegmentDtype;
  /** Element count. */
  count: number;
  /** Byte offset from the start of the segment area; absent for a block kept in the block folder (version 3). */
  offset?: number;
  sha256: string;
}

export interface LayerInfo {
  kind: 'kda' | 'mla';
  /** kda: lengths of conv and S; mla: row width and rows saved (0 in a checkpoint). */
  convLength?: number;
  stateLength?: number;
  width?: number;
  rows?: number;
}

export interface StateHeader {
  format: 'kimi-linear-code/state';
  key: StateKey;
  /** Tokens the state has consumed. */
  length: number;
  /** sha256 of the first `length` token ids (int32 LE); identifies the prefix. */
  prefixHash: string;
  layers: LayerInfo[];
  segments: SegmentInfo[];
  /** Free-form facts for people and tools (e.g. packed files, creation time). */
  meta?: Record<string, unknown>;
}

export function hashIds(ids: ArrayLike<number>, length = ids.length): string {
  const buf = Buffer.alloc(length * 4);
  for (let i = 0; i < length; i++) buf.writeInt32LE(ids[i], i * 4);
  return createHash('sha256').update(buf).digest('hex');
}

/**
 * Reads rows [from, from + count) of MLA layer `layer` of the state being written (bf16 bits where
 * the rows are kept so), as a fresh array the writer keeps (and may hand to another thread).
 */
export type LatentReader = (layer: number, from: number, count: number) => LatentRows;

/**
 * Receives restored MLA rows of a layer instead of its host cache (a device backend appends them
 * where it computes): bf16 bits where the file holds bf16 rows, else fp32.
 */
export type LatentSink = (ls: MlaLayerState, rows: LatentRows, count: number) => void;

const ZERO_SHA = '0'.repeat(64);

/** Bytes of checksummed segments still being hashed and written before a caller waits: bounds host memory. */
const IN_FLIGHT_BYTES = 256 * 2 ** 20;

type Hashed = { sha: string; bytes: Uint8Array };

/** The shape of the state a file will hold: what its header and segment layout follow from. */
export interface StateShape {
  /** Tokens the state will have consumed. */
  length: number;
  layers: ({ kind: 'kda'; convLength: number; stateLength: number } | { kind: 'mla'; width: number })[];
}

export function shapeOf(state: SequenceState): StateShape {
  return {
    length: state.length,
    layers: state.layers.map((l) => (l.kind === 'kda' ? { kind: 'kda', convLength: l.conv.length, stateLength: l.S.length } : { kind: 'mla', width: l.cache.width })),
  };
}

export interface StateFileOptions {
  key: StateKey;
  /** The ids the state consumed (at least `length` of them). */
  ids?: ArrayLike<number>;
  meta?: Record<string, unknown>;
  /** false: a checkpoint, which saves KDA parts only and takes MLA rows from the snapshot. */
  withLatent?: boolean;
  /** false: record only the hash of the ids, not the ids themselves. */
  storeIds?: boolean;
  /**
   * How MLA rows are stored (default f32): bf16 for a state whose cache is bf16 (see
   * Model.latentDtype); fp32 rows given to a bf16 file are rounded to nearest even.
   */
  latentDtype?: LatentDtype;
  /** MLA blocks go to the block folder beside the file (blockStoreFor) instead of into it: the repository store. */
  sharedBlocks?: boolean;
  /**
   * With sharedBlocks: a state file in the same folder whose first `rows` MLA rows are those of the
   * state being written. Its full blocks below `rows` that are present are referred to, not read
   * from the LatentReader nor written again.
   */
  reuse?: { header: StateHeader; rows: number };
}

/** What a commit wrote. */
export interface CommitSummary {
  /** Bytes of the state file itself (header, ids, KDA parts and any in-file MLA rows). */
  fileBytes: number;
  blocksWritten: number;
  blockBytesWritten: number;
  /** Blocks referred to without being written: those of `reuse`, and any found present with the same bytes. */
  blocksReused: number;
  /** sha256 of every block the file refers to. */
  blocks: Set<string>;
}

/**
 * A state file written segment by segment, in any order, while other work goes on: the layout is
 * fixed from the state's shape when it opens (a header with placeholder checksums: a sha256 in hex
 * is always 64 characters, so the header keeps its length), each segment is hashed on the thread
 * pool and written at its offset (or, with sharedBlocks, an MLA block as its own file), and
 * commit() fills in the checksums and renames the temp file over the target. Ingest streams a
 * snapshot's MLA rows through it block by block as the prefill produces them, so the state is on
 * disk when the prefill ends instead of being written after it.
 */
export class StateFileWriter {
  private readonly segments = new Map<string, SegmentInfo>();
  private readonly written = new Set<string>();
  private readonly inFlight: { bytes: number; done: Promise<void> }[] = [];
  private inFlightBytes = 0;
  private failure: unknown = null;
  /** Per MLA layer, how many of its rows are written (whole blocks only, but the last). */
  private readonly latentDone: number[];
  private readonly unpins: (() => void)[] = [];
  private blocksWritten = 0;
  private blockBytesWritten = 0;
  private blocksReused = 0;

  private constructor(
    private readonly file: string,
    private readonly pending: PendingFile,
    private readonly header: StateHeader,
    private readonly dataStart: number,
    private readonly shape: StateShape,
    private readonly blocks: BlockStore | null,
  ) {
    for (const s of header.segments) this.segments.set(s.name, s);
    this.latentDone = shape.layers.map(() => 0);
  }

  static async open(file: string, shape: StateShape, opts: StateFileOptions): Promise<StateFileWriter> {
    const withLatent = opts.withLatent ?? true;
    if (opts.ids && opts.ids.length < shape.length) throw new Error(`writeStateFile: ${opts.ids.length} ids for a state of ${shape.length} tokens`);
    const segments: SegmentInfo[] = [];
    let offset = 0;
    const add = (name: string, dtype: SegmentDtype, count: number, inFile = true) => {
      if (!inFile) {
        segments.push({ name, dtype, count, sha256: ZERO_SHA });
        return;
      }
      segments.push({ name, dtype, count, offset, sha256: ZERO_SHA });
      offset += count * DTYPE_BYTES[dtype];
    };
    const latentDtype = opts.latentDtype ?? 'f32';
    const shared = opts.sharedBlocks ?? false;
    if (opts.ids && (opts.storeIds ?? true)) add('ids', 'i32', shape.length);
    const layers: LayerInfo[] = shape.layers.map((l, i) => {
      if (l.kind === 'kda') {
        add(`layer.${i}.conv`, 'f32', l.convLength);
        add(`layer.${i}.S`, 'f32', l.stateLength);
        return { kind: 'kda', convLength: l.convLength, stateLength: l.stateLength };
      }
      if (!withLatent) return { kind: 'mla', width: l.width, rows: 0 };
      for (let r = 0, b = 0; r < shape.length; r += BLOCK_ROWS, b++) add(`layer.${i}.latent.${b}`, latentDtype, Math.min(BLOCK_ROWS, shape.length - r) * l.width, !shared);
      return { kind: 'mla', width: l.width, rows: shape.length };
    });
    const header: StateHeader = {
      format: 'kimi-linear-code/state',
      key: opts.key,
      length: shape.length,
      prefixHash: opts.ids ? hashIds(opts.ids, shape.length) : '',
      layers,
      segments,
      ...(opts.meta ? { meta: opts.meta } : {}),
    };
    const dataStart = PREAMBLE + Buffer.byteLength(JSON.stringify(header), 'utf8');
    const pending = await openAtomic(file);
    const writer = new StateFileWriter(file, pending, header, dataStart, shape, shared ? blockStoreFor(file) : null);
    const ids = opts.ids;
    if (!withLatent) shape.layers.forEach((_, i) => (writer.latentDone[i] = shape.length));
    try {
      if (opts.reuse && shared && withLatent) await writer.reuseBlocks(opts.reuse.header, opts.reuse.rows, latentDtype);
      if (ids && writer.segments.has('ids')) await writer.put('ids', Int32Array.from({ length: shape.length }, (_, i) => ids[i]));
    } catch (e) {
      await writer.abort();
      throw e;
    }
    return writer;
  }

  /**
   * Takes over, per MLA layer, the leading full blocks of `old` that lie wholly below `rows` and
   * are present in the block folder, as if they had been written: putLatent starts after them.
   */
  private async reuseBlocks(old: StateHeader, rows: number, dtype: LatentDtype): Promise<void> {
    const oldSegments = new Map(old.segments.map((s) => [s.name, s]));
    for (let i = 0; i < this.shape.layers.length; i++) {
      const layer = this.shape.layers[i];
      const oldLayer = old.layers[i];
      if (layer.kind !== 'mla' || oldLayer?.kind !== 'mla' || oldLayer.width !== layer.width) continue;
      const count = BLOCK_ROWS * layer.width;
      for (let b = 0; (b + 1) * BLOCK_ROWS <= Math.min(rows, this.shape.length, oldLayer.rows ?? 0); b++) {
        const name = `layer.${i}.latent.${b}`;
        const was = oldSegments.get(name);
        if (!was || was.offset !== undefined || was.dtype !== dtype || was.count !== count || !SHA256_HEX.test(was.sha256)) break;
        this.unpins.push(this.blocks!.pin([was.sha256]));
        if (!(await this.blocks!.has(was.sha256, count * DTYPE_BYTES[dtype]))) break;
        this.segments.get(name)!.sha256 = was.sha256;
        this.written.add(name);
        this.latentDone[i] = (b + 1) * BLOCK_ROWS;
        this.blocksReused++;
      }
    }
  }

  /**
   * Queues one segment's values, which must not change until commit(); resolves once the queue is
   * small enough to take more. `given`: data is the caller's own fresh array, which the writer may
   * take (its memory is hashed off the main thread and the caller's view is left detached).
   */
  async put(name: string, data: LatentRows | Int32Array, given = false): Promise<void> {
    const info = this.segments.get(name);
    if (!info) throw new Error(`writeStateFile: no segment ${name} in ${this.file}`);
    if (this.written.has(name)) throw new Error(`writeStateFile: segment ${name} written twice`);
    if (data.length !== info.count) throw new Error(`writeStateFile: segment ${name} has ${data.length} values, planned ${info.count}`);
    if ((info.dtype === 'i32') !== data instanceof Int32Array) throw new Error(`writeStateFile: segment ${name} holds ${info.dtype}, given a ${data.constructor.name}`);
    this.throwIfFailed();
    this.written.add(name);
    const raw = data instanceof Int32Array ? data : info.dtype === 'bf16' ? latentBf16(data) : latentF32(data);
    const bytes = new Uint8Array(raw.buffer, raw.byteOffset, raw.byteLength);
    const length = bytes.byteLength;
    // A fresh copy made here (rounding fp32 rows to bf16) is the writer's own to give away.
    const hashed = given || raw !== data ? sha256Taking(bytes) : Promise.resolve({ sha: sha256Hex(bytes), bytes });
    const stored = info.offset === undefined ? this.putBlock(info, hashed) : this.putInline(info, info.offset, hashed);
    const done = stored.catch((e: unknown) => {
      this.failure ??= e;
    });
    this.inFlight.push({ bytes: length, done });
    this.inFlightBytes += length;
    while (this.inFlightBytes > IN_FLIGHT_BYTES && this.inFlight.length > 0) await this.settleOldest();
    this.throwIfFailed();
  }

  /** A segment kept in the file itself, at its offset. */
  private async putInline(info: SegmentInfo, offset: number, hashed: Promise<Hashed>): Promise<void> {
    const { sha, bytes } = await hashed;
    await this.pending.handle.write(bytes, 0, bytes.length, this.dataStart + offset);
    info.sha256 = sha;
  }

  /** A block is named by its hash, so it is hashed before it is stored (unless already present). */
  private async putBlock(info: SegmentInfo, hashed: Promise<Hashed>): Promise<void> {
    const { sha, bytes } = await hashed;
    this.unpins.push(this.blocks!.pin([sha]));
    if (await this.blocks!.put(sha, Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength))) {
      this.blocksWritten++;
      this.blockBytesWritten += bytes.length;
    } else {
      this.blocksReused++;
    }
    info.sha256 = sha;
  }

  /**
   * Writes every MLA block whose rows all lie below `upTo` (and a last, shorter block once `upTo`
   * is the whole length), read through `read`: called after each prefill slice. Reused blocks are
   * not read.
   */
  async putLatent(upTo: number, read: LatentReader): Promise<void> {
    for (let i = 0; i < this.shape.layers.length; i++) {
      const layer = this.shape.layers[i];
      if (layer.kind !== 'mla') continue;
      while (this.latentDone[i] < this.shape.length) {
        const from = this.latentDone[i];
        const rows = Math.min(BLOCK_ROWS, this.shape.length - from);
        if (from + rows > upTo) break;
        const got = read(i, from, rows);
        if (got.length !== rows * layer.width) throw new Error(`writeStateFile: layer ${i} gave ${got.length} values for ${rows} rows of ${layer.width}`);
        await this.put(`layer.${i}.latent.${from / BLOCK_ROWS}`, got, true);
        this.latentDone[i] = from + rows;
      }
    }
  }

  /**
   * Writes the KDA parts of `state` (which must have the planned shape), the MLA rows not yet
   * written, and the header; then renames: blocks are all in place before the file that refers to them.
   */
  async commit(state: SequenceState, read: LatentReader, stateGiven = false): Promise<CommitSummary> {
    if (state.length !== this.shape.length) throw new Error(`writeStateFile: the state has ${state.length} tokens, ${this.shape.length} planned`);
    for (let i = 0; i < state.layers.length; i++) {
      const l = state.layers[i];
      if (l.kind === 'kda') {
        await this.put(`layer.${i}.conv`, l.conv, stateGiven);
        await this.put(`layer.${i}.S`, l.S, stateGiven);
      }
    }
    await this.putLatent(this.shape.length, read);
    while (this.inFlight.length > 0) await this.settleOldest();
    this.throwIfFailed();
    const missing = [...this.segments.keys()].filter((n) => !this.written.has(n));
    if (missing.length > 0) throw new Error(`writeStateFile: segments never written: ${missing.slice(0, 3).join(', ')}`);
    const headerBytes = Buffer.from(JSON.stringify(this.header), 'utf8');
    if (PREAMBLE + headerBytes.length !== this.dataStart) throw new Error('writeStateFile: the header changed length when its checksums were filled in');
    const preamble = Buffer.alloc(PREAMBLE);
    MAGIC.copy(preamble, 0);
    preamble.writeUInt32LE(STATE_FORMAT_VERSION, 8);
    preamble.writeUInt32LE(headerBytes.length, 12);
    createHash('sha256').update(headerBytes).digest().copy(preamble, 16);
    await this.pending.handle.write(Buffer.concat([preamble, headerBytes]), 0, this.dataStart, 0);
    await this.pending.commit();
    this.releasePins();
    const inFile = this.header.segments.filter((s) => s.offset !== undefined);
    return {
      fileBytes: this.dataStart + inFile.reduce((n, s) => n + s.count * DTYPE_BYTES[s.dtype], 0),
      blocksWritten: this.blocksWritten,
      blockBytesWritten: this.blockBytesWritten,
      blocksReused: this.blocksReused,
      blocks: new Set(this.header.segments.filter((s) => s.offset === undefined).map((s) => s.sha256)),
    };
  }

  /** Drops the temp file; the file it was to replace stays as it was (blocks already stored stay until collected). */
  async abort(): Promise<void> {
    await Promise.allSettled(this.inFlight.map((f) => f.done));
    this.inFlight.length = 0;
    this.releasePins();
    await this.pending.abort();
  }

  private releasePins(): void {
    for (const unpin of this.unpins.splice(0)) unpin();
  }

  private async settleOldest(): Promise<void> {
    const f = this.inFlight.shift()!;
    await f.done;
    this.inFlightBytes -= f.bytes;
  }

  private throwIfFailed(): void {
    if (this.failure) throw this.failure;
  }
}

/**
 * Writes `state` (and optionally the token ids it consumed) to `file` atomically, segment by
 * segment, MLA rows in blocks of BLOCK_ROWS through `latent` (default: the state's host caches),
 * so a 1M-token state never needs a host copy of its whole cache.
 */
/** `stateGiven`: the state's KDA arrays are the caller's fresh copies, which the writer may take (see put). */
export async function writeStateFile(file: string, state: SequenceState, opts: StateFileOptions & { latent?: LatentReader; stateGiven?: boolean }): Promise<CommitSummary> {
  state.layers.forEach((layer, i) => {
    if (!opts.latent && (opts.withLatent ?? true) && layer.kind === 'mla' && layer.cache.length !== state.length) {
      throw new Error(`writeStateFile: layer ${i} caches ${layer.cache.length} tokens but the state has ${state.length}`);
    }
  });
  const read: LatentReader = opts.latent ?? ((i, from, count) => (state.layers[i] as MlaLayerState).cache.rows(from, count));
  const writer = await StateFileWriter.open(file, shapeOf(state), opts);
  try {
    return await writer.commit(state, read, opts.stateGiven);
  } catch (e) {
    await writer.abort();
    throw writeError(file, e);
  }
}

/** Why a state file cannot be used. The caller reports it and rebuilds; the file is never used. */
export class StateFileError extends UserError {
  constructor(file: string, problem: string) {
    super(`saved state ${file} is unusable (${problem}); it will be rebuilt`, file);
  }
}

export interface OpenedStateFile {
  file: string;
  header: StateHeader;
  /** Reads and verifies the token ids (only when the file has them). */
  readIds(): Promise<Int32Array>;
  /**
   * Reads and verifies the state, with MLA caches truncated to `upTo` tokens (default: all).
   * KDA parts are always those at `length`; a caller that reads fewer MLA rows combines them with
   * a checkpoint's KDA parts (see RepoStateStore). A checkpoint is read with upTo = 0. With `sink`,
   * MLA rows go there block by block instead of into the returned state's host caches.
   */
  readState(upTo?: number, sink?: LatentSink): Promise<SequenceState>;
  /** sha256 of every block in the block folder that the file refers to (none for a standalone file). */
  blocks(): Set<string>;
  close(): Promise<void>;
}

/** Opens a state file and validates everything but the segment contents (checked when read). */
export async function openStateFile(file: string): Promise<OpenedStateFile> {
  let handle: fs.FileHandle;
  try {
    handle = await fs.open(file, 'r');
  } catch (e) {
    throw new StateFileError(file, `cannot open: ${(e as Error).message}`);
  }
  try {
    const size = (await handle.stat()).size;
    if (size < PREAMBLE) throw new StateFileError(file, `truncated: ${size} bytes`);
    const pre = Buffer.alloc(PREAMBLE);
    await handle.read(pre, 0, PREAMBLE, 0);
    if (!pre.subarray(0, 8).equals(MAGIC)) throw new StateFileError(file, 'not a kimi-linear-code state file');
    const version = pre.readUInt32LE(8);
    if (!READABLE_VERSIONS.includes(version)) throw new StateFileError(file, `format version ${version}, this version reads ${READABLE_VERSIONS.slice(0, -1).join(', ')} and ${READABLE_VERSIONS[READABLE_VERSIONS.length - 1]}`);
    const hlen = pre.readUInt32LE(12);
    if (PREAMBLE + hlen > size) throw new StateFileError(file, 'truncated header');
    const hb = Buffer.alloc(hlen);
    await handle.read(hb, 0, hlen, PREAMBLE);
    if (!createHash('sha256').update(hb).digest().equals(pre.subarray(16, 48))) throw new StateFileError(file, 'header checksum mismatch');
    const header = JSON.parse(hb.toString('utf8')) as StateHeader;
    const dataStart = PREAMBLE + hlen;
    for (const s of header.segments) {
      if (!Object.hasOwn(DTYPE_BYTES, s.dtype) || (version < 2 && s.dtype === 'bf16')) throw new StateFileError(file, `segment ${s.name} has dtype ${String(s.dtype)}, which format version ${version} does not hold`);
      // A block's hash is a file name: nothing else may reach outside the block folder.
      if (s.offset === undefined && (version < 3 || !SHA256_HEX.test(s.sha256))) throw new StateFileError(file, `segment ${s.name} has no offset and no valid block name, which format version ${version} does not hold`);
    }
    const inBlocks = header.segments.filter((s) => s.offset === undefined);
    const dataBytes = header.segments.reduce((n, s) => n + (s.offset === undefined ? 0 : s.count * DTYPE_BYTES[s.dtype]), 0);
    if (dataStart + dataBytes !== size) {
      throw new StateFileError(file, `size ${size} bytes, expected ${dataStart + dataBytes} (truncated or padded)`);
    }
    const bySegment = new Map(header.segments.map((s) => [s.name, s]));
    const blocks = blockStoreFor(file);
    // Blocks stay while the file is open, even if a newer snapshot no longer refers to them.
    const unpin = blocks.pin(inBlocks.map((s) => s.sha256));

    const readBytes = async (s: SegmentInfo): Promise<Buffer> => {
      const bytes = s.count * DTYPE_BYTES[s.dtype];
      if (s.offset !== undefined) {
        const buf = Buffer.alloc(bytes);
        await handle.read(buf, 0, buf.length, dataStart + s.offset);
        return buf;
      }
      let buf: Buffer | null;
      try {
        buf = await blocks.read(s.sha256, bytes);
      } catch (e) {
        throw new StateFileError(file, `block of ${s.name}: ${(e as Error).message}`);
      }
      if (!buf) throw new StateFileError(file, `block ${blocks.path(s.sha256)} of ${s.name} is missing`);
      return buf;
    };

    // The next block is read while a device takes this one.
    const readChecked = async (name: string): Promise<{ s: SegmentInfo; ab: ArrayBufferLike }> => {
      const s = bySegment.get(name);
      if (!s) throw new StateFileError(file, `segment ${name} missing`);
      const buf = await readBytes(s);
      if (sha256Hex(buf) !== s.sha256) throw new StateFileError(file, `checksum mismatch in ${name}${s.offset === undefined ? ` (block ${blocks.path(s.sha256)})` : ''}`);
      return { s, ab: buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.length) };
    };

    /** A float segment's values as the file keeps them: bf16 bits or fp32. */
    const asStored = (s: SegmentInfo, ab: ArrayBufferLike): LatentRows => (s.dtype === 'bf16' ? new Uint16Array(ab) : new Float32Array(ab));

    const readSegment = async (name: string): Promise<Float32Array | Int32Array> => {
      const { s, ab } = await readChecked(name);
      return s.dtype === 'i32' ? new Int32Array(ab) : latentF32(asStored(s, ab));
    };

    /** The first `elements` values of a latent block, as the file keeps them. */
    const readLatent = async (name: string, elements: number): Promise<LatentRows> => {
      const { s, ab } = await readChecked(name);
      return asStored(s, ab).subarray(0, elements);
    };

    return {
      file,
      header,
      async readIds() {
        return (await readSegment('ids')) as Int32Array;
      },
      async readState(upTo = header.length, sink?: LatentSink) {
        if (upTo > header.length) throw new Error(`readState(${upTo}) beyond the ${header.length} saved tokens`);
        const layers: LayerState[] = [];
        for (let i = 0; i < header.layers.length; i++) {
          const info = header.layers[i];
          if (info.kind === 'kda') {
            const conv = (await readSegment(`layer.${i}.conv`)) as Float32Array;
            const S = (await readSegment(`layer.${i}.S`)) as Float32Array;
            if (conv.length !== info.convLength || S.length !== info.stateLength) throw new StateFileError(file, `layer ${i} sizes disagree with the header`);
            layers.push({ kind: 'kda', conv: conv.slice(), S: S.slice() });
          } else {
            const w = info.width!;
            if (upTo > (info.rows ?? 0) && upTo > 0) throw new StateFileError(file, `layer ${i} saves ${info.rows ?? 0} MLA rows, ${upTo} needed`);
            const ls: MlaLayerState = { kind: 'mla', cache: new LatentCache(w) };
            const rowsOf = (b: number) => Math.min(BLOCK_ROWS, upTo - b * BLOCK_ROWS);
            const blockOf = (b: number) => readLatent(`layer.${i}.latent.${b}`, rowsOf(b) * w);
            const count = Math.ceil(upTo / BLOCK_ROWS);
            let next = count > 0 ? blockOf(0) : undefined;
            for (let b = 0; b < count; b++) {
              const block = await next!;
              next = b + 1 < count ? blockOf(b + 1) : undefined;
              // A failed read ahead is reported when its turn comes, not as an unhandled rejection.
              next?.catch(() => {});
              if (sink) sink(ls, block, rowsOf(b));
              else ls.cache.append(latentF32(block), rowsOf(b));
            }
            layers.push(ls);
          }
        }
        return { length: upTo, layers };
      },
      blocks: () => new Set(inBlocks.map((s) => s.sha256)),
      async close() {
        unpin();
        await handle.close();
      },
    };
  } catch (e) {
    await handle.close();
    if (e instanceof StateFileError) throw e;
    throw new StateFileError(file, (e as Error).message);
  }
}

export function sameKey(a: StateKey, b: StateKey): boolean {
  return a.modelId === b.modelId && a.packerVersion === b.packerVersion && a.tokenizerId === b.tokenizerId;
}
