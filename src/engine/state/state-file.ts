/**
 * On-disk format of a saved sequence state (a RepoState snapshot or a checkpoint).
 *
 *   offset 0   "KLCSTATE"                     8 bytes magic
 *          8   u32 LE format version
 *         12   u32 LE header length H
 *         16   sha256 of the header bytes      32 bytes
 *         48   header: UTF-8 JSON (StateHeader)
 *     48 + H   segments, back to back, in header order; each has its own sha256
 *
 * Per-segment checksums let a reader verify only what it uses: resuming from a checkpoint at
 * token p reads the first p rows of each MLA cache, not the whole multi-gigabyte file. MLA rows are
 * therefore split into blocks of BLOCK_ROWS rows. Files are written to a temp file and renamed, so
 * a reader sees an old complete file or a new complete file, never a torn one.
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { writeFileAtomicWith } from '../../common/atomic';
import { UserError } from '../../common/errors';
import { LatentCache } from './latent-cache';
import type { LayerState, MlaLayerState, SequenceState } from './types';

export const STATE_FORMAT_VERSION = 1;
const MAGIC = Buffer.from('KLCSTATE', 'latin1');
const PREAMBLE = 48;
const BLOCK_ROWS = 4096;

/** Identifies what a state was computed from; a state is used only when its key matches. */
export interface StateKey {
  modelId: string;
  packerVersion: string;
  tokenizerId: string;
}

export interface SegmentInfo {
  name: string;
  dtype: 'f32' | 'i32';
  /** Element count. */
  count: number;
  /** Byte offset from the start of the segment area. */
  offset: number;
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

function bytesOf(a: Float32Array | Int32Array): Buffer {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength);
}

function sha(a: Float32Array | Int32Array): string {
  return createHash('sha256').update(bytesOf(a)).digest('hex');
}

/** Reads rows [from, from + count) of MLA layer `layer` of the state being written. */
export type LatentReader = (layer: number, from: number, count: number) => Float32Array;

/** Receives restored MLA rows of a layer instead of its host cache (a device backend appends them where it computes). */
export type LatentSink = (ls: MlaLayerState, rows: Float32Array, count: number) => void;

interface Planned {
  info: SegmentInfo;
  /** Produces the segment's values when it is written. */
  data: () => Float32Array | Int32Array;
}

const ZERO_SHA = '0'.repeat(64);

/**
 * Writes `state` (and optionally the token ids it consumed) to `file` atomically. Segments are
 * produced and written one at a time, MLA rows in blocks of BLOCK_ROWS through `latent` (default:
 * the state's host caches), so a 1M-token state never needs a host copy of its whole cache: the
 * header is laid out first with placeholder checksums (a sha256 in hex is always 64 characters,
 * so the header keeps its length) and rewritten once the data is on disk.
 */
