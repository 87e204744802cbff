/**
 * ONNX graphs of one KDA attention block (spec §2): projections, short conv with its state tail,
 * SiLU, q/k L2 norm, beta, the log-space gate, the delta-rule core, the gated output norm and
 * o_proj. Two cores: the recurrence for one token (decode) and the chunkwise-parallel form for
 * prefill, which computes every chunk-local matrix for all chunks at once and then carries the
 * state S through the chunks with a Scan.
 *
 * Feeds: x [T, d], conv [3P, W−1] (the neutral tail layout), S [H, K, V].
 * Fetches: y [T, d], conv_out, S_out (the advanced state).
 */
import type { KimiConfig } from '../../model/config';
import type { KdaWeights } from '../../reference/kda';
import { Graph } from './graph';
import { attachStacked } from './nbits';
import { END, l2norm, linear, reshape, rmsScale, silu, slice, softplus, transpose, unsqueeze } from './ops';

/** Rows of the intra-chunk sub-blocks whose last token is the exponent reference (as fla's b_gn). */
const SUB = 4;
/** Rows of the diagonal blocks that (I + Akk)⁻¹ inverts directly before joining them. */
const SOLVE = 8;

interface Front {
  q: string;
  k: string;
  v: string;
  beta: string;
  gate: string;
}

function concat(parts: Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  attachStacked(parts, out);
  return out;
}

/** Projections, conv (advancing the tail), SiLU, L2 norms, beta and the log-decay gate. */
function front(g: Graph, cfg: KimiConfig, w: KdaWeights, x: string): Front {
  const d = cfg.hiddenSize;
  const { numHeads: H, headDim: K, convKernel: Wc } = cfg.kda;
  const P = H * K;
  const keep = Wc - 1;
  const pre = linear(g, x, concat([w.qProj, w.kProj, w.vProj]), 3 * P, d, 'qkv');
  const tail = g.input('conv', 'float', [3 * P, keep]);
  // Channels first, the tail and the new inputs join along time; a depthwise Conv (one group per
  // channel, no padding) then yields exactly T outputs, the last tap on the current token.
  const ext = g.op('Concat', [tail, transpose(g, pre, [1, 0])], { axis: 1 });
  const taps = concat([w.qConv, w.kConv, w.vConv]);
  const conv = g.op('Conv', [unsqueeze(g, ext, [0]), g.weight(taps, [3 * P, 1, Wc], 'conv')], { group: 3 * P, kernel_shape: [Wc] });
  const acc = transpose(g, g.op('Squeeze', [conv, g.i64([0])]), [1, 0]);
  g.output('conv_out', slice(g, ext, 1, -keep, END), 'float', [3 * P, keep]);
  const y = silu(g, acc);
  const heads = (s: number) => reshape(g, slice(g, y, 1, s * P, (s + 1) * P), [-1, H, K]);

  const beta = g.op('Sigmoid', [linear(g, x, w.bProj, H, d, 'b')]);
  const f = linear(g, linear(g, x, w.fA, K, d, 'fa'), w.fB, P, K, 'fb');
  const negA = new Float32Array(P);
  for (let h = 0; h < H; h++) negA.fill(-Math.exp(w.aLog[h]), h * K, (h + 1) * K);
  const sp = softplus(g, g.op('Add', [f, g.weight(w.dtBias, [P], 'dt_bias')]));
  const gate = reshape(g, g.op('Mul', [sp, g.weight(negA, [P], 'neg_a')]), [-1, H, K]);
  return { q: l2norm(g, heads(0)), k: l2norm(g, heads(1)), v: heads(2), beta, gate };
}

/** Gated RMSNorm per head (sigmoid gate), then o_proj; `o` is [T, H, V]. */
function back(g: Graph, cfg: KimiConfig, w: KdaWeights, x: string, o: string): string {
  const d = cfg.hiddenSize;
  const { numHeads: H, headDim: K } = cfg.kda;
  const P = H * K;
  const gl = reshape(g, linear(g, linear(g, x, w.gA, K, d, 'ga'), w.gB, P, K, 'gb'), [-1, H, K]);
  const normed = g.op('Mul', [g.op('Mul', [rmsScale(g, o, cfg.rmsNormEps), g.weight(w.oNorm, [K], 'o_norm')]), g.op('Sigmoid', [gl])]);
  return linear(g, reshape(g, normed, [-1, P]), w.oProj, d, P, 'o_proj');
}

