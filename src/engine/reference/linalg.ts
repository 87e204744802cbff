/**
 * Dense helpers of the reference backend. Activations are row-major Float32Array [rows, cols];
 * weights are PyTorch Linear layout [out, in]. Sums run in JS doubles (fp64) and are rounded to
 * fp32 once on store, which is the "fp32 math with fp64 accumulation" the reference promises.
 */

export type FloatArray = Float32Array | Float64Array;

/** y[T, out] = x[T, in] · Wᵀ with W [out, in]. */
export function linear(x: Float32Array, T: number, W: Float32Array, outDim: number, inDim: number): Float32Array {
  if (x.length < T * inDim || W.length !== outDim * inDim) {
    throw new Error(`linear: x has ${x.length} values for ${T}×${inDim}, W has ${W.length} for ${outDim}×${inDim}`);
  }
  const y = new Float32Array(T * outDim);
  // A 2-token × 4-output register block: each loaded x and W value feeds several sums. This is
  // what makes the pure-JS reference fast enough to run a small model interactively.
  let t = 0;
  for (; t + 2 <= T; t += 2) {
    const a0 = t * inDim;
    const a1 = a0 + inDim;
    const y0 = t * outDim;
    const y1 = y0 + outDim;
    let o = 0;
    for (; o + 4 <= outDim; o += 4) {
      const w0 = o * inDim;
      const w1 = w0 + inDim;
      const w2 = w1 + inDim;
      const w3 = w2 + inDim;
      let s00 = 0, s01 = 0, s02 = 0, s03 = 0, s10 = 0, s11 = 0, s12 = 0, s13 = 0;
      for (let i = 0; i < inDim; i++) {
        const x0 = x[a0 + i];
        const x1 = x[a1 + i];
        const v0 = W[w0 + i];
        const v1 = W[w1 + i];
        const v2 = W[w2 + i];
        const v3 = W[w3 + i];
        s00 += x0 * v0;
        s01 += x0 * v1;
        s02 += x0 * v2;
        s03 += x0 * v3;
        s10 += x1 * v0;
        s11 += x1 * v1;
        s12 += x1 * v2;
        s13 += x1 * v3;
      }
      y[y0 + o] = s00;
      y[y0 + o + 1] = s01;
      y[y0 + o + 2] = s02;
      y[y0 + o + 3] = s03;
      y[y1 + o] = s10;
      y[y1 + o + 1] = s11;
      y[y1 + o + 2] = s12;
      y[y1 + o + 3] = s13;
    }
    for (; o < outDim; o++) {
      const wo = o * inDim;
      let s0 = 0;
      let s1 = 0;
      for (let i = 0; i < inDim; i++) {
        s0 += x[a0 + i] * W[wo + i];
        s1 += x[a1 + i] * W[wo + i];
      }
      y[y0 + o] = s0;
      y[y1 + o] = s1;
    }
  }
  // The odd last row (and every decode step): four outputs at a time share each loaded x value.
  for (; t < T; t++) {
    const a0 = t * inDim;
    const y0 = t * outDim;
    let o = 0;
    for (; o + 4 <= outDim; o += 4) {
      const w0 = o * inDim;
      const w1 = w0 + inDim;
      const w2 = w1 + inDim;
      const w3 = w2 + inDim;
      let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      for (let i = 0; i < inDim; i++) {
        const xv = x[a0 + i];
        s0 += xv * W[w0 + i];
        s1 += xv * W[w1 + i];
        s2 += xv * W[w2 + i];
        s3 += xv * W[w3 + i];
      }
      y[y0 + o] = s0;
      y[y0 + o + 1] = s1;
      y[y0 + o + 2] = s2;
      y[y0 + o + 3] = s3;
    }
    for (; o < outDim; o++) {
      const wo = o * inDim;
      let s = 0;
      for (let i = 0; i < inDim; i++) s += x[a0 + i] * W[wo + i];
      y[y0 + o] = s;
    }
  }
  return y;
}

export function sigmoid(x: number): number {
  return 1 / (1 + Math.exp(-x));
}

export function silu(x: number): number {
  return x / (1 + Math.exp(-x));
}

/** PyTorch softplus with beta 1 and threshold 20 (linear above it). */
export function softplus(x: number): number {
  return x > 20 ? x : Math.log1p(Math.exp(x));
}

/** a[i] += b[i] */
export function addInPlace(a: Float32Array, b: Float32Array): void {
  if (a.length !== b.length) throw new Error(`addInPlace: lengths ${a.length} and ${b.length}`);
  for (let i = 0; i < a.length; i++) a[i] += b[i];
}

/** Columns [from, from + width) of a row-major [rows, cols] matrix. */
export function columns(x: Float32Array, rows: number, cols: number, from: number, width: number): Float32Array {
  const out = new Float32Array(rows * width);
  for (let r = 0; r < rows; r++) out.set(x.subarray(r * cols + from, r * cols + from + width), r * width);
  return out;
}