export async function writeStateFile(
  file: string,
  state: SequenceState,
  opts: {
    key: StateKey;
    ids?: ArrayLike<number>;
    meta?: Record<string, unknown>;
    /** false: a checkpoint, which saves KDA parts only and takes MLA rows from the snapshot. */
    withLatent?: boolean;
    /** false: record only the hash of the ids, not the ids themselves. */
    storeIds?: boolean;
    latent?: LatentReader;
  },
): Promise<void> {
  const withLatent = opts.withLatent ?? true;
  const planned: Planned[] = [];
  let offset = 0;
  const add = (name: string, dtype: 'f32' | 'i32', count: number, data: () => Float32Array | Int32Array) => {
    planned.push({ info: { name, dtype, count, offset, sha256: ZERO_SHA }, data });
    offset += count * 4;
  };
  if (opts.ids && opts.ids.length < state.length) {
    throw new Error(`writeStateFile: ${opts.ids.length} ids for a state of ${state.length} tokens`);
  }
  if (opts.ids && (opts.storeIds ?? true)) {
    const ids = opts.ids;
    add('ids', 'i32', state.length, () => Int32Array.from({ length: state.length }, (_, i) => ids[i]));
  }
  const layers: LayerInfo[] = state.layers.map((layer, i) => {
    if (layer.kind === 'kda') {
      add(`layer.${i}.conv`, 'f32', layer.conv.length, () => layer.conv);
      add(`layer.${i}.S`, 'f32', layer.S.length, () => layer.S);
      return { kind: 'kda', convLength: layer.conv.length, stateLength: layer.S.length };
    }
    const w = layer.cache.width;
    if (!withLatent) return { kind: 'mla', width: w, rows: 0 };
    const read: LatentReader = opts.latent ?? ((_, from, count) => layer.cache.rows(from, count));
    if (!opts.latent && layer.cache.length !== state.length) {
      throw new Error(`writeStateFile: layer ${i} caches ${layer.cache.length} tokens but the state has ${state.length}`);
    }
    for (let r = 0, b = 0; r < state.length; r += BLOCK_ROWS, b++) {
      const rows = Math.min(BLOCK_ROWS, state.length - r);
      add(`layer.${i}.latent.${b}`, 'f32', rows * w, () => {
        const got = read(i, r, rows);
        if (got.length !== rows * w) throw new Error(`writeStateFile: layer ${i} gave ${got.length} values for ${rows} rows of ${w}`);
        return got;
      });
    }
    return { kind: 'mla', width: w, rows: state.length };
  });
  const header: StateHeader = {
    format: 'kimi-linear-code/state',
    key: opts.key,
    length: state.length,
    prefixHash: opts.ids ? hashIds(opts.ids, state.length) : '',
    layers,
    segments: planned.map((p) => p.info),
    ...(opts.meta ? { meta: opts.meta } : {}),
  };
  const placeholder = Buffer.from(JSON.stringify(header), 'utf8');
  const dataStart = PREAMBLE + placeholder.length;

  await writeFileAtomicWith(file, async (handle) => {
    for (const p of planned) {
      const data = p.data();
      if (data.length !== p.info.count) throw new Error(`writeStateFile: segment ${p.info.name} has ${data.length} values, planned ${p.info.count}`);
      p.info.sha256 = sha(data);
      await handle.write(bytesOf(data), 0, data.byteLength, dataStart + p.info.offset);
    }
    const headerBytes = Buffer.from(JSON.stringify(header), 'utf8');
    if (headerBytes.length !== placeholder.length) throw new Error('writeStateFile: the header changed length when its checksums were filled in');
    const preamble = Buffer.alloc(PREAMBLE);
    MAGIC.copy(preamble, 0);
    preamble.writeUInt32LE(STATE_FORMAT_VERSION, 8);
    preamble.writeUInt32LE(headerBytes.length, 12);
    createHash('sha256').update(headerBytes).digest().copy(preamble, 16);
    await handle.write(Buffer.concat([preamble, headerBytes]), 0, PREAMBLE + headerBytes.length, 0);
  });
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
    if (version !== STATE_FORMAT_VERSION) throw new StateFileError(file, `format version ${version}, expected ${STATE_FORMAT_VERSION}`);
    const hlen = pre.readUInt32LE(12);
    if (PREAMBLE + hlen > size) throw new StateFileError(file, 'truncated header');
    const hb = Buffer.alloc(hlen);
    await handle.read(hb, 0, hlen, PREAMBLE);
    if (!createHash('sha256').update(hb).digest().equals(pre.subarray(16, 48))) throw new StateFileError(file, 'header checksum mismatch');
    const header = JSON.parse(hb.toString('utf8')) as StateHeader;
    const dataStart = PREAMBLE + hlen;
    const dataBytes = header.segments.reduce((n, s) => n + s.count * 4, 0);
    if (dataStart + dataBytes !== size) {
      throw new StateFileError(file, `size ${size} bytes, expected ${dataStart + dataBytes} (truncated or padded)`);
    }
    const bySegment = new Map(header.segments.map((s) => [s.name, s]));

    const readSegment = async (name: string, elements?: number): Promise<Float32Array | Int32Array> => {
      const s = bySegment.get(name);
      if (!s) throw new StateFileError(file, `segment ${name} missing`);
      const buf = Buffer.alloc(s.count * 4);
      await handle.read(buf, 0, buf.length, dataStart + s.offset);
      if (createHash('sha256').update(buf).digest('hex') !== s.sha256) throw new StateFileError(file, `checksum mismatch in ${name}`);
      const ab = buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.length);
      const arr = s.dtype === 'i32' ? new Int32Array(ab) : new Float32Array(ab);
      return elements === undefined ? arr : arr.subarray(0, elements);
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
            for (let r = 0, b = 0; r < upTo; r += BLOCK_ROWS, b++) {
              const rows = Math.min(BLOCK_ROWS, upTo - r);
              const block = (await readSegment(`layer.${i}.latent.${b}`, rows * w)) as Float32Array;
              if (sink) sink(ls, block, rows);
              else ls.cache.append(block, rows);
            }
            layers.push(ls);
          }
        }
        return { length: upTo, layers };
      },
      close: () => handle.close(),
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