/** The recurrence for a single token: S ← Diag(e^g) S; u = v − Sᵀk; S ← S + β k uᵀ; o = Sᵀ(scale q). */
export function kdaDecodeGraph(cfg: KimiConfig, w: KdaWeights): Uint8Array {
  const g = new Graph();
  const { numHeads: H, headDim: K } = cfg.kda;
  const x = g.input('x', 'float', [1, cfg.hiddenSize]);
  const S = g.input('S', 'float', [H, K, K]);
  const f = front(g, cfg, w, x);
  const S1 = g.op('Mul', [S, g.op('Exp', [reshape(g, f.gate, [H, K, 1])])]);
  const u = g.op('Sub', [reshape(g, f.v, [H, 1, K]), g.op('MatMul', [reshape(g, f.k, [H, 1, K]), S1])]);
  const ku = g.op('MatMul', [reshape(g, f.k, [H, K, 1]), u]);
  const S2 = g.op('Add', [S1, g.op('Mul', [ku, reshape(g, f.beta, [H, 1, 1])])]);
  g.output('S_out', S2, 'float', [H, K, K]);
  const qs = g.op('Mul', [reshape(g, f.q, [H, 1, K]), g.f32([1 / Math.sqrt(K)], [])]);
  const o = reshape(g, g.op('MatMul', [qs, S2]), [1, H, K]);
  g.output('y', back(g, cfg, w, x, o), 'float', [1, cfg.hiddenSize]);
  return g.encodeModel('kda_decode');
}

/** e^{min(x, 0)}: Clip is a single unary pass, where Min against a scalar broadcasts slowly. */
function clampedExp(g: Graph, x: string): string {
  return g.op('Exp', [g.op('Clip', [x, '', g.f32([0], [])])]);
}

/** fp32 [n, n] matrix of 1 where keep(i, j), else 0. */
function mask(g: Graph, n: number, keep: (i: number, j: number) => boolean): string {
  const m = new Float32Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) m[i * n + j] = keep(i, j) ? 1 : 0;
  return g.f32(m, [n, n]);
}

/**
 * (I + A)⁻¹ for strictly lower-triangular A [N, H, C, C], by blocked forward substitution: the
 * SOLVE-row diagonal blocks are inverted row by row (all blocks at once), then block rows are
 * joined in order, Y_a,<a = −Y_aa · A_a,<a · Y_<a,<a. SOLVE + C/SOLVE steps instead of C.
 */
function unitLowerInverse(g: Graph, A: string, H: number, C: number): string {
  const Bs = C % SOLVE === 0 ? SOLVE : C;
  const nbs = C / Bs;
  const eyeNb = new Float32Array(nbs * nbs);
  for (let a = 0; a < nbs; a++) eyeNb[a * nbs + a] = 1;
  const Ad = g.op('ReduceSum', [g.op('Mul', [reshape(g, A, [-1, H, nbs, Bs, nbs, Bs]), g.f32(eyeNb, [nbs, 1, nbs, 1])]), g.i64([4])], { keepdims: 0 });
  const eye = mask(g, Bs, (i, j) => i === j);
  // Row 0 of a block is e_0 (Ad's row 0 is zero); subtracting that row gives it the batch shape.
  let Yd = g.op('Sub', [slice(g, eye, 0, 0, 1), slice(g, Ad, 3, 0, 1)]);
  for (let i = 1; i < Bs; i++) {
    const a = g.op('Slice', [Ad, g.i64([i, 0]), g.i64([i + 1, i]), g.i64([3, 4])]);
    Yd = g.op('Concat', [Yd, g.op('Sub', [slice(g, eye, 0, i, i + 1), g.op('MatMul', [a, Yd])])], { axis: 3 });
  }
  const diag = (a: number) => reshape(g, slice(g, Yd, 2, a, a + 1), [-1, H, Bs, Bs]);
  let Y = diag(0);
  for (let a = 1; a < nbs; a++) {
    const Aa = g.op('Slice', [A, g.i64([a * Bs, 0]), g.i64([(a + 1) * Bs, a * Bs]), g.i64([2, 3])]);
    const Yaa = diag(a);
    const row = g.op('Neg', [g.op('MatMul', [Yaa, g.op('MatMul', [Aa, Y])])]);
    const right = g.op('Pad', [Y, g.i64([0, 0, 0, 0, 0, 0, 0, Bs])]);
    Y = g.op('Concat', [right, g.op('Concat', [row, Yaa], { axis: 3 })], { axis: 2 });
  }
  return Y;
}

