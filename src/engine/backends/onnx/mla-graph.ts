/**
 * ONNX graphs of one MLA block (spec §3, NoPE). Both take the cached latent rows of the sequence
 * and return the new rows for the host to append to its LatentCache.
 * Prefill: the up-projected (naive) form over cache + new tokens with a causal mask.
 * Decode: kv_b_proj absorbed into the query, attention over the latent rows directly.
 *
 * Feeds: x [T, d], past [Tp, L+r]. Fetches: y [T, d], rows [T, L+r].
 */
import type { KimiConfig } from '../../model/config';
import type { MlaWeights } from '../../reference/mla';
import { Graph } from './graph';
import { END, linear, reshape, rmsnorm, slice, transpose, unsqueeze } from './ops';

/** x's latent rows [T, L+r]: kv_a_layernorm(c) then k_rot; also a graph output, for the host's cache. */
function latents(g: Graph, cfg: KimiConfig, w: MlaWeights, x: string): string {
  const { kvLoraRank: L, qkRopeHeadDim: r } = cfg.mla;
  const ckv = linear(g, x, w.kvA, L + r, cfg.hiddenSize, 'kv_a');
  const c = rmsnorm(g, slice(g, ckv, 1, 0, L), w.kvNorm, cfg.mla.kvNormEps);
  const rows = g.op('Concat', [c, slice(g, ckv, 1, L, END)], { axis: 1 });
  g.output('rows', rows, 'float', ['T', L + r]);
  return rows;
}

/** Keys per step of the prefill's loop over the cache: bounds the score memory to H × T × KEY_BLOCK. */
export const KEY_BLOCK = 1024;

/**
 * Causal attention of x's T tokens over the cached tokens and themselves, walking the keys in
 * blocks with an online softmax (running max m, sum l and value sum per query row), so memory
 * does not grow with the context. Block 0 holds key 0, which every query sees, so m is finite
 * from the first step on and fully masked later blocks contribute exp(−∞) = 0.
 */
export function mlaPrefillGraph(cfg: KimiConfig, w: MlaWeights, keyBlock = KEY_BLOCK): Uint8Array {
  const g = new Graph();
  const { numHeads: H, qkNopeHeadDim: n, qkRopeHeadDim: r, vHeadDim: dv, kvLoraRank: L } = cfg.mla;
  const d = cfg.hiddenSize;
  const qw = n + r;
  const x = g.input('x', 'float', ['T', d]);
  const past = g.input('past', 'float', ['Tp', L + r]);
  const q = g.op('Mul', [transpose(g, reshape(g, linear(g, x, w.qProj, H * qw, d, 'q'), [-1, H, qw]), [1, 0, 2]), g.f32([1 / Math.sqrt(qw)], [])]);
  const all = g.op('Concat', [past, latents(g, cfg, w, x)], { axis: 0 });
  const kvB = g.weight(w.kvB, [H * (n + dv), L], 'kv_b');

  // Query i sits at absolute position Tp + i and sees keys 0..Tp + i.
  const Tp = g.op('Shape', [past], { start: 0, end: 1 });
  const T = g.op('Shape', [x], { start: 0, end: 1 });
  const Tall = g.op('Add', [Tp, T]);
  const qpos = unsqueeze(g, g.op('Add', [g.op('Range', [g.scalar(0), g.op('Squeeze', [T, g.i64([0])]), g.scalar(1)]), Tp]), [1]);
  const trips = g.op('Squeeze', [g.op('Div', [g.op('Add', [Tall, g.i64([keyBlock - 1])]), g.i64([keyBlock])]), g.i64([0])]);

  const b = g.subgraph();
  const iter = b.input('mla_iter', 'int64', []);
  const cond = b.input('mla_cond', 'bool', []);
  const m = b.input('mla_m', 'float');
  const l = b.input('mla_l', 'float');
  const acc = b.input('mla_acc', 'float');
  const start = b.op('Mul', [unsqueeze(b, iter, [0]), b.i64([keyBlock])]);
  const stop = b.op('Min', [b.op('Add', [start, b.i64([keyBlock])]), Tall]);
  const blk = b.op('Slice', [all, start, stop, b.i64([0])]);
  const kv = transpose(b, reshape(b, b.op('Gemm', [slice(b, blk, 1, 0, L), kvB], { transB: 1 }), [-1, H, n + dv]), [1, 0, 2]);
  const kRot = b.op('Expand', [unsqueeze(b, slice(b, blk, 1, L, END), [0]), b.i64([H, 1, 1])]);
  const keys = b.op('Concat', [slice(b, kv, 2, 0, n), kRot], { axis: 2 });
  const kpos = b.op('Range', [b.op('Squeeze', [start, b.i64([0])]), b.op('Squeeze', [stop, b.i64([0])]), b.scalar(1)]);
  const visible = b.op('LessOrEqual', [unsqueeze(b, kpos, [0]), qpos]);
  const scores = b.op('Where', [visible, b.op('MatMul', [q, transpose(b, keys, [0, 2, 1])]), b.f32([-Infinity], [])]);
  const mNew = b.op('Max', [m, b.op('ReduceMax', [scores], { axes: [-1], keepdims: 1 })]);
  const rescale = b.op('Exp', [b.op('Sub', [m, mNew])]);
  const p = b.op('Exp', [b.op('Sub', [scores, mNew])]);
  b.output('mla_cond_out', b.op('Identity', [cond]), 'bool', []);
  b.output('mla_m_out', mNew);
  b.output('mla_l_out', b.op('Add', [b.op('Mul', [l, rescale]), b.op('ReduceSum', [p, b.i64([-1])], { keepdims: 1 })]));
  b.output('mla_acc_out', b.op('Add', [b.op('Mul', [acc, rescale]), b.op('MatMul', [p, slice(b, kv, 2, n, END)])]));

  const rowShape = g.op('Concat', [g.i64([H]), T, g.i64([1])], { axis: 0 });
  const m0 = g.op('Expand', [g.f32([-Infinity], []), rowShape]);
  const l0 = g.op('Expand', [g.f32([0], []), rowShape]);
  const acc0 = g.op('Expand', [g.f32([0], []), g.op('Concat', [g.i64([H]), T, g.i64([dv])], { axis: 0 })]);
  const yes = g.op('Cast', [g.scalar(1)], { to: 9 });
  const [, lEnd, accEnd] = g.opN('Loop', [trips, yes, m0, l0, acc0], 3, { body: b });
  const ctx = reshape(g, transpose(g, g.op('Div', [accEnd, lEnd]), [1, 0, 2]), [-1, H * dv]);
  g.output('y', linear(g, ctx, w.oProj, d, H * dv, 'o_proj'), 'float', ['T', d]);
  return g.encodeModel('mla_prefill');
}

