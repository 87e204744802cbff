/**
 * An independent compressed-tensors writer for tests, written from the format description (not
 * from src/): each quantized Linear module of a full-precision checkpoint becomes the tensors
 * llm-compressor stores, and the fp32 weight they dequantize to is computed here in float64. Codes
 * are packed by spelling each int32 as eight hex nibbles (4 bit) or four hex bytes (8 bit), lowest
 * first; FP8 bytes are found by searching the 256 values of a decoder written from the E4M3 layout.
 */
import { mkdtempSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SafetensorsFile, writeSafetensors, type TensorToWrite } from '../../../../src/engine/model/safetensors';

export const GOLDEN = join(__dirname, '..', '..', '..', 'fixtures', 'golden', 'tiny-kimi-public');

export interface IntSpec {
  kind: 'int';
  bits: 4 | 8;
  symmetric: boolean;
  /** Columns per scale; -1 for one scale per row. */
  group: number;
  /** Store a weight_g_idx that deals columns to groups round-robin. */
  actorder?: boolean;
  /** 8-bit codes stored unpacked as an I8 `weight` (int-quantized), zero points as I8. */
  unpacked?: boolean;
}

export interface Fp8Spec {
  kind: 'fp8';
  perTensor: boolean;
  /** One scale per [rows, cols] block (the FP8_BLOCK layout) instead of per row. */
  block?: [number, number];
}

export type Spec = IntSpec | Fp8Spec;

/** Linear modules by name, as the test understands the model: projections, experts, lm_head. */
export function isLinearWeight(name: string): boolean {
  return /(_proj|_proj_with_mqa|\.w[123])\.weight$/.test(name) || name === 'lm_head.weight';
}

/** Packs signed codes (one run of at most 32/bits) into an int32 by writing its hex digits. */
export function packWord(codes: number[], bits: 4 | 8): number {
  const digits = bits / 4;
  const hex = codes
    .map((c) => (c + 2 ** (bits - 1)).toString(16).padStart(digits, '0'))
    .reverse()
    .join('');
  return Number.parseInt(hex || '0', 16) | 0;
}

function e4m3(byte: number): number {
  const s = byte >= 128 ? -1 : 1;
  const e = (byte >> 3) & 15;
  const m = byte & 7;
  if (e === 15 && m === 7) return NaN;
  return e === 0 ? s * m * 2 ** -9 : s * (8 + m) * 2 ** (e - 10);
}

/** Non-negative finite values by byte, 0x00..0x7e (ascending). */
const POSITIVE = Array.from({ length: 0x7f }, (_, b) => e4m3(b));

function nearestE4M3(x: number): number {
  const a = Math.abs(x);
  let best = 0;
  for (let b = 1; b < POSITIVE.length && POSITIVE[b - 1] <= a; b++) if (Math.abs(POSITIVE[b] - a) < Math.abs(POSITIVE[best] - a)) best = b;
  return (x < 0 ? 0x80 : 0) | best;
}

/** A value bf16 holds exactly: the top 8 significant bits of x. */
function bf16(x: number): number {
  const e = Math.floor(Math.log2(Math.abs(x)));
  return Math.round(x / 2 ** (e - 7)) * 2 ** (e - 7);
}

function bf16Bytes(values: number[]): Uint8Array {
  const f = new Float32Array(values);
  const out = new Uint8Array(values.length * 2);
  const src = new Uint8Array(f.buffer);
  for (let i = 0; i < values.length; i++) {
    out[2 * i] = src[4 * i + 2];
    out[2 * i + 1] = src[4 * i + 3];
  }
  return out;
}

function i64Bytes(values: number[]): Uint8Array {
  return new Uint8Array(BigInt64Array.from(values.map(BigInt)).buffer);
}

