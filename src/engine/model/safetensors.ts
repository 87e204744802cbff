/**
 * The safetensors format: an 8-byte little-endian header length, a JSON header mapping tensor
 * names to {dtype, shape, data_offsets}, then the raw little-endian data. The header is checked
 * as hostile input; tensors are read one at a time at their offsets through a file handle, so a
 * checkpoint far larger than memory can be opened.
 */
import { promises as fs, readSync } from 'node:fs';
import { endianness } from 'node:os';
import { UserError } from '../../common/errors';
import { writeFileAtomic } from '../../common/atomic';

export type Dtype = 'F64' | 'F32' | 'F16' | 'BF16' | 'F8_E4M3' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

export const DTYPE_BYTES: Record<Dtype, number> = { F64: 8, F32: 4, F16: 2, BF16: 2, F8_E4M3: 1, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1 };

/** A header larger than this is not a model header but a corrupt length field. */
const MAX_HEADER_BYTES = 256 * 1024 * 1024;

export interface TensorInfo {
  name: string;
  dtype: Dtype;
  shape: number[];
  /** Absolute byte offsets in the file, [begin, end). */
  begin: number;
  end: number;
}

export interface SafetensorsHeader {
  tensors: Map<string, TensorInfo>;
  metadata: Record<string, string>;
  /** Byte offset where the data section starts (8 + header length). */
  dataStart: number;
}

function bad(file: string, what: string): never {
  throw new UserError(`${file}: ${what}. The file is corrupt or not a safetensors file; download or regenerate it.`, file);
}

export function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/**
 * Validates a header against the file size: JSON object, known dtypes, integer shapes,
 * dtype × shape = byte length, offsets inside the data section, no two tensors overlapping, and
 * the tensors covering the data section exactly, without holes or trailing bytes, as the format
 * requires. The last check is what catches a header length a byte or two short: the JSON still
 * parses (headers are space-padded), but every tensor would be read shifted by those bytes.
 */
export function parseHeader(headerBytes: Uint8Array, fileSize: number, file: string): SafetensorsHeader {
  const dataStart = 8 + headerBytes.length;
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(headerBytes));
  } catch (e) {
    bad(file, `header is not valid UTF-8 JSON (${(e as Error).message})`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) bad(file, 'header is not a JSON object');
  const dataLen = fileSize - dataStart;
  const tensors = new Map<string, TensorInfo>();
  let metadata: Record<string, string> = {};
  for (const [name, entry] of Object.entries(json as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) bad(file, '__metadata__ is not an object');
      for (const v of Object.values(entry)) if (typeof v !== 'string') bad(file, '__metadata__ values must be strings');
      metadata = entry as Record<string, string>;
      continue;
    }
    if (typeof entry !== 'object' || entry === null) bad(file, `tensor "${name}": entry is not an object`);
    const { dtype, shape, data_offsets: offs } = entry as Record<string, unknown>;
    if (typeof dtype !== 'string' || !(dtype in DTYPE_BYTES)) bad(file, `tensor "${name}": unknown dtype ${JSON.stringify(dtype)}`);
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) bad(file, `tensor "${name}": shape ${JSON.stringify(shape)} is not a list of non-negative integers`);
    if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((o) => Number.isSafeInteger(o) && o >= 0)) {
      bad(file, `tensor "${name}": data_offsets ${JSON.stringify(offs)} is not a pair of non-negative integers`);
    }
    const [b, e] = offs as [number, number];
    if (e < b) bad(file, `tensor "${name}": data_offsets end ${e} is before begin ${b}`);
    const expected = numel(shape as number[]) * DTYPE_BYTES[dtype as Dtype];
    if (e - b !== expected) bad(file, `tensor "${name}": ${dtype} ${JSON.stringify(shape)} needs ${expected} bytes but data_offsets span ${e - b}`);
    if (e > dataLen) {
      bad(file, `tensor "${name}": data ends at byte ${dataStart + e} but the file has ${fileSize} bytes (truncated?)`);
    }
    tensors.set(name, { name, dtype: dtype as Dtype, shape: (shape as number[]).slice(), begin: dataStart + b, end: dataStart + e });
  }
  const sorted = [...tensors.values()].filter((t) => t.end > t.begin).sort((x, y) => x.begin - y.begin);
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i].begin < sorted[i - 1].end) bad(file, `tensors "${sorted[i - 1].name}" and "${sorted[i].name}" overlap`);
  }
  let covered = dataStart;
  for (const t of sorted) {
    if (t.begin !== covered) bad(file, `${t.begin - covered} bytes before tensor "${t.name}" (at byte ${covered}) belong to no tensor`);
    covered = t.end;
  }
  if (covered !== fileSize) {
    bad(file, `${fileSize - covered} bytes after the last tensor belong to no tensor (data ends at byte ${covered}, the file has ${fileSize}); the header length or the file size is wrong`);
  }
  return { tensors, metadata, dataStart };
}

