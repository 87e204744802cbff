/**
 * ONNX graphs of the feed-forward blocks (spec §4) and of the small per-site pieces: the dense
 * SwiGLU MLP; the MoE block with router, top-k, renormalised unbiased weights, experts and the
 * shared expert; RMSNorm; the embedding lookup; lm_head.
 *
 * MoE dispatch happens inside the graph: the chosen (token, expert) slots are sorted by expert,
 * each expert's branch gathers its contiguous run of tokens (possibly none) and runs only on
 * them, and the weighted results are gathered back per token. One run per layer, no host trips.
 */
import type { KimiConfig } from '../../model/config';
import type { MoeWeights, SwigluWeights } from '../../reference/moe';
import { Graph } from './graph';
import { linear, reshape, rmsnorm, swiglu, unsqueeze } from './ops';

function swigluOf(g: Graph, x: string, w: SwigluWeights, d: number): string {
  return swiglu(g, x, w.gate, w.up, w.down, w.inner, d);
}

export function mlpGraph(cfg: KimiConfig, w: SwigluWeights): Uint8Array {
  const g = new Graph();
  const d = cfg.hiddenSize;
  g.output('y', swigluOf(g, g.input('x', 'float', ['T', d]), w, d), 'float', ['T', d]);
  return g.encodeModel('mlp');
}

/**
 * Fetches besides y: logits [T, E], idx [T, k] (int64, ascending per token) and weight [T, k]
 * (renormalised, × routed_scaling_factor, in idx order), as the reference reports them.
 * Group-limited routing is not expressed here; the backend refuses configs that need it.
 */
export function moeGraph(cfg: KimiConfig, w: MoeWeights): Uint8Array {
  const g = new Graph();
  const d = cfg.hiddenSize;
  const { numExperts: E, topK: k } = cfg.moe;
  const x = g.input('x', 'float', ['T', d]);
  const logits = linear(g, x, w.router, E, d, 'router');
  const s = g.op('Sigmoid', [logits]);
  const [, top] = g.opN('TopK', [g.op('Add', [s, g.weight(w.bias, [E], 'bias')]), g.i64([k])], 2, { axis: -1, largest: 1, sorted: 1 });
  const [asc] = g.opN('TopK', [g.op('Cast', [top], { to: 1 }), g.i64([k])], 2, { axis: -1, largest: 0, sorted: 1 });
  const idx = g.op('Cast', [asc], { to: 7 });
  const chosen = g.op('GatherElements', [s, idx], { axis: 1 });
  const norm = cfg.moe.renormalize ? g.op('Add', [g.op('ReduceSum', [chosen, g.i64([-1])], { keepdims: 1 }), g.f32([1e-20], [])]) : g.f32([1], []);
  const weight = g.op('Mul', [g.op('Div', [chosen, norm]), g.f32([cfg.moe.routedScalingFactor], [])]);
  g.output('logits', logits, 'float', ['T', E]);
  g.output('idx', idx, 'int64', ['T', k]);
  g.output('weight', weight, 'float', ['T', k]);

  const flat = reshape(g, idx, [-1]);
  const slots = g.op('Shape', [flat]);
  const [, perm] = g.opN('TopK', [g.op('Cast', [flat], { to: 1 }), slots], 2, { axis: 0, largest: 0, sorted: 1 });
  const token = g.op('Div', [perm, g.scalar(k)]);
  const experts = g.i64(Array.from({ length: E }, (_, e) => e), [1, E]);
  const counts = g.op('ReduceSum', [g.op('Cast', [g.op('Equal', [unsqueeze(g, flat, [1]), experts])], { to: 7 }), g.i64([0])], { keepdims: 0 });
  const ends = g.op('CumSum', [counts, g.scalar(0)]);
  const starts = g.op('Sub', [ends, counts]);
  const outs: string[] = [];
  for (let e = 0; e < E; e++) {
    const at = (t: string) => g.op('Slice', [t, g.i64([e]), g.i64([e + 1])]);
    const rows = g.op('Slice', [token, at(starts), at(ends), g.i64([0])]);
    outs.push(swigluOf(g, g.op('Gather', [x, rows], { axis: 0 }), w.experts[e], d));
  }
  const bySlot = g.op('Mul', [g.op('Concat', outs, { axis: 0 }), unsqueeze(g, g.op('Gather', [reshape(g, weight, [-1]), perm], { axis: 0 }), [1])]);
  // pos[slot] = where that slot landed in the expert-sorted order.
  const zeros = g.op('Mul', [perm, g.scalar(0)]);
  const order = g.op('Range', [g.scalar(0), g.op('Squeeze', [slots, g.i64([0])]), g.scalar(1)]);
  const pos = g.op('ScatterElements', [zeros, perm, order], { axis: 0 });
  const routed = g.op('ReduceSum', [reshape(g, g.op('Gather', [bySlot, pos], { axis: 0 }), [-1, k, d]), g.i64([1])], { keepdims: 0 });
  g.output('y', w.shared ? g.op('Add', [swigluOf(g, x, w.shared, d), routed]) : routed, 'float', ['T', d]);
  return g.encodeModel('moe');
}

export function rmsnormGraph(d: number, w: Float32Array, eps: number): Uint8Array {
  const g = new Graph();
  g.output('y', rmsnorm(g, g.input('x', 'float', ['T', d]), w, eps), 'float', ['T', d]);
  return g.encodeModel('rmsnorm');
}

export function embedGraph(table: Float32Array, vocab: number, d: number): Uint8Array {
  const g = new Graph();
  g.output('y', g.op('Gather', [g.weight(table, [vocab, d], 'embed'), g.input('ids', 'int64', ['T'])], { axis: 0 }), 'float', ['T', d]);
  return g.encodeModel('embed');
}

export function lmHeadGraph(W: Float32Array, vocab: number, d: number): Uint8Array {
  const g = new Graph();
  g.output('y', linear(g, g.input('x', 'float', ['T', d]), W, vocab, d, 'lm_head'), 'float', ['T', vocab]);
  return g.encodeModel('lm_head');
}
