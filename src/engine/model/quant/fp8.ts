/**
 * FP8 E4M3 in its "fn" variant (torch.float8_e4m3fn, safetensors F8_E4M3): 1 sign, 4 exponent
 * bits with bias 7, 3 mantissa bits, no infinities, S.1111.111 is NaN, largest finite ±448.
 */
export const FP8_E4M3_MAX = 448;

/** Value of every byte. */
export const FP8_E4M3_VALUES = (() => {
  const t = new Float32Array(256);
  for (let b = 0; b < 256; b++) {
    const sign = b & 0x80 ? -1 : 1;
    const exp = (b >> 3) & 0xf;
    const mant = b & 7;
    if (exp === 15 && mant === 7) t[b] = NaN;
    else if (exp === 0) t[b] = sign * (mant / 8) * 2 ** -6;
    else t[b] = sign * (1 + mant / 8) * 2 ** (exp - 7);
  }
  return t;
})();

/**
 * The byte nearest to `x`, ties to the even mantissa (torch's cast), saturating at ±448 (callers
 * clamp first, as compressed-tensors does, since the cast itself does not saturate).
 */
export function encodeFp8E4M3(x: number): number {
  if (Number.isNaN(x)) return 0x7f;
  const sign = x < 0 || Object.is(x, -0) ? 0x80 : 0;
  const a = Math.min(Math.abs(x), FP8_E4M3_MAX);
  // Codes 0x00..0x7e are the finite non-negative values in increasing order.
  let lo = 0;
  let hi = 0x7e;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (FP8_E4M3_VALUES[mid] <= a) lo = mid;
    else hi = mid;
  }
  const dLo = a - FP8_E4M3_VALUES[lo];
  const dHi = FP8_E4M3_VALUES[hi] - a;
  const code = dLo < dHi ? lo : dHi < dLo ? hi : (lo & 1) === 0 ? lo : hi;
  return sign | code;
}
