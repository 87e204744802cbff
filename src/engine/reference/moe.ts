/**
 * Feed-forward blocks (spec §4): the dense SwiGLU MLP and the MoE block with its sigmoid router,
 * computed as transformers 5.17 does: experts chosen on sigmoid(logits) + correction bias,
 * weighted by the UNBIASED sigmoid of the chosen experts, renormalised (+1e-20), times
 * routed_scaling_factor; plus the always-on shared expert.
 */
import type { MoeConfig } from '../model/config';
import { linear, sigmoid, silu } from './linalg';

export interface SwigluWeights {
  /** [I, d] */
  gate: Float32Array;
  /** [I, d] */
  up: Float32Array;
  /** [d, I] */
  down: Float32Array;
  inner: number;
}

/** down(SiLU(gate x) ⊙ up x) for x [T, d]. */
export function swiglu(w: SwigluWeights, x: Float32Array, T: number, d: number): Float32Array {
  const g = linear(x, T, w.gate, w.inner, d);
  const u = linear(x, T, w.up, w.inner, d);
  for (let i = 0; i < g.length; i++) g[i] = silu(g[i]) * u[i];
  return linear(g, T, w.down, d, w.inner);
}

export interface MoeWeights {
  /** Router [E, d]. */
  router: Float32Array;
  /** [E], used only to choose experts. */
  bias: Float32Array;
  experts: SwigluWeights[];
  shared: SwigluWeights | null;
}

export interface Routing {
  /** [T, E] router logits before the sigmoid. */
  logits: Float32Array;
  /** [T, k] chosen experts, ascending per token. */
  idx: Int32Array;
  /** [T, k] their weights (renormalised, × routed_scaling_factor), in idx order. */
  weight: Float32Array;
}

/** The router for x [T, d]. */
export function route(cfg: MoeConfig, w: MoeWeights, x: Float32Array, T: number, d: number): Routing {
  const E = cfg.numExperts;
  const k = cfg.topK;
  const logits = linear(x, T, w.router, E, d);
  const idx = new Int32Array(T * k);
  const weight = new Float32Array(T * k);
  const scores = new Float32Array(E);
  const biased = new Float64Array(E);
  const order = Array.from({ length: E }, (_, e) => e);
  const groupSize = E / cfg.numExpertGroup;
  for (let t = 0; t < T; t++) {
    for (let e = 0; e < E; e++) {
      scores[e] = sigmoid(logits[t * E + e]);
      biased[e] = scores[e] + w.bias[e];
    }
    if (cfg.numExpertGroup > 1) maskGroups(biased, cfg.numExpertGroup, groupSize, cfg.topkGroup);
    // Ties go to the lower index; torch.topk does not promise an order either.
    order.sort((a, b) => biased[b] - biased[a] || a - b);
    const chosen = order.slice(0, k).sort((a, b) => a - b);
    let sum = 0;
    for (const e of chosen) sum += scores[e];
    const norm = cfg.renormalize ? sum + 1e-20 : 1;
    chosen.forEach((e, j) => {
      idx[t * k + j] = e;
      weight[t * k + j] = (scores[e] / norm) * cfg.routedScalingFactor;
    });
  }
  return { logits, idx, weight };
}

/** Group-limited routing: a group scores the sum of its best two; groups outside the best `keep` are excluded. */
function maskGroups(biased: Float64Array, groups: number, size: number, keep: number): void {
  const groupScore = Array.from({ length: groups }, (_, gi) => {
    const members = Array.from(biased.subarray(gi * size, (gi + 1) * size)).sort((a, b) => b - a);
    return members[0] + (members[1] ?? 0);
  });
  const kept = new Set(
    groupScore
      .map((s, gi) => [s, gi] as const)
      .sort((a, b) => b[0] - a[0] || a[1] - b[1])
      .slice(0, keep)
      .map(([, gi]) => gi),
  );
  for (let gi = 0; gi < groups; gi++) if (!kept.has(gi)) biased.fill(-Infinity, gi * size, (gi + 1) * size);
}

/** The MoE block on x [T, d]; each expert runs once on the rows routed to it. */
export function moe(cfg: MoeConfig, w: MoeWeights, x: Float32Array, T: number, d: number, routing = route(cfg, w, x, T, d)): Float32Array {
  const k = cfg.topK;
  const out = w.shared ? swiglu(w.shared, x, T, d) : new Float32Array(T * d);
  const routed = new Float64Array(T * d);
  for (let e = 0; e < cfg.numExperts; e++) {
    const rows: number[] = [];
    const weights: number[] = [];
    for (let i = 0; i < T * k; i++) {
      if (routing.idx[i] === e) {
        rows.push(Math.floor(i / k));
        weights.push(routing.weight[i]);
      }
    }
    if (rows.length === 0) continue;
    const xe = new Float32Array(rows.length * d);
    rows.forEach((t, j) => xe.set(x.subarray(t * d, (t + 1) * d), j * d));
    const ye = swiglu(w.experts[e], xe, rows.length, d);
    rows.forEach((t, j) => {
      for (let c = 0; c < d; c++) routed[t * d + c] += weights[j] * ye[j * d + c];
    });
  }
  for (let i = 0; i < out.length; i++) out[i] += routed[i];
  return out;
}
