/**
 * Kimi Delta Attention (spec §2). The operator comes in two forms that must agree: the
 * token-by-token recurrence (spec §2.1 step 8), used for decode, and the chunkwise-parallel form
 * (spec §2.4, chunk 64), used for prefill. Both update the state S [H, K, V] in place.
 */
import type { KimiConfig } from '../model/config';
import type { KdaLayerState } from '../state/types';
import { linear, sigmoid, silu, softplus, type FloatArray } from './linalg';
import { gatedRmsnormHeads, l2normInPlace } from './norms';

/**
 * Inputs of the KDA operator for T tokens of one sequence. q and k are already L2-normalised
 * per head, g is the log-decay (≤ 0), beta in (0, 1). Layouts: q, k, g [T, H, K]; v [T, H, V];
 * beta [T, H]. The operator multiplies q by `scale` itself.
 */
export interface KdaInputs {
  q: FloatArray;
  k: FloatArray;
  v: FloatArray;
  g: FloatArray;
  beta: FloatArray;
  T: number;
  H: number;
  K: number;
  V: number;
  scale: number;
}

/**
 * The recurrence, per token and head: S ← Diag(e^g) S; u = v − Sᵀk; S ← S + β k uᵀ;
 * o = Sᵀ(scale · q), with the updated S. Returns o [T, H, V].
 */
export function kdaRecurrent(inputs: KdaInputs, S: Float64Array): Float64Array {
  const x = asF64(inputs);
  const { T, H, K, V, scale } = x;
  const o = new Float64Array(T * H * V);
  const u = new Float64Array(V);
  for (let t = 0; t < T; t++) {
    for (let h = 0; h < H; h++) {
      const s0 = h * K * V;
      const qk = (t * H + h) * K;
      const vo = (t * H + h) * V;
      u.fill(0);
      for (let c = 0; c < K; c++) {
        const a = Math.exp(x.g[qk + c]);
        const kc = x.k[qk + c];
        const row = s0 + c * V;
        for (let j = 0; j < V; j++) {
          const sv = S[row + j] * a;
          S[row + j] = sv;
          u[j] += sv * kc;
        }
      }
      for (let j = 0; j < V; j++) u[j] = x.v[vo + j] - u[j];
      const beta = x.beta[t * H + h];
      for (let c = 0; c < K; c++) {
        const bk = beta * x.k[qk + c];
        const qc = scale * x.q[qk + c];
        const row = s0 + c * V;
        for (let j = 0; j < V; j++) {
          const sv = S[row + j] + bk * u[j];
          S[row + j] = sv;
          o[vo + j] += sv * qc;
        }
      }
    }
  }
  return o;
}

/** Sub-block of the intra-chunk matrices whose last token serves as the exponent reference. */
const SUB = 16;

/**
 * The chunkwise-parallel form (spec §2.4). Within a chunk of n tokens, with G the inclusive
 * cumulative sum of g: Akk, Aqk from e^{G_i − G_j} (j ≤ i only); X = (I + Akk)⁻¹ Diag(β) by
 * forward substitution; W = X (e^G ⊙ K), U = X V; Vn = U − W S;
 * O = (scale·Q ⊙ e^G) S + Aqk Vn; S ← Diag(e^{G_n}) S + (K ⊙ e^{G_n − G})ᵀ Vn.
 * Every exponent taken is ≤ 0: for j in a 16-token sub-block ending at r and i past it,
 * e^{G_i − G_j} = e^{G_i − G_r} · e^{G_r − G_j}, both factors ≤ 1 (as fla does with its b_gn), so
 * gates of any strength only underflow towards 0 and never overflow.
 */
