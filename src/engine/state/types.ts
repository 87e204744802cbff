/**
 * The backend-neutral state of one sequence after some tokens: exactly what the model needs to
 * continue it. The reference backend computes on these arrays directly; device backends keep their
 * own copy and convert with import/export. Layouts are fixed here because they are persisted.
 */
import type { LatentCache } from './latent-cache';

export interface KdaLayerState {
  readonly kind: 'kda';
  /**
   * Short-conv tails: the last (convKernel − 1) pre-conv inputs of the q, k and v projections.
   * Layout [3 · P, convKernel − 1] with P = heads · headDim; rows q channels, then k, then v;
   * within a row the oldest input first. Zeros before the start of the sequence.
   */
  conv: Float32Array;
  /** Recurrent state S, layout [H, K, V] (K-major, as fla 0.4 / HF / vLLM), fp32. */
  S: Float32Array;
}

export interface MlaLayerState {
  readonly kind: 'mla';
  /** Per token: kv_a_layernorm(c) (kvLoraRank values) followed by k_pe (qkRopeHeadDim values). */
  cache: LatentCache;
}

export type LayerState = KdaLayerState | MlaLayerState;

export interface SequenceState {
  /** Tokens consumed so far. */
  length: number;
  /** One entry per decoder layer, in layer order. */
  layers: LayerState[];
}