export function mlaDecodeGraph(cfg: KimiConfig, w: MlaWeights): Uint8Array {
  const g = new Graph();
  const { numHeads: H, qkNopeHeadDim: n, qkRopeHeadDim: r, vHeadDim: dv, kvLoraRank: L } = cfg.mla;
  const d = cfg.hiddenSize;
  const qw = n + r;
  const x = g.input('x', 'float', [1, d]);
  const past = g.input('past', 'float', ['Tp', L + r]);
  const q = reshape(g, linear(g, x, w.qProj, H * qw, d, 'q'), [H, 1, qw]);
  const rows = latents(g, cfg, w, x);

  // W_UK[h] [n, L] and W_UV[h]ᵀ [L, dv] from kv_b_proj's per-head row blocks.
  const uk = new Float32Array(H * n * L);
  const uvT = new Float32Array(H * L * dv);
  for (let h = 0; h < H; h++) {
    uk.set(w.kvB.subarray(h * (n + dv) * L, (h * (n + dv) + n) * L), h * n * L);
    for (let a = 0; a < dv; a++) {
      const row = (h * (n + dv) + n + a) * L;
      for (let c = 0; c < L; c++) uvT[(h * L + c) * dv + a] = w.kvB[row + c];
    }
  }
  const qLat = g.op('MatMul', [slice(g, q, 2, 0, n), g.weight(uk, [H, n, L], 'w_uk')]);
  const qAbs = g.op('Mul', [g.op('Concat', [qLat, slice(g, q, 2, n, END)], { axis: 2 }), g.f32([1 / Math.sqrt(qw)], [])]);
  // The cache and the new row are used where they lie: no concatenated copy of the context.
  const scores = g.op('Concat', [g.op('MatMul', [qAbs, transpose(g, past, [1, 0])]), g.op('MatMul', [qAbs, transpose(g, rows, [1, 0])])], { axis: 2 });
  const p = g.op('Softmax', [scores], { axis: -1 });
  const ctxRow = g.op('Add', [g.op('MatMul', [slice(g, p, 2, 0, -1), past]), g.op('MatMul', [slice(g, p, 2, -1, END), rows])]);
  const ctx = reshape(g, g.op('MatMul', [slice(g, ctxRow, 2, 0, L), g.weight(uvT, [H, L, dv], 'w_uv_t')]), [1, H * dv]);
  g.output('y', linear(g, ctx, w.oProj, d, H * dv, 'o_proj'), 'float', [1, d]);
  return g.encodeModel('mla_decode');
}