export function kdaChunked(inputs: KdaInputs, S: Float64Array, chunk = 64): Float64Array {
  const x = asF64(inputs);
  const { T, H, K, V, scale } = x;
  if (!Number.isInteger(chunk) || chunk < 1) throw new Error(`kdaChunked: chunk must be a positive integer, got ${chunk}`);
  const o = new Float64Array(T * H * V);
  const C = Math.min(chunk, T);
  const Kc = new Float64Array(C * K);
  const Qc = new Float64Array(C * K);
  const Vc = new Float64Array(C * V);
  const G = new Float64Array(C * K);
  const kG = new Float64Array(C * K);
  const bet = new Float64Array(C);
  const Akk = new Float64Array(C * C);
  const Aqk = new Float64Array(C * C);
  const X = new Float64Array(C * C);
  const W = new Float64Array(C * K);
  const Vn = new Float64Array(C * V);
  const kR = new Float64Array(SUB * K);
  const kiR = new Float64Array(K);
  const qiR = new Float64Array(K);
  for (let t0 = 0; t0 < T; t0 += chunk) {
    const n = Math.min(chunk, T - t0);
    for (let h = 0; h < H; h++) {
      const s0 = h * K * V;
      for (let i = 0; i < n; i++) {
        const src = ((t0 + i) * H + h) * K;
        for (let c = 0; c < K; c++) {
          Kc[i * K + c] = x.k[src + c];
          Qc[i * K + c] = scale * x.q[src + c];
          G[i * K + c] = (i > 0 ? G[(i - 1) * K + c] : 0) + x.g[src + c];
          kG[i * K + c] = Math.exp(G[i * K + c]) * Kc[i * K + c];
        }
        const vs = ((t0 + i) * H + h) * V;
        for (let e = 0; e < V; e++) Vc[i * V + e] = x.v[vs + e];
        bet[i] = x.beta[(t0 + i) * H + h];
      }

      for (let b0 = 0; b0 < n; b0 += SUB) {
        const b1 = Math.min(n, b0 + SUB);
        const r = b1 - 1;
        for (let i = b0; i < b1; i++) {
          for (let j = b0; j <= i; j++) {
            let skk = 0;
            let sqk = 0;
            for (let c = 0; c < K; c++) {
              const e = Math.exp(G[i * K + c] - G[j * K + c]) * Kc[j * K + c];
              skk += Kc[i * K + c] * e;
              sqk += Qc[i * K + c] * e;
            }
            Akk[i * C + j] = j < i ? bet[i] * skk : 0;
            Aqk[i * C + j] = sqk;
          }
        }
        if (b1 === n) continue;
        for (let j = b0; j < b1; j++) {
          for (let c = 0; c < K; c++) kR[(j - b0) * K + c] = Kc[j * K + c] * Math.exp(G[r * K + c] - G[j * K + c]);
        }
        for (let i = b1; i < n; i++) {
          for (let c = 0; c < K; c++) {
            const e = Math.exp(G[i * K + c] - G[r * K + c]);
            kiR[c] = Kc[i * K + c] * e;
            qiR[c] = Qc[i * K + c] * e;
          }
          for (let j = b0; j < b1; j++) {
            const jo = (j - b0) * K;
            let skk = 0;
            let sqk = 0;
            for (let c = 0; c < K; c++) {
              skk += kiR[c] * kR[jo + c];
              sqk += qiR[c] * kR[jo + c];
            }
            Akk[i * C + j] = bet[i] * skk;
            Aqk[i * C + j] = sqk;
          }
        }
      }

      for (let i = 0; i < n; i++) {
        for (let j = 0; j <= i; j++) {
          let s = i === j ? bet[i] : 0;
          for (let m = j; m < i; m++) s -= Akk[i * C + m] * X[m * C + j];
          X[i * C + j] = s;
        }
      }

      for (let i = 0; i < n; i++) {
        W.fill(0, i * K, (i + 1) * K);
        Vn.fill(0, i * V, (i + 1) * V);
        for (let j = 0; j <= i; j++) {
          const xij = X[i * C + j];
          for (let c = 0; c < K; c++) W[i * K + c] += xij * kG[j * K + c];
          for (let e = 0; e < V; e++) Vn[i * V + e] += xij * Vc[j * V + e];
        }
        for (let c = 0; c < K; c++) {
          const wc = W[i * K + c];
          const row = s0 + c * V;
          for (let e = 0; e < V; e++) Vn[i * V + e] -= wc * S[row + e];
        }
      }

      for (let i = 0; i < n; i++) {
        const oi = ((t0 + i) * H + h) * V;
        for (let c = 0; c < K; c++) {
          const qc = Qc[i * K + c] * Math.exp(G[i * K + c]);
          const row = s0 + c * V;
          for (let e = 0; e < V; e++) o[oi + e] += qc * S[row + e];
        }
        for (let j = 0; j <= i; j++) {
          const a = Aqk[i * C + j];
          for (let e = 0; e < V; e++) o[oi + e] += a * Vn[j * V + e];
        }
      }

      const last = (n - 1) * K;
      for (let c = 0; c < K; c++) {
        const row = s0 + c * V;
        const decay = Math.exp(G[last + c]);
        for (let e = 0; e < V; e++) S[row + e] *= decay;
        for (let i = 0; i < n; i++) {
          const kc = Kc[i * K + c] * Math.exp(G[last + c] - G[i * K + c]);
          for (let e = 0; e < V; e++) S[row + e] += kc * Vn[i * V + e];
        }
      }
    }
  }
  return o;
}

interface KdaInputs64 extends KdaInputs {
  q: Float64Array;
  k: Float64Array;
  v: Float64Array;
  g: Float64Array;
  beta: Float64Array;
}

