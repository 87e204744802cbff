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
import { END, linear, reshape, rmsnorm, slice, transpose } from './ops';

/** Appends x's latent rows [T, L+r] (kv_a_layernorm(c), k_rot) after `past`; returns [rows, all]. */
function latents(g: Graph, cfg: KimiConfig, w: MlaWeights, x: string, past: string): [string, string] {
  const { kvLoraRank: L, qkRopeHeadDim: r } = cfg.mla;
  const ckv = linear(g, x, w.kvA, L + r, cfg.hiddenSize, 'kv_a');
  const c = rmsnorm(g, slice(g, ckv, 1, 0, L), w.kvNorm, cfg.mla.kvNormEps);
  const rows = g.op('Concat', [c, slice(g, ckv, 1, L, END)], { axis: 1 });
  g.output('rows', rows, 'float', ['T', L + r]);
  return [rows, g.op('Concat', [past, rows], { axis: 0 })];
}

export function mlaPrefillGraph(cfg: KimiConfig, w: MlaWeights): Uint8Array {
  const g = new Graph();
  const { numHeads: H, qkNopeHeadDim: n, qkRopeHeadDim: r, vHeadDim: dv, kvLoraRank: L } = cfg.mla;
  const d = cfg.hiddenSize;
  const qw = n + r;
  const x = g.input('x', 'float', ['T', d]);
  const past = g.input('past', 'float', ['Tp', L + r]);
  const q = transpose(g, reshape(g, linear(g, x, w.qProj, H * qw, d, 'q'), [-1, H, qw]), [1, 0, 2]);
  const [, all] = latents(g, cfg, w, x, past);

  const kv = transpose(g, reshape(g, linear(g, slice(g, all, 1, 0, L), w.kvB, H * (n + dv), L, 'kv_b'), [-1, H, n + dv]), [1, 0, 2]);
  const kRot = g.op('Expand', [g.op('Unsqueeze', [slice(g, all, 1, L, END), g.i64([0])]), g.i64([H, 1, 1])]);
  const keys = g.op('Concat', [slice(g, kv, 2, 0, n), kRot], { axis: 2 });
  const values = slice(g, kv, 2, n, END);
  const scores = g.op('Mul', [g.op('MatMul', [q, transpose(g, keys, [0, 2, 1])]), g.f32([1 / Math.sqrt(qw)], [])]);

  // Query i sits at absolute position Tp + i and sees keys 0..Tp + i.
  const Tp = g.op('Shape', [past], { start: 0, end: 1 });
  const T = g.op('Shape', [x], { start: 0, end: 1 });
  const Tall = g.op('Add', [Tp, T]);
  const qpos = g.op('Add', [g.op('Range', [g.scalar(0), g.op('Squeeze', [T, g.i64([0])]), g.scalar(1)]), Tp]);
  const kpos = g.op('Range', [g.scalar(0), g.op('Squeeze', [Tall, g.i64([0])]), g.scalar(1)]);
  const visible = g.op('LessOrEqual', [g.op('Unsqueeze', [kpos, g.i64([0])]), g.op('Unsqueeze', [qpos, g.i64([1])])]);
  const p = g.op('Softmax', [g.op('Where', [visible, scores, g.f32([-Infinity], [])])], { axis: -1 });
  const ctx = reshape(g, transpose(g, g.op('MatMul', [p, values]), [1, 0, 2]), [-1, H * dv]);
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
  const [, all] = latents(g, cfg, w, x, past);

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
  const qAbs = g.op('Concat', [qLat, slice(g, q, 2, n, END)], { axis: 2 });
  const scores = g.op('Mul', [g.op('MatMul', [qAbs, transpose(g, all, [1, 0])]), g.f32([1 / Math.sqrt(qw)], [])]);
  const p = g.op('Softmax', [scores], { axis: -1 });
  const ctxLat = g.op('MatMul', [p, slice(g, all, 1, 0, L)]);
  const ctx = reshape(g, g.op('MatMul', [ctxLat, g.weight(uvT, [H, L, dv], 'w_uv_t')]), [1, H * dv]);
  g.output('y', linear(g, ctx, w.oProj, d, H * dv, 'o_proj'), 'float', [1, d]);
  return g.encodeModel('mla_decode');
}