/** The tensors of one quantized module and the weight they stand for. */
export function quantizeModule(module: string, w: Float32Array, rows: number, cols: number, spec: Spec): { tensors: TensorToWrite[]; dequantized: Float32Array } {
  const dequantized = new Float32Array(rows * cols);
  if (spec.kind === 'fp8') {
    // Scale index of weight (r, c) and the scale tensor's shape.
    const [bh, bw] = spec.block ?? (spec.perTensor ? [rows, cols] : [1, cols]);
    const blockCols = Math.ceil(cols / bw);
    const shape = spec.block ? [Math.ceil(rows / bh), blockCols] : spec.perTensor ? [1] : [rows, 1];
    const at = (r: number, c: number) => Math.floor(r / bh) * blockCols + Math.floor(c / bw);
    const amax = new Array(Math.ceil(rows / bh) * blockCols).fill(0);
    for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) amax[at(r, c)] = Math.max(amax[at(r, c)], Math.abs(w[r * cols + c]));
    const scales = amax.map((a) => bf16(a / 448));
    const bytes = new Uint8Array(rows * cols);
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < cols; c++) {
        const s = scales[at(r, c)];
        const b = nearestE4M3(w[r * cols + c] / s);
        bytes[r * cols + c] = b;
        dequantized[r * cols + c] = e4m3(b) * s;
      }
    }
    return {
      tensors: [
        { name: `${module}.weight`, dtype: 'F8_E4M3', shape: [rows, cols], data: bytes },
        { name: `${module}.weight_scale`, dtype: 'BF16', shape, data: bf16Bytes(scales) },
      ],
      dequantized,
    };
  }
  const { bits, symmetric } = spec;
  const per = spec.group === -1 ? cols : spec.group;
  const groups = Math.ceil(cols / per);
  const groupOf = (c: number) => (spec.actorder ? c % groups : Math.floor(c / per));
  const qmin = -(2 ** (bits - 1));
  const qmax = 2 ** (bits - 1) - 1;
  const scale: number[] = new Array(rows * groups);
  const zero: number[] = new Array(rows * groups).fill(0);
  for (let r = 0; r < rows; r++) {
    for (let g = 0; g < groups; g++) {
      const vals = Array.from({ length: cols }, (_, c) => c).filter((c) => groupOf(c) === g).map((c) => w[r * cols + c]);
      const lo = Math.min(0, ...vals);
      const hi = Math.max(0, ...vals);
      if (symmetric) {
        scale[r * groups + g] = bf16(Math.max(-lo, hi) / qmax || 1e-3);
      } else {
        const s = bf16((hi - lo) / (qmax - qmin) || 1e-3);
        scale[r * groups + g] = s;
        zero[r * groups + g] = Math.max(qmin, Math.min(qmax, Math.round(qmin - lo / s)));
      }
    }
  }
  const codes: number[] = new Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const j = r * groups + groupOf(c);
      const q = Math.max(qmin, Math.min(qmax, Math.round(w[r * cols + c] / scale[j] + zero[j])));
      codes[r * cols + c] = q;
      dequantized[r * cols + c] = (q - zero[j]) * scale[j];
    }
  }
  if (spec.unpacked) {
    const tensors: TensorToWrite[] = [
      { name: `${module}.weight`, dtype: 'I8', shape: [rows, cols], data: new Uint8Array(Int8Array.from(codes).buffer) },
      { name: `${module}.weight_scale`, dtype: 'BF16', shape: [rows, groups], data: bf16Bytes(scale) },
    ];
    if (!symmetric) tensors.push({ name: `${module}.weight_zero_point`, dtype: 'I8', shape: [rows, groups], data: new Uint8Array(Int8Array.from(zero).buffer) });
    return { tensors, dequantized };
  }
  const f = 32 / bits;
  const packedCols = Math.ceil(cols / f);
  const packed = new Int32Array(rows * packedCols);
  for (let r = 0; r < rows; r++) {
    for (let p = 0; p < packedCols; p++) packed[r * packedCols + p] = packWord(codes.slice(r * cols + p * f, Math.min(r * cols + cols, r * cols + (p + 1) * f)), bits);
  }
  const tensors: TensorToWrite[] = [
    { name: `${module}.weight_packed`, dtype: 'I32', shape: [rows, packedCols], data: packed },
    { name: `${module}.weight_scale`, dtype: 'BF16', shape: [rows, groups], data: bf16Bytes(scale) },
    { name: `${module}.weight_shape`, dtype: 'I64', shape: [2], data: i64Bytes([rows, cols]) },
  ];
  if (!symmetric) {
    // Zero points [rows, groups] are packed down the columns: int32 (p, g) holds rows p·f … p·f + f − 1 of column g.
    const zRows = Math.ceil(rows / f);
    const zp = new Int32Array(zRows * groups);
    for (let p = 0; p < zRows; p++) {
      for (let g = 0; g < groups; g++) {
        const column = [];
        for (let r = p * f; r < Math.min(rows, (p + 1) * f); r++) column.push(zero[r * groups + g]);
        zp[p * groups + g] = packWord(column, bits);
      }
    }
    tensors.push({ name: `${module}.weight_zero_point`, dtype: 'I32', shape: [zRows, groups], data: zp });
  }
  if (spec.actorder) tensors.push({ name: `${module}.weight_g_idx`, dtype: 'I32', shape: [cols], data: Int32Array.from({ length: cols }, (_, c) => groupOf(c)) });
  return { tensors, dequantized };
}