if (endianness() !== 'LE') throw new Error('safetensors reading assumes a little-endian host');

const F16_TABLE = (() => {
  const t = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >> 10) & 0x1f;
    const frac = h & 0x3ff;
    if (exp === 0) t[h] = sign * frac * 2 ** -24;
    else if (exp === 31) t[h] = frac ? NaN : sign * Infinity;
    else t[h] = sign * (1 + frac / 1024) * 2 ** (exp - 15);
  }
  return t;
})();

/** Converts raw little-endian floating data to fp32 (the engine's working precision). */
export function toFloat32(raw: Buffer, dtype: Dtype, name: string, file: string): Float32Array {
  const n = raw.length / DTYPE_BYTES[dtype];
  const out = new Float32Array(n);
  // Byte copies into typed arrays read the data in host order; every platform Node runs on is little-endian.
  const bytes = new Uint8Array(raw.buffer, raw.byteOffset, raw.length);
  switch (dtype) {
    case 'F32':
      new Uint8Array(out.buffer).set(bytes);
      return out;
    case 'BF16':
    case 'F16': {
      const half = new Uint16Array(n);
      new Uint8Array(half.buffer).set(bytes);
      if (dtype === 'F16') {
        for (let i = 0; i < n; i++) out[i] = F16_TABLE[half[i]];
      } else {
        const bits = new Uint32Array(out.buffer);
        for (let i = 0; i < n; i++) bits[i] = half[i] << 16;
      }
      return out;
    }
    case 'F64': {
      const wide = new Float64Array(n);
      new Uint8Array(wide.buffer).set(bytes);
      out.set(wide);
      return out;
    }
    default:
      throw new UserError(`${file}: tensor "${name}" has dtype ${dtype}; expected a floating type (BF16, F16, F32). Re-export the checkpoint in bf16.`, file);
  }
}

/**
 * Memory that reads of one tensor after another reuse, for a reader that is done with each tensor
 * before it reads the next (an upload to a GPU). Reading a 48B checkpoint into fresh buffers costs
 * more in page faults and garbage collection than in the reads themselves.
 */
export class ReadBuffer {
  private buf = Buffer.allocUnsafeSlow(0);

  /** `bytes` bytes at offset 0 of the reused memory (grown when too small). */
  take(bytes: number): Buffer {
    if (this.buf.length < bytes) this.buf = Buffer.allocUnsafeSlow(Math.max(bytes, 2 * this.buf.length));
    return this.buf.subarray(0, bytes);
  }
}

/** An open safetensors file; tensors are read on demand. */
export class SafetensorsFile {
  private constructor(
    readonly path: string,
    readonly header: SafetensorsHeader,
    private readonly handle: fs.FileHandle,
    readonly size: number,
  ) {}