/** One element type in the hot loops keeps them monomorphic for the JIT. */
function asF64(x: KdaInputs): KdaInputs64 {
  const f = (a: FloatArray) => (a instanceof Float64Array ? a : Float64Array.from(a));
  return { ...x, q: f(x.q), k: f(x.k), v: f(x.v), g: f(x.g), beta: f(x.beta) };
}

/** g[t, h, c] = −exp(A_log[h]) · softplus(f[t, h·K + c] + dt_bias[h·K + c]) (fla fused_kda_gate). */
export function kdaGate(f: FloatArray, aLog: Float32Array, dtBias: Float32Array, T: number, H: number, K: number): Float64Array {
  const g = new Float64Array(T * H * K);
  for (let t = 0; t < T; t++) {
    for (let h = 0; h < H; h++) {
      const a = -Math.exp(aLog[h]);
      for (let c = 0; c < K; c++) {
        const i = h * K + c;
        g[t * H * K + i] = a * softplus(f[t * H * K + i] + dtBias[i]);
      }
    }
  }
  return g;
}

/**
 * Depthwise causal conv of one stream (q, k or v) followed by SiLU. `x` [T, P] are the projected
 * inputs; `weight` [P, W] has its last tap on the current token; `tail` [P, W−1] (oldest first)
 * holds the inputs before x and is advanced to end with x's last inputs.
 */
export function shortConvSilu(x: Float32Array, T: number, P: number, weight: Float32Array, W: number, tail: Float32Array): Float32Array {
  const y = new Float32Array(T * P);
  const keep = W - 1;
  const ext = new Float64Array(keep + T);
  for (let c = 0; c < P; c++) {
    for (let j = 0; j < keep; j++) ext[j] = tail[c * keep + j];
    for (let t = 0; t < T; t++) ext[keep + t] = x[t * P + c];
    for (let t = 0; t < T; t++) {
      let s = 0;
      for (let j = 0; j < W; j++) s += weight[c * W + j] * ext[t + j];
      y[t * P + c] = silu(Math.fround(s));
    }
    for (let j = 0; j < keep; j++) tail[c * keep + j] = ext[T + j];
  }
  return y;
}

export interface KdaWeights {
  qProj: Float32Array;
  kProj: Float32Array;
  vProj: Float32Array;
  /** Conv weights flattened to [P, W]. */
  qConv: Float32Array;
  kConv: Float32Array;
  vConv: Float32Array;
  /** [H] */
  aLog: Float32Array;
  dtBias: Float32Array;
  fA: Float32Array;
  fB: Float32Array;
  bProj: Float32Array;
  gA: Float32Array;
  gB: Float32Array;
  oNorm: Float32Array;
  oProj: Float32Array;
}

export type KdaMode = { kind: 'chunked'; chunk: number } | { kind: 'recurrent' };

/**
 * One KDA attention block on the normalised input x [T, d]; returns its output [T, d] (before the
 * residual add) and advances `state` (conv tails and S) past these T tokens.
 */
export function kdaLayer(cfg: KimiConfig, w: KdaWeights, x: Float32Array, T: number, state: KdaLayerState, mode: KdaMode): Float32Array {
  const d = cfg.hiddenSize;
  const { numHeads: H, headDim: K, convKernel: Wc } = cfg.kda;
  const P = H * K;
  const keep = Wc - 1;
  const streams = [w.qProj, w.kProj, w.vProj].map((proj, s) => {
    const pre = linear(x, T, proj, P, d);
    const tail = state.conv.subarray(s * P * keep, (s + 1) * P * keep);
    return shortConvSilu(pre, T, P, [w.qConv, w.kConv, w.vConv][s], Wc, tail);
  });
  const [q, k, v] = streams;
  l2normInPlace(q, T * H, K);
  l2normInPlace(k, T * H, K);

  const bLogits = linear(x, T, w.bProj, H, d);
  const beta = new Float64Array(T * H);
  for (let i = 0; i < beta.length; i++) beta[i] = sigmoid(bLogits[i]);
  const f = linear(linear(x, T, w.fA, K, d), T, w.fB, P, K);
  const g = kdaGate(f, w.aLog, w.dtBias, T, H, K);

  const S = Float64Array.from(state.S);
  const inputs: KdaInputs = { q, k, v, g, beta, T, H, K, V: K, scale: 1 / Math.sqrt(K) };
  const o = mode.kind === 'recurrent' ? kdaRecurrent(inputs, S) : kdaChunked(inputs, S, mode.chunk);
  state.S.set(S);

  const gate = linear(linear(x, T, w.gA, K, d), T, w.gB, P, K);
  const normed = gatedRmsnormHeads(Float32Array.from(o), gate, T * H, K, w.oNorm, cfg.rmsNormEps);
  return linear(normed, T, w.oProj, d, P);
}
