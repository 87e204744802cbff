/**
 * ONNX graphs of one MLA block (spec §3, NoPE). Both take the cached latent rows of the sequence
 * in two parts, `shared` then `own` (see OnnxBackend's forks), and return the new rows for the
 * host to append.
 * Prefill: the up-projected (naive) form over cache + new tokens with a causal mask.
 * Decode: kv_b_proj absorbed into the query, attention over the latent rows directly.
 *
 * Feeds: x [T, d], shared [Ts, L+r], own [To, L+r]. Fetches: y [T, d], rows [T, L+r].
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

/** Keys per step of the prefill's loops over the cache: bounds the score memory to H × T × KEY_BLOCK. */
export const KEY_BLOCK = 1024;

/** An online softmax in progress, per head and query row: running max m, sum l and value sum acc. */
interface Running {
  m: string;
  l: string;
  acc: string;
}

/**
 * Folds the keys of the latent rows `src` [len, L+r] into `run`, `keyBlock` rows per step of a
 * Loop that slices `src` where it lies. `causalTo` (x's own rows): key j is seen only by queries
 * i ≥ j, given as the query indices [T, 1]; cached rows are seen by every query.
 */
function attendRows(g: Graph, cfg: KimiConfig, tag: string, q: string, kvB: string, src: string, run: Running, keyBlock: number, causalTo?: string): Running {
  const { numHeads: H, qkNopeHeadDim: n, vHeadDim: dv, kvLoraRank: L } = cfg.mla;
  const len = g.op('Shape', [src], { start: 0, end: 1 });
  const trips = g.op('Squeeze', [g.op('Div', [g.op('Add', [len, g.i64([keyBlock - 1])]), g.i64([keyBlock])]), g.i64([0])]);

  const b = g.subgraph();
  const iter = b.input(`${tag}_iter`, 'int64', []);
  const cond = b.input(`${tag}_cond`, 'bool', []);
  const m = b.input(`${tag}_m`, 'float');
  const l = b.input(`${tag}_l`, 'float');
  const acc = b.input(`${tag}_acc`, 'float');
  const start = b.op('Mul', [unsqueeze(b, iter, [0]), b.i64([keyBlock])]);
  const stop = b.op('Min', [b.op('Add', [start, b.i64([keyBlock])]), len]);
  const blk = b.op('Slice', [src, start, stop, b.i64([0])]);
  const kv = transpose(b, reshape(b, b.op('Gemm', [slice(b, blk, 1, 0, L), kvB], { transB: 1 }), [-1, H, n + dv]), [1, 0, 2]);
  const kRot = b.op('Expand', [unsqueeze(b, slice(b, blk, 1, L, END), [0]), b.i64([H, 1, 1])]);
  const keys = b.op('Concat', [slice(b, kv, 2, 0, n), kRot], { axis: 2 });
  let scores = b.op('MatMul', [q, transpose(b, keys, [0, 2, 1])]);
  if (causalTo) {
    const kpos = b.op('Range', [b.op('Squeeze', [start, b.i64([0])]), b.op('Squeeze', [stop, b.i64([0])]), b.scalar(1)]);
    scores = b.op('Where', [b.op('LessOrEqual', [unsqueeze(b, kpos, [0]), causalTo]), scores, b.f32([-Infinity], [])]);
  }
  const mNew = b.op('Max', [m, b.op('ReduceMax', [scores], { axes: [-1], keepdims: 1 })]);
  const rescale = b.op('Exp', [b.op('Sub', [m, mNew])]);
  const p = b.op('Exp', [b.op('Sub', [scores, mNew])]);
  b.output(`${tag}_cond_out`, b.op('Identity', [cond]), 'bool', []);
  b.output(`${tag}_m_out`, mNew);
  b.output(`${tag}_l_out`, b.op('Add', [b.op('Mul', [l, rescale]), b.op('ReduceSum', [p, b.i64([-1])], { keepdims: 1 })]));
  b.output(`${tag}_acc_out`, b.op('Add', [b.op('Mul', [acc, rescale]), b.op('MatMul', [p, slice(b, kv, 2, n, END)])]));

  const yes = g.op('Cast', [g.scalar(1)], { to: 9 });
  const [m1, l1, acc1] = g.opN('Loop', [trips, yes, run.m, run.l, run.acc], 3, { body: b });
  return { m: m1, l: l1, acc: acc1 };
}