  static async open(path: string): Promise<SafetensorsFile> {
    let handle: fs.FileHandle;
    try {
      handle = await fs.open(path, 'r');
    } catch (e) {
      throw new UserError(`cannot open ${path} (${(e as NodeJS.ErrnoException).code ?? String(e)}).`, path);
    }
    try {
      const size = (await handle.stat()).size;
      if (size < 8) bad(path, `file has ${size} bytes, fewer than the 8-byte header length`);
      const lenBuf = Buffer.alloc(8);
      await readExactly(handle, lenBuf, 0, path);
      const headerLen = lenBuf.readBigUInt64LE(0);
      if (headerLen > BigInt(Math.min(size - 8, MAX_HEADER_BYTES))) bad(path, `header length ${headerLen} exceeds the file (${size} bytes)`);
      const headerBytes = Buffer.alloc(Number(headerLen));
      await readExactly(handle, headerBytes, 8, path);
      return new SafetensorsFile(path, parseHeader(headerBytes, size, path), handle, size);
    } catch (e) {
      await handle.close();
      throw e;
    }
  }

  get names(): string[] {
    return [...this.header.tensors.keys()];
  }

  info(name: string): TensorInfo {
    const t = this.header.tensors.get(name);
    if (!t) throw new UserError(`${this.path}: no tensor "${name}".`, this.path);
    return t;
  }

  /**
   * A tensor's stored bytes, in a buffer of its own, or in `into`'s memory (valid until its next
   * use). Either way at offset 0 of an ArrayBuffer, so that typed-array views of it are aligned.
   */
  async readRaw(name: string, into?: ReadBuffer): Promise<Buffer> {
    const t = this.info(name);
    // Every byte is read into it, so it need not be zeroed first (48B weights: ~30 GB of memset).
    const buf = into ? into.take(t.end - t.begin) : Buffer.allocUnsafeSlow(t.end - t.begin);
    await readExactly(this.handle, buf, t.begin, this.path, name);
    return buf;
  }

  /** A floating tensor as fp32 values of their own; `into` may hold the stored bytes meanwhile. */
  async readF32(name: string, into?: ReadBuffer): Promise<Float32Array> {
    const t = this.info(name);
    return toFloat32(await this.readRaw(name, into), t.dtype, name, this.path);
  }

  /** Floats at full precision (F64 stays exact); for reference data. */
  async readF64(name: string): Promise<Float64Array> {
    const t = this.info(name);
    const raw = await this.readRaw(name);
    if (t.dtype === 'F64') {
      const out = new Float64Array(raw.length / 8);
      for (let i = 0; i < out.length; i++) out[i] = raw.readDoubleLE(i * 8);
      return out;
    }
    return Float64Array.from(toFloat32(raw, t.dtype, name, this.path));
  }

  /** Integer tensors (I32, I64) as numbers; an I32 one read into `into` is a view of its memory. */
  async readInts(name: string, into?: ReadBuffer): Promise<Int32Array> {
    const t = this.info(name);
    const raw = await this.readRaw(name, t.dtype === 'I32' ? into : undefined);
    if (t.dtype === 'I32') {
      // The little-endian data read in host order (little-endian, checked above), without a copy.
      return new Int32Array(raw.buffer, raw.byteOffset, raw.length / 4);
    }
    if (t.dtype === 'I64') {
      const out = new Int32Array(raw.length / 8);
      for (let i = 0; i < out.length; i++) {
        const v = raw.readBigInt64LE(i * 8);
        if (v > 0x7fffffffn || v < -0x80000000n) bad(this.path, `tensor "${name}" holds ${v}, outside the 32-bit range`);
        out[i] = Number(v);
      }
      return out;
    }
    throw new UserError(`${this.path}: tensor "${name}" has dtype ${t.dtype}; expected I32 or I64.`, this.path);
  }

  async close(): Promise<void> {
    await this.handle.close();
  }
}

/** Largest piece read at once, so that no read keeps the event loop longer than a few milliseconds. */
const READ_CHUNK = 16 << 20;
/** How long reads may run before the reader lets the event loop turn. */
const YIELD_MS = 20;
let lastYield = performance.now();

/**
 * Reads buf.length bytes at `position`. Synchronously, in pieces, yielding to the event loop every
 * YIELD_MS: through the thread pool each read of a tensor paid a round trip that, over the ~60,000
 * tensors of the quantized 48B model, made its load 1.8× slower (89 s against 50 s of CPU time on a
 * 2-core VM, npm run bench:load-48b); yielding keeps the engine answering requests meanwhile.
 */
