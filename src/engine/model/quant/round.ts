/** Rounding an fp32 value to what a stored scale dtype holds (round to nearest even). */
import type { Dtype } from '../safetensors';

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

function toBf16(x: number): number {
  f32[0] = x;
  const bits = u32[0];
  u32[0] = ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) << 16;
  return f32[0];
}

function toF16(x: number): number {
  const a = Math.abs(x);
  if (a >= 65520) return Math.sign(x) * Infinity;
  // Spacing of f16 values around a: 2^(e−10) for normals, 2^−24 for subnormals.
  let e = a < 2 ** -14 ? -14 : Math.floor(Math.log2(a));
  if (e > -14 && 2 ** e > a) e -= 1;
  const step = 2 ** (e - 10);
  const q = a / step;
  const r = Math.round(q);
  const even = Math.abs(q % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
  return Math.sign(x) * even * step;
}

/** Scales are stored in bf16 for a bf16 weight (as llm-compressor does), else in fp32. */
export const scaleDtypeFor = (weight: Dtype): Dtype => (weight === 'BF16' ? 'BF16' : 'F32');

/** The function that rounds fp32 values to `dtype` (F32, BF16 or F16). */
export function rounderFor(dtype: Dtype): (x: number) => number {
  if (dtype === 'BF16') return toBf16;
  if (dtype === 'F16') return toF16;
  if (dtype === 'F32') return Math.fround;
  throw new Error(`no float rounding for ${dtype}`);
}
