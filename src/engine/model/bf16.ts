/**
 * bf16 on the host: the upper 16 bits of an fp32. Rounding is to nearest, ties to even, the rule of
 * CUDA's __float2bfloat16_rn and of torch; widening back is exact.
 */

/** bf16 bits of fp32 values, rounded to nearest even (exact for values that are already bf16). */
export function toBf16(x: Float32Array): Uint16Array {
  const u = new Uint32Array(x.buffer, x.byteOffset, x.length);
  const out = new Uint16Array(x.length);
  for (let i = 0; i < u.length; i++) {
    const v = u[i];
    out[i] = (v & 0x7f800000) === 0x7f800000 ? v >>> 16 : ((v + 0x7fff + ((v >>> 16) & 1)) >>> 16) & 0xffff;
  }
  return out;
}

/** fp32 values of bf16 bits, into `out` (a new array by default). */
export function fromBf16(b: Uint16Array, out = new Float32Array(b.length)): Float32Array {
  const u = new Uint32Array(out.buffer, out.byteOffset, b.length);
  for (let i = 0; i < b.length; i++) u[i] = b[i] << 16;
  return out;
}