/**
 * Causal attention of x's T tokens over the cached tokens and themselves, walking the keys in
 * blocks with an online softmax, so memory does not grow with the context. The cache comes in two
 * parts, each read where it lies: `shared` (a prefix a forked state shares read-only with the
 * state it was forked from) and `own` (the rows the sequence appended itself); one loop per part
 * and one over x's rows, carrying the softmax from one to the next, so no concatenated copy of
 * the cache is made in or outside the graph. Every query sees every cached key and x's first key,
 * so the first block with any key makes m finite and fully masked later blocks add exp(−∞) = 0.
 *
 * Feeds: x [T, d], shared [Ts, L+r], own [To, L+r]. Fetches: y [T, d], rows [T, L+r].
 */
export function mlaPrefillGraph(cfg: KimiConfig, w: MlaWeights, keyBlock = KEY_BLOCK): Uint8Array {
  const g = new Graph();
  const { numHeads: H, qkNopeHeadDim: n, qkRopeHeadDim: r, vHeadDim: dv, kvLoraRank: L } = cfg.mla;
  const d = cfg.hiddenSize;
  const qw = n + r;
  const x = g.input('x', 'float', ['T', d]);
  const shared = g.input('shared', 'float', ['Ts', L + r]);
  const own = g.input('own', 'float', ['To', L + r]);
  const q = g.op('Mul', [transpose(g, reshape(g, linear(g, x, w.qProj, H * qw, d, 'q'), [-1, H, qw]), [1, 0, 2]), g.f32([1 / Math.sqrt(qw)], [])]);
  const rows = latents(g, cfg, w, x);
  const kvB = g.weight(w.kvB, [H * (n + dv), L], 'kv_b');

  const T = g.op('Shape', [x], { start: 0, end: 1 });
  const qidx = unsqueeze(g, g.op('Range', [g.scalar(0), g.op('Squeeze', [T, g.i64([0])]), g.scalar(1)]), [1]);
  const rowShape = g.op('Concat', [g.i64([H]), T, g.i64([1])], { axis: 0 });
  const start: Running = {
    m: g.op('Expand', [g.f32([-Infinity], []), rowShape]),
    l: g.op('Expand', [g.f32([0], []), rowShape]),
    acc: g.op('Expand', [g.f32([0], []), g.op('Concat', [g.i64([H]), T, g.i64([dv])], { axis: 0 })]),
  };
  const afterShared = attendRows(g, cfg, 'mla_shared', q, kvB, shared, start, keyBlock);
  const afterOwn = attendRows(g, cfg, 'mla_own', q, kvB, own, afterShared, keyBlock);
  const end = attendRows(g, cfg, 'mla_new', q, kvB, rows, afterOwn, keyBlock, qidx);
  const ctx = reshape(g, transpose(g, g.op('Div', [end.acc, end.l]), [1, 0, 2]), [-1, H * dv]);
  g.output('y', linear(g, ctx, w.oProj, d, H * dv, 'o_proj'), 'float', ['T', d]);
  return g.encodeModel('mla_prefill');
}

export function mlaDecodeGraph(cfg: KimiConfig, w: MlaWeights): Uint8Array {
  const g = new Graph();
  const { numHeads: H, qkNopeHeadDim: n, qkRopeHeadDim: r, vHeadDim: dv, kvLoraRank: L } = cfg.mla;
  const d = cfg.hiddenSize;
  const qw = n + r;
  const x = g.input('x', 'float', [1, d]);
  const shared = g.input('shared', 'float', ['Ts', L + r]);
  const own = g.input('own', 'float', ['To', L + r]);
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
  // Both parts of the cache and the new row are used where they lie: no concatenated copy of the
  // context; only the scores (one per key and head) are concatenated for the softmax.
  const scoresOver = (keys: string) => g.op('MatMul', [qAbs, transpose(g, keys, [1, 0])]);
  const p = g.op('Softmax', [g.op('Concat', [scoresOver(shared), scoresOver(own), scoresOver(rows)], { axis: 2 })], { axis: -1 });
  const Ts = g.op('Shape', [shared], { start: 0, end: 1 });
  const cached = g.op('Add', [Ts, g.op('Shape', [own], { start: 0, end: 1 })]);
  const axis2 = g.i64([2]);
  const ctxRow = g.op('Sum', [
    g.op('MatMul', [g.op('Slice', [p, g.i64([0]), Ts, axis2]), shared]),
    g.op('MatMul', [g.op('Slice', [p, Ts, cached, axis2]), own]),
    g.op('MatMul', [slice(g, p, 2, -1, END), rows]),
  ]);
  const ctx = reshape(g, g.op('MatMul', [slice(g, ctxRow, 2, 0, L), g.weight(uvT, [H, L, dv], 'w_uv_t')]), [1, H * dv]);
  g.output('y', linear(g, ctx, w.oProj, d, H * dv, 'o_proj'), 'float', [1, d]);
  return g.encodeModel('mla_decode');
}