async function readExactly(handle: fs.FileHandle, buf: Buffer, position: number, file: string, tensor?: string): Promise<void> {
  let done = 0;
  while (done < buf.length) {
    if (performance.now() - lastYield > YIELD_MS) {
      await new Promise<void>((resolve) => setImmediate(resolve));
      lastYield = performance.now();
    }
    const bytesRead = readSync(handle.fd, buf, done, Math.min(READ_CHUNK, buf.length - done), position + done);
    if (bytesRead === 0) bad(file, `${tensor ? `tensor "${tensor}": ` : ''}unexpected end of file at byte ${position + done} (truncated?)`);
    done += bytesRead;
  }
}

export type TensorToWrite =
  | {
      name: string;
      dtype: 'F32' | 'BF16' | 'I32';
      shape: number[];
      data: Float32Array | Int32Array;
    }
  | {
      /** Bytes already in the stored little-endian layout of `dtype`. */
      name: string;
      dtype: Dtype;
      shape: number[];
      data: Uint8Array;
    };

function encode(t: TensorToWrite): Buffer {
  const n = numel(t.shape);
  if (t.data instanceof Uint8Array) {
    if (t.data.length !== n * DTYPE_BYTES[t.dtype]) throw new Error(`writeSafetensors: "${t.name}" has ${t.data.length} bytes for ${t.dtype} ${JSON.stringify(t.shape)}`);
    return Buffer.from(t.data.buffer, t.data.byteOffset, t.data.length);
  }
  if (t.data.length !== n) throw new Error(`writeSafetensors: "${t.name}" has ${t.data.length} values for shape ${JSON.stringify(t.shape)}`);
  if (t.dtype === 'BF16') {
    const out = Buffer.alloc(n * 2);
    const f = new Float32Array(1);
    const u = new Uint32Array(f.buffer);
    for (let i = 0; i < n; i++) {
      f[0] = t.data[i];
      const bits = u[0];
      // Round to nearest even, and keep NaN a NaN.
      const rounded = (bits & 0x7fffffff) > 0x7f800000 ? (bits >>> 16) | 0x40 : (bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16;
      out.writeUInt16LE(rounded & 0xffff, i * 2);
    }
    return out;
  }
  const out = Buffer.alloc(n * 4);
  if (t.dtype === 'F32') for (let i = 0; i < n; i++) out.writeFloatLE(t.data[i], i * 4);
  else for (let i = 0; i < n; i++) out.writeInt32LE(t.data[i], i * 4);
  return out;
}

/** A tensor's entry in a header to be written: its bytes follow the previous entry's. */
export interface HeaderEntry {
  name: string;
  dtype: Dtype;
  shape: number[];
}

/** The 8-byte length and the JSON header of a file whose tensors are stored in `entries` order. */
export function encodeHeader(entries: HeaderEntry[], metadata: Record<string, string> = {}): Buffer[] {
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  let offset = 0;
  const seen = new Set<string>();
  for (const t of entries) {
    if (seen.has(t.name) || t.name === '__metadata__') throw new Error(`writeSafetensors: duplicate or reserved tensor name "${t.name}"`);
    seen.add(t.name);
    const bytes = numel(t.shape) * DTYPE_BYTES[t.dtype];
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  // Pad with spaces so the data section starts 8-byte aligned, as the reference writer does.
  json += ' '.repeat((8 - ((Buffer.byteLength(json) + 8) % 8)) % 8);
  const headerBytes = Buffer.from(json, 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(headerBytes.length));
  return [len, headerBytes];
}

/** Header and data of a safetensors file, as the parts to write in order. */
export function encodeSafetensors(tensors: TensorToWrite[], metadata: Record<string, string> = {}): Buffer[] {
  return [...encodeHeader(tensors, metadata), ...tensors.map(encode)];
}

/** Writes a safetensors file atomically (temp file, then rename). */
export async function writeSafetensors(file: string, tensors: TensorToWrite[], metadata: Record<string, string> = {}): Promise<void> {
  await writeFileAtomic(file, encodeSafetensors(tensors, metadata));
}