export interface Written {
  /** The compressed-tensors checkpoint. */
  quantized: string;
  /** The same model with every quantized weight replaced by its fp32 dequantization. */
  dequantized: string;
}

/** One Linear module's stored tensors and the fp32 weight they stand for. */
export type ModuleWriter = (module: string, w: Float32Array, rows: number, cols: number) => { tensors: TensorToWrite[]; dequantized: Float32Array } | null;

/**
 * The checkpoint in `source` written twice: with each Linear weight that `write` quantizes replaced
 * by its tensors (config.json written by `configure`), and as plain fp32 with those weights'
 * dequantized values.
 */
export async function writeGoldenPair(write: ModuleWriter, configure: (dir: string, config: Record<string, unknown>) => void, source = GOLDEN): Promise<Written> {
  const src = await SafetensorsFile.open(join(source, 'model.safetensors'));
  const quantized: TensorToWrite[] = [];
  const plain: TensorToWrite[] = [];
  try {
    for (const name of src.names) {
      const w = await src.readF32(name);
      const { shape } = src.info(name);
      const q = isLinearWeight(name) ? write(name.replace(/\.weight$/, ''), w, shape[0], shape[1]) : null;
      quantized.push(...(q ? q.tensors : [{ name, dtype: 'F32' as const, shape, data: w }]));
      plain.push({ name, dtype: 'F32', shape, data: q ? q.dequantized : w });
    }
  } finally {
    await src.close();
  }
  const config = JSON.parse(readFileSync(join(source, 'config.json'), 'utf8'));
  const qdir = mkdtempSync(join(tmpdir(), 'klc-quantized-'));
  const ddir = mkdtempSync(join(tmpdir(), 'klc-dequantized-'));
  configure(qdir, config);
  writeFileSync(join(ddir, 'config.json'), JSON.stringify(config, null, 2));
  await writeSafetensors(join(qdir, 'model.safetensors'), quantized);
  await writeSafetensors(join(ddir, 'model.safetensors'), plain);
  return { quantized: qdir, dequantized: ddir };
}

/**
 * Writes the golden checkpoint compressed: `specFor(module)` picks each Linear module's scheme
 * (null keeps it unquantized); `quantizationConfig` is written into config.json as given.
 */
export function writeQuantizedGolden(specFor: (module: string) => Spec | null, quantizationConfig: Record<string, unknown>): Promise<Written> {
  return writeGoldenPair(
    (m, w, rows, cols) => {
      const spec = specFor(m);
      return spec ? quantizeModule(m, w, rows, cols, spec) : null;
    },
    (dir, config) => writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...config, quantization_config: quantizationConfig }, null, 2)),
  );
}

