/**
 * The linear weights of one Kimi Linear layer as [rows, cols] (out × in), listed once so that the
 * memory plan (bytes under each quantization) and the speed floors (bytes and FLOPs per token)
 * count the same matrices. The order follows the checkpoint's projections; it carries no meaning.
 */
import type { AttentionKind, KimiConfig } from '../model/config';

/** kept: a matrix every quantization scheme leaves in the checkpoint's precision (linear-modules.ts keptInFullPrecision). */
export type Shape = readonly [rows: number, cols: number, kept?: 'full-precision'];

/** The attention projections of a KDA or MLA layer. */
export function attentionMatrices(c: KimiConfig, attention: AttentionKind): Shape[] {
  const d = c.hiddenSize;
  if (attention === 'kda') {
    const { numHeads: H, headDim: K } = c.kda;
    const P = H * K;
    // q, k, v; the gate's two low-rank factors (f_a, f_b); beta; the output gate's (g_a, g_b); o.
    return [[P, d], [P, d], [P, d], [K, d], [P, K], [H, d, 'full-precision'], [K, d], [P, K], [d, P]];
  }
  const m = c.mla;
  return [
    [m.numHeads * (m.qkNopeHeadDim + m.qkRopeHeadDim), d],
    [m.kvLoraRank + m.qkRopeHeadDim, d],
    [m.numHeads * (m.qkNopeHeadDim + m.vHeadDim), m.kvLoraRank, 'full-precision'],
    [d, m.numHeads * m.vHeadDim],
  ];
}

/** gate, up and down of a SwiGLU MLP `inner` wide. */
export function swigluMatrices(c: KimiConfig, inner: number): Shape[] {
  const d = c.hiddenSize;
  return [[inner, d], [inner, d], [d, inner]];
}

/** Elements of a list of matrices. */
export function elements(shapes: readonly Shape[]): number {
  return shapes.reduce((n, [r, k]) => n + r * k, 0);
}
