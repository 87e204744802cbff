/**
 * A quantized weight matrix and the two directions between it and fp32, following
 * compressed-tensors' quantize/dequantize: w ≈ (q − z) · s, with one scale (and zero point) per
 * tensor, per output row (channel), per run of `group_size` columns of a row (group, optionally
 * reordered by g_idx) or per 2-D block. Dequantization is done in fp32, so a checkpoint's stored
 * values are reproduced exactly.
 */
import { FP8_E4M3_MAX, FP8_E4M3_VALUES, encodeFp8E4M3 } from './fp8';
import type { WeightArgs } from './scheme';

export interface QuantizedMatrix {
  rows: number;
  cols: number;
  args: WeightArgs;
  /** Row-major codes: signed integers for int schemes, FP8 bytes for float ones. */
  codes: Int8Array | Uint8Array;
  /** Scales in the layout of `scaleShape`. */
  scale: Float32Array;
  /** Integer zero points in the scales' layout, for asymmetric schemes. */
  zeroPoint: Int8Array | null;
  /** Group of each column (activation reordering); null for groups of consecutive columns. */
  gIdx: Int32Array | null;
}

/**
 * A 4- or 8-bit integer matrix whose codes are still packed along each row: 32/bits codes per
 * int32, the lowest column in the lowest bits, stored unsigned (signed + 2^(bits−1)). That is
 * compressed-tensors' pack-quantized layout, GPTQ's transposed, and the CUDA backend's klc_wq, so
 * uploading such a matrix is a copy rather than an unpack and a repack of every code.
 */
export interface RowPackedMatrix extends Omit<QuantizedMatrix, 'codes' | 'scale'> {
  /** [rows, cols · bits / 32] words. */
  words: Int32Array;
  /** Scales in scaleShape's layout: fp32 values, or the bf16 bits a checkpoint stores them in (not converted). */
  scale: Float32Array | Uint16Array;
}

/** Shape of the scale (and zero-point) tensor of a [rows, cols] weight under `args`. */
export function scaleShape(args: WeightArgs, rows: number, cols: number): number[] {
  switch (args.strategy) {
    case 'tensor':
      return [1];
    case 'channel':
      return [rows, 1];
    case 'group':
      return [rows, Math.ceil(cols / (args.groupSize as number))];
    case 'block': {
      const [bh, bw] = args.blockStructure as [number, number];
      return [Math.ceil(rows / bh), Math.ceil(cols / bw)];
    }
  }
}

/** Index into the scale tensor of weight (r, c). */
function scaleIndexer(args: WeightArgs, rows: number, cols: number, gIdx: Int32Array | null): (r: number, c: number) => number {
  const shape = scaleShape(args, rows, cols);
  switch (args.strategy) {
    case 'tensor':
      return () => 0;
    case 'channel':
      return (r) => r;
    case 'group': {
      const gs = args.groupSize as number;
      const G = shape[1];
      return gIdx ? (r, c) => r * G + gIdx[c] : (r, c) => r * G + Math.floor(c / gs);
    }
    case 'block': {
      const [bh, bw] = args.blockStructure as [number, number];
      return (r, c) => Math.floor(r / bh) * shape[1] + Math.floor(c / bw);
    }
  }
}

export function dequantize(m: QuantizedMatrix): Float32Array {
  const { rows, cols, codes, scale, zeroPoint } = m;
  const at = scaleIndexer(m.args, rows, cols, m.gIdx);
  const out = new Float32Array(rows * cols);
  const float = m.args.type === 'float';
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const i = r * cols + c;
      const j = at(r, c);
      const q = float ? FP8_E4M3_VALUES[codes[i]] : codes[i];
      out[i] = (q - (zeroPoint ? zeroPoint[j] : 0)) * scale[j];
    }
  }
  return out;
}

/** Integer code range [qmin, qmax] (or ±448 for FP8), as compressed-tensors' calculate_range. */
function codeRange(args: WeightArgs): [number, number] {
  if (args.type === 'float') return [-FP8_E4M3_MAX, FP8_E4M3_MAX];
  return [-(2 ** (args.numBits - 1)), 2 ** (args.numBits - 1) - 1];
}

/** Round half to even, as torch.round. */
function roundEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * Round-to-nearest quantization with min-max scales (llm-compressor's default observer):
 * symmetric s = max|w| / ((qmax − qmin) / 2); asymmetric s = (max − min) / (qmax − qmin) over a
 * range that includes 0, z = round(qmin − min / s). `roundScale` maps each computed scale to the
 * value its stored dtype holds, so codes are chosen against the scale that will be read back.
 */
export function quantize(w: Float32Array, rows: number, cols: number, args: WeightArgs, roundScale: (x: number) => number): QuantizedMatrix {
  if (w.length !== rows * cols) throw new Error(`quantize: ${w.length} values for [${rows}, ${cols}]`);
  const shape = scaleShape(args, rows, cols);
  const n = shape.reduce((a, b) => a * b, 1);
  const at = scaleIndexer(args, rows, cols, null);
  const lo = new Float64Array(n);
  const hi = new Float64Array(n);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const j = at(r, c);
      const x = w[r * cols + c];
      if (x < lo[j]) lo[j] = x;
      if (x > hi[j]) hi[j] = x;
    }
  }
  const [qmin, qmax] = codeRange(args);
  const eps = 2 ** -23;
  const scale = new Float32Array(n);
  const zeroPoint = args.symmetric ? null : new Int8Array(n);
  for (let j = 0; j < n; j++) {
    if (args.symmetric) {
      scale[j] = roundScale(Math.max(Math.max(-lo[j], hi[j]) / ((qmax - qmin) / 2), eps));
    } else {
      scale[j] = roundScale(Math.max((hi[j] - lo[j]) / (qmax - qmin), eps));
      (zeroPoint as Int8Array)[j] = Math.min(qmax, Math.max(qmin, roundEven(qmin - lo[j] / scale[j])));
    }
  }
  const codes = args.type === 'float' ? new Uint8Array(rows * cols) : new Int8Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const i = r * cols + c;
      const j = at(r, c);
      const scaled = Math.min(qmax, Math.max(qmin, w[i] / scale[j] + (zeroPoint ? zeroPoint[j] : 0)));
      codes[i] = args.type === 'float' ? encodeFp8E4M3(scaled) : roundEven(scaled);
    }
  }
  return { rows, cols, args, codes, scale, zeroPoint, gIdx: null };
}