/**
 * The chunkwise-parallel form (spec §2.4) for chunk length C. The input is padded to whole chunks
 * with k = v = q = 0, g = 0, β = 0: such rows add nothing to any matrix or to the state.
 * Stability: every exponent taken for a kept pair is ≤ 0. Within a SUB-row block, e^{G_i − G_j}
 * is formed pairwise; across blocks it is split at the block's last row r,
 * e^{G_i − G_r} · e^{G_r − G_j}, as the reference and fla do. (I + Akk)⁻¹ Diag(β) is blocked
 * forward substitution, unrolled.
 */
export function kdaPrefillGraph(cfg: KimiConfig, w: KdaWeights, C: number): Uint8Array {
  const g = new Graph();
  const { numHeads: H, headDim: K } = cfg.kda;
  const V = K;
  const B = C % SUB === 0 ? SUB : C;
  const nb = C / B;
  const x = g.input('x', 'float', ['T', cfg.hiddenSize]);
  const S0 = g.input('S', 'float', [H, K, V]);
  const f = front(g, cfg, w, x);

  const T = g.op('Shape', [f.q], { start: 0, end: 1 });
  const N = g.op('Div', [g.op('Add', [T, g.i64([C - 1])]), g.i64([C])]);
  const pad = g.op('Sub', [g.op('Mul', [N, g.i64([C])]), T]);
  const pads3 = g.op('Concat', [g.i64([0, 0, 0]), pad, g.i64([0, 0])], { axis: 0 });
  const pads2 = g.op('Concat', [g.i64([0, 0]), pad, g.i64([0])], { axis: 0 });
  // [T, H, K] → [N, H, C, K]
  const chunked = (t: string) => transpose(g, reshape(g, g.op('Pad', [t, pads3]), [-1, C, H, K]), [0, 2, 1, 3]);
  const q = g.op('Mul', [chunked(f.q), g.f32([1 / Math.sqrt(K)], [])]);
  const k = chunked(f.k);
  const v = chunked(f.v);
  const beta = transpose(g, reshape(g, g.op('Pad', [f.beta, pads2]), [-1, C, H]), [0, 2, 1]);
  const G = g.op('CumSum', [chunked(f.gate), g.scalar(2)]);

  // Exponents of pairs that the masks below drop are clamped to 0 (finite, so their products are
  // too); exponents of kept pairs are ≤ 0 already and pass the clamp unchanged. The masks then act
  // on [C, C] matrices instead of on the much larger exponent tensors.
  const Gs = reshape(g, G, [-1, H, nb, B, K]);
  const ks = reshape(g, k, [-1, H, nb, B, K]);
  const qs = reshape(g, q, [-1, H, nb, B, K]);
  // Diagonal sub-blocks, pairwise: E[i, j] = e^{G_i − G_j} ⊙ k_j [N, H, nb, B(i), B(j), K]; one
  // batched product with [k_i, q_i] gives both Akk's and Aqk's entries.
  const E = g.op('Mul', [clampedExp(g, g.op('Sub', [unsqueeze(g, Gs, [4]), unsqueeze(g, Gs, [3])])), unsqueeze(g, ks, [3])]);
  const both = g.op('MatMul', [E, g.op('Concat', [unsqueeze(g, ks, [5]), unsqueeze(g, qs, [5])], { axis: 5 })]);
  const eyeNb = new Float32Array(nb * nb);
  for (let a = 0; a < nb; a++) eyeNb[a * nb + a] = 1;
  const blockDiag = (which: number) =>
    reshape(g, g.op('Mul', [unsqueeze(g, g.op('Squeeze', [slice(g, both, 5, which, which + 1), g.i64([5])]), [4]), g.f32(eyeNb, [nb, 1, nb, 1])]), [-1, H, C, C]);
  let Akk = blockDiag(0);
  let Aqk = blockDiag(1);

  if (nb > 1) {
    // Row i of block a against column j of an earlier block b, split at the last rows R of blocks
    // a − 1 and b: e^{G_i − G_j} = e^{G_i − R_{a−1}} · e^{R_{a−1} − R_b} · e^{R_b − G_j}, each ≤ 1.
    // The middle factor joins the column side, which both products then share.
    const R = slice(g, Gs, 3, B - 1, B);
    const Rprev = g.op('Concat', [slice(g, R, 2, 0, 1), slice(g, R, 2, 0, nb - 1)], { axis: 2 });
    const left = clampedExp(g, g.op('Sub', [Gs, Rprev]));
    const kR = g.op('Mul', [ks, g.op('Exp', [g.op('Sub', [R, Gs])])]);
    const mid = clampedExp(g, g.op('Sub', [Rprev, transpose(g, R, [0, 1, 3, 2, 4])]));
    const cols = reshape(g, g.op('Mul', [unsqueeze(g, mid, [4]), unsqueeze(g, kR, [2])]), [-1, H, nb, C, K]);
    const colsT = transpose(g, cols, [0, 1, 2, 4, 3]);
    const past = mask(g, C, (i, j) => Math.floor(i / B) > Math.floor(j / B));
    const across = (lhs: string) => g.op('Mul', [reshape(g, g.op('MatMul', [g.op('Mul', [lhs, left]), colsT]), [-1, H, C, C]), past]);
    Akk = g.op('Add', [Akk, across(ks)]);
    Aqk = g.op('Add', [Aqk, across(qs)]);
  }
  const betaCol = unsqueeze(g, beta, [3]);
  Akk = g.op('Mul', [g.op('Mul', [Akk, mask(g, C, (i, j) => j < i)]), betaCol]);
  Aqk = g.op('Mul', [Aqk, mask(g, C, (i, j) => j <= i)]);

  // X = (I + Akk)⁻¹ Diag(β): Diag(β) scales the columns of the unit-lower-triangular inverse.
  const X = g.op('Mul', [unitLowerInverse(g, Akk, H, C), unsqueeze(g, beta, [2])]);

  const eG = g.op('Exp', [G]);
  const Wm = g.op('MatMul', [X, g.op('Mul', [k, eG])]);
  const U = g.op('MatMul', [X, v]);
  const Qg = g.op('Mul', [q, eG]);
  const Glast = slice(g, G, 2, C - 1, C);
  const Kd = g.op('Mul', [k, g.op('Exp', [g.op('Sub', [Glast, G])])]);
  const decay = transpose(g, g.op('Exp', [Glast]), [0, 1, 3, 2]);

  // Across chunks: Vn = U − W S; O = Qg S + Aqk Vn; S ← Diag(e^{G_last}) S + Kdᵀ Vn.
  const body = g.subgraph();
  const s = body.input('body_S', 'float', [H, K, V]);
  const [bw, bu, bq, ba, bk, bd] = ['body_W', 'body_U', 'body_Qg', 'body_Aqk', 'body_Kd', 'body_decay'].map((n) => body.input(n, 'float'));
  const vn = body.op('Sub', [bu, body.op('MatMul', [bw, s])]);
  const o = body.op('Add', [body.op('MatMul', [bq, s]), body.op('MatMul', [ba, vn])]);
  const next = body.op('Add', [body.op('Mul', [bd, s]), body.op('MatMul', [transpose(body, bk, [0, 2, 1]), vn])]);
  body.output('body_S_out', next, 'float', [H, K, V]);
  body.output('body_O', o, 'float');
  const [Sn, O] = g.opN('Scan', [S0, Wm, U, Qg, Aqk, Kd, decay], 2, { body, num_scan_inputs: 6 });
  g.output('S_out', Sn, 'float', [H, K, V]);

  const oRows = reshape(g, transpose(g, O, [0, 2, 1, 3]), [-1, H, V]);
  const oT = g.op('Slice', [oRows, g.i64([0]), T, g.i64([0])]);
  g.output('y', back(g, cfg, w, x, oT), 'float', ['T', cfg.hiddenSize]);
  return g.encodeModel(`kda_prefill_c${C}`);
}
