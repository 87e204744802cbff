/** Building blocks shared by the layer graphs; each adds the nodes of one formula of the spec. */
import type { Graph } from './graph';
import { nbitsOf } from './nbits';

/** Marks "to the end of the axis" in Slice. */
export const END = 2 ** 53 - 1;

/**
 * y = x · Wᵀ for x [rows, inDim] and a PyTorch Linear weight W [outDim, inDim]; through
 * MatMulNBits when W carries a 4-bit packed form (nbits.ts).
 */
export function linear(g: Graph, x: string, W: Float32Array, outDim: number, inDim: number, hint = 'w'): string {
  const nb = nbitsOf(W);
  if (nb && nb.N === outDim && nb.K === inDim) {
    const blocks = Math.ceil(inDim / nb.blockSize);
    const inputs = [x, g.bytes(nb.packed, [outDim, blocks, nb.blockSize / 2], `${hint}_q4`), g.weight(nb.scales, [outDim, blocks], `${hint}_scales`)];
    if (nb.zeroPoints) inputs.push(g.bytes(nb.zeroPoints, [outDim, Math.ceil(blocks / 2)], `${hint}_zp`));
    return g.contribOp('MatMulNBits', inputs, { K: inDim, N: outDim, bits: 4, block_size: nb.blockSize });
  }
  return g.op('Gemm', [x, g.weight(W, [outDim, inDim], hint)], { transB: 1 });
}

export function silu(g: Graph, x: string): string {
  return g.op('Mul', [x, g.op('Sigmoid', [x])]);
}

/** x / sqrt(mean(x²) over the last axis + eps), not yet scaled by a weight. */
export function rmsScale(g: Graph, x: string, eps: number): string {
  const ms = g.op('ReduceMean', [g.op('Mul', [x, x])], { axes: [-1], keepdims: 1 });
  return g.op('Mul', [x, g.op('Reciprocal', [g.op('Sqrt', [g.op('Add', [ms, g.f32([eps], [])])])])]);
}

/** RMSNorm over the last axis with weight `w`. */
export function rmsnorm(g: Graph, x: string, w: Float32Array, eps: number): string {
  return g.op('Mul', [rmsScale(g, x, eps), g.weight(w, [w.length], 'norm')]);
}

/** x / sqrt(Σx² over the last axis + eps) (fla's in-kernel q/k normalisation). */
export function l2norm(g: Graph, x: string, eps = 1e-6): string {
  const ss = g.op('ReduceSum', [g.op('Mul', [x, x]), g.i64([-1])], { keepdims: 1 });
  return g.op('Div', [x, g.op('Sqrt', [g.op('Add', [ss, g.f32([eps], [])])])]);
}

/** Slice of `x` along `axis`, [start, end). */
export function slice(g: Graph, x: string, axis: number, start: number, end: number): string {
  return g.op('Slice', [x, g.i64([start]), g.i64([end]), g.i64([axis])]);
}

export function reshape(g: Graph, x: string, shape: number[]): string {
  return g.op('Reshape', [x, g.i64(shape)]);
}

export function transpose(g: Graph, x: string, perm: number[]): string {
  return g.op('Transpose', [x], { perm });
}

export function unsqueeze(g: Graph, x: string, axes: number[]): string {
  return g.op('Unsqueeze', [x, g.i64(axes)]);
}

/** SwiGLU MLP: down(SiLU(gate x) ⊙ up x), for x [rows, d]. */
export function swiglu(g: Graph, x: string, gate: Float32Array, up: Float32Array, down: Float32Array, inner: number, d: number): string {
  const h = g.op('Mul', [silu(g, linear(g, x, gate, inner, d, 'gate')), linear(g, x, up, inner, d, 'up')]);
  return linear(g, h, down, d, inner, 'down');
}

/** PyTorch softplus (beta 1, linear above 20), without overflow for large inputs. */
export function softplus(g: Graph, x: string): string {
  const big = g.op('Greater', [x, g.f32([20], [])]);
  const safe = g.op('Min', [x, g.f32([20], [])]);
  return g.op('Where', [big, x, g.op('Softplus', [safe])]);
}
