/** Normalisations used by Kimi Linear, each as transformers 5.17 computes it in fp32. */
import { sigmoid, type FloatArray } from './linalg';

/** RMSNorm of each row: w · x / sqrt(mean(x²) + eps). */
export function rmsnormRows(x: FloatArray, rows: number, dim: number, w: Float32Array, eps: number): Float32Array {
  const out = new Float32Array(rows * dim);
  for (let r = 0; r < rows; r++) {
    const o = r * dim;
    let ss = 0;
    for (let i = 0; i < dim; i++) ss += x[o + i] * x[o + i];
    const inv = 1 / Math.sqrt(ss / dim + eps);
    for (let i = 0; i < dim; i++) out[o + i] = w[i] * Math.fround(x[o + i] * inv);
  }
  return out;
}

/** In place: each `dim`-vector x / sqrt(Σx² + eps), with eps inside the sqrt as fla's kernel does. */
export function l2normInPlace(x: FloatArray, vectors: number, dim: number, eps = 1e-6): void {
  for (let r = 0; r < vectors; r++) {
    const o = r * dim;
    let ss = 0;
    for (let i = 0; i < dim; i++) ss += x[o + i] * x[o + i];
    const inv = 1 / Math.sqrt(ss + eps);
    for (let i = 0; i < dim; i++) x[o + i] *= inv;
  }
}

/**
 * KDA output norm (fla FusedRMSNormGated, sigmoid activation): per head,
 * RMSNorm(o_h) · w · sigmoid(gate_h), with `w` [dim] shared by all heads.
 */
export function gatedRmsnormHeads(o: FloatArray, gate: Float32Array, vectors: number, dim: number, w: Float32Array, eps: number): Float32Array {
  const out = new Float32Array(vectors * dim);
  for (let r = 0; r < vectors; r++) {
    const b = r * dim;
    let ss = 0;
    for (let i = 0; i < dim; i++) ss += o[b + i] * o[b + i];
    const inv = 1 / Math.sqrt(ss / dim + eps);
    for (let i = 0; i < dim; i++) out[b + i] = o[b + i] * inv * w[i] * sigmoid(gate[b + i]);
  }
  return out;
}