/** A config group as llm-compressor serializes it. */
export function configGroup(targets: string[], weights: Record<string, unknown>, format: string, inputActivations: Record<string, unknown> | null = null): Record<string, unknown> {
  return {
    format,
    input_activations: inputActivations,
    output_activations: null,
    targets,
    weights: { actorder: null, block_structure: null, dynamic: false, observer: 'minmax', observer_kwargs: {}, ...weights },
  };
}

export function quantizationConfig(groups: Record<string, unknown>, format: string, ignore: string[]): Record<string, unknown> {
  return {
    config_groups: groups,
    format,
    global_compression_ratio: null,
    ignore,
    kv_cache_scheme: null,
    quant_method: 'compressed-tensors',
    quantization_status: 'compressed',
    sparsity_config: {},
    transform_config: {},
    version: '0.12.2',
  };
}

/** The `count` signed codes of one int32, read from its hex digits, lowest first. */
export function unpackWord(word: number, bits: 4 | 8, count: number): number[] {
  const hex = (word >>> 0).toString(16).padStart(8, '0');
  const digits = bits / 4;
  return Array.from({ length: count }, (_, k) => Number.parseInt(hex.slice(8 - (k + 1) * digits, 8 - k * digits), 16) - 2 ** (bits - 1));
}

/**
 * Rewrites a symmetric pack-quantized (4 or 8 bit) or per-channel FP8 checkpoint written by anyone
 * as plain fp32, decoding it here; returns the new folder.
 */
export async function decodeIndependently(dir: string, shards: string[]): Promise<string> {
  const out = mkdtempSync(join(tmpdir(), 'klc-ct-plain-'));
  const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
  const weights = config.quantization_config.config_groups.group_0.weights;
  delete config.quantization_config;
  writeFileSync(join(out, 'config.json'), JSON.stringify(config));
  const tensors: TensorToWrite[] = [];
  for (const shard of shards) {
    const f = await SafetensorsFile.open(join(dir, shard));
    try {
      const names = f.names;
      for (const name of names) {
        if (name.endsWith('.weight_scale') || name.endsWith('.weight_shape')) continue;
        const m = name.replace(/\.weight(_packed)?$/, '');
        if (name.endsWith('.weight_packed')) {
          const [rows, cols] = Array.from(await f.readInts(`${m}.weight_shape`));
          const packed = await f.readInts(name);
          const scale = await f.readF32(`${m}.weight_scale`);
          const bits = weights.num_bits as 4 | 8;
          const per = weights.strategy === 'channel' ? cols : (weights.group_size as number);
          const perWord = 32 / bits;
          const wordsPerRow = Math.ceil(cols / perWord);
          const data = new Float32Array(rows * cols);
          for (let r = 0; r < rows; r++) {
            const codes = Array.from(packed.subarray(r * wordsPerRow, (r + 1) * wordsPerRow)).flatMap((word) => unpackWord(word, bits, perWord));
            for (let c = 0; c < cols; c++) data[r * cols + c] = codes[c] * scale[r * Math.ceil(cols / per) + Math.floor(c / per)];
          }
          tensors.push({ name: `${m}.weight`, dtype: 'F32', shape: [rows, cols], data });
        } else if (f.info(name).dtype === 'F8_E4M3') {
          const [rows, cols] = f.info(name).shape;
          const bytes = await f.readRaw(name);
          const scale = await f.readF32(`${m}.weight_scale`);
          tensors.push({ name, dtype: 'F32', shape: [rows, cols], data: Float32Array.from(bytes, (b, i) => e4m3(b) * scale[Math.floor(i / cols)]) });
        } else {
          tensors.push({ name, dtype: 'F32', shape: f.info(name).shape, data: await f.readF32(name) });
        }
      }
    } finally {
      await f.close();
    }
  }
  await writeSafetensors(join(out, 'model.safetensors'), tensors);
  return out;
}
