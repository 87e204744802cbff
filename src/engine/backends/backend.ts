/**
 * What the model code needs from a compute backend, at layer granularity. The model
 * (src/engine/model/model.ts) owns the order of operations, the residual stream and the state
 * bookkeeping; a backend owns the weights and runs each layer. Activations are an opaque type `A`
 * so that a device backend can keep them on its device between layers; only logits and captured
 * tensors come back to the host.
 *
 * Sequence state: the model always passes the neutral per-layer states of
 * src/engine/state/types.ts. The reference backend computes on those arrays directly. A device
 * backend may keep its own copy keyed by the state object: `importState` (after a state was
 * restored or forked on the host) loads the neutral arrays into it, `exportState` (before a
 * state is persisted or forked) writes it back into the neutral arrays.
 */
import type { KimiConfig } from '../model/config';
import type { TokenPick } from '../sampler';
import type { KdaLayerState, MlaLayerState, SequenceState } from '../state/types';
import type { LatentRows } from '../state/latent-rows';

/**
 * Compute calls may finish synchronously (reference, native CUDA through N-API) or return a
 * promise (onnxruntime-node's run is asynchronous); the model awaits either.
 */
export type MaybePromise<T> = T | Promise<T>;

/** Receives named intermediate tensors (host copies) for tests and debugging. */
export type Capture = (name: string, tensor: Float32Array) => void;

export type NormSite = { which: 'input' | 'post_attention'; layer: number } | { which: 'final' };

export interface Backend<A = unknown> {
  /** e.g. 'reference' */
  readonly name: string;
  /** Where it computes, in words (shown to the user). */
  readonly device: string;
  readonly config: KimiConfig;
  /**
   * Tokens per prefill call while ingesting: enough to keep this backend's matrix units busy, few
   * enough that progress and cancellation come often. Default 512 (the CPU backends).
   */
  readonly prefillTokens?: number;

  /** Embedding rows of `ids`: [T, d]. */
  embed(ids: Int32Array):MaybePromise<A>;
  /** Number of tokens (rows) in an activation. */
  rows(x: A): number;
  /** A host copy of an activation, row-major [T, d]. */
  toHost(x: A): Float32Array;
  /** The residual add h ← h + x. */
  addInPlace(h: A, x: A): MaybePromise<void>;
  rmsnorm(site: NormSite, x: A):MaybePromise<A>;
  /**
   * Optional: the residual add h ← h + x and the norm at `site` of the new h in one step (a device
   * backend saves a launch and a pass); the model falls back to addInPlace then rmsnorm.
   */
  addRmsnorm?(h: A, x: A, site: NormSite): MaybePromise<A>;

  /** KDA block over x (already input-normalised): chunkwise-parallel form with chunk `chunk`. Advances `state`. */
  kdaPrefill(layer: number, x: A, state: KdaLayerState, chunk: number):MaybePromise<A>;
  /**
   * KDA block for one token of each of several sequences: the recurrent form. Row i of x is the
   * next token of the sequence whose state is states[i]; advances every state by one token.
   */
  kdaDecode(layer: number, x: A, states: readonly KdaLayerState[]): MaybePromise<A>;
  /** MLA block over x, attending to the cached latents and x itself; appends x's latents. */
  mlaPrefill(layer: number, x: A, state: MlaLayerState):MaybePromise<A>;
  /**
   * MLA block for one token of each of several sequences with the absorbed weights: row i of x
   * attends over states[i]'s latent cache (each of its own length) and appends its latent there.
   */
  mlaDecode(layer: number, x: A, states: readonly MlaLayerState[]): MaybePromise<A>;

  /** MoE block. Reports `router_logits.<layer>`, `router_idx.<layer>`, `router_w.<layer>` to `capture`. */
  moe(layer: number, x: A, capture?: Capture):MaybePromise<A>;
  /**
   * Optional: addRmsnorm(h, x, post_attention of `layer`) and then moe(layer, normed rows), where a device backend
   * joins the norm to the router's launch; the model falls back to the two calls.
   */
  addNormMoe?(layer: number, h: A, x: A, capture?: Capture): MaybePromise<A>;
  /** Dense SwiGLU MLP block. */
  mlp(layer: number, x: A):MaybePromise<A>;

  /**
   * Optional: one decode step of `states` (ids[i] the next token of states[i]), where `layers` is the
   * model's pass over this backend's calls and returns the final-normed rows. A device backend may
   * record the work the pass queues and replay it for later steps of the same batch instead of
   * calling `layers` again (CUDA graphs); it then advances its own copies of the states as the pass
   * would have. The model advances the states' lengths either way.
   */
  decodeLayers?(states: readonly SequenceState[], ids: Int32Array, layers: () => Promise<A>): Promise<A>;
  /**
   * Optional: turns the recording and replay of decodeLayers on or off (timed profiles need every
   * call made); returns whether it was on.
   */
  setDecodeGraphs?(on: boolean): boolean;

  /** Logits of every row [T, vocab], or of the last row only [vocab]. */
  lmHead(x: A, rows: 'all' | 'last'): MaybePromise<Float32Array>;
  /**
   * Optional: lm_head over each row of x (already final-normed) and one token per row, on the
   * device, without sending logits back; row i is picked exactly as pickToken(logits_i, picks[i])
   * would (see sampler.ts). Backends without it have their logits picked on the host.
   */
  sampleRows?(x: A, picks: readonly TokenPick[]): MaybePromise<Int32Array>;

  importState(state: SequenceState): void;
  /** 'recurrent': only the KDA parts (their MLA rows are read with latentRows where the backend has it). */
  exportState(state: SequenceState, parts?: 'all' | 'recurrent'): void;
  /**
   * Optional, for backends with their own copy of states: makes `dst` (fresh neutral arrays of
   * the same shapes, never imported) a continuation of `src` where the copies live, sharing src's
   * MLA rows instead of copying them. Without it the model forks through the neutral arrays.
   * dst.length ≤ src.length: the MLA caches get src's first dst.length rows. 'latent': only the
   * MLA caches (dst's KDA parts come from elsewhere, e.g. a checkpoint, and are imported after).
   */
  forkState?(src: SequenceState, dst: SequenceState, parts?: 'all' | 'latent'): void;
  /** Optional: frees the backend's copy of a state now rather than when it is garbage-collected. */
  releaseState?(state: SequenceState): void;
  /**
   * Optional pair for states held on a device: rows [from, from + count) of an MLA layer's cache,
   * and restored rows appended to it directly. They let a state be saved and restored in bounded
   * blocks instead of through a host copy of the whole cache.
   */
  latentRows?(ls: MlaLayerState, from: number, count: number): Float32Array;
  /** Restored rows: bf16 bits (as a bf16 state file holds them) or fp32 values. */
  appendLatentRows?(ls: MlaLayerState, rows: LatentRows, count: number): void;
  /** Optional: rows of a layer kept in bf16 as their bits (no widening), undefined where they are fp32. */
  latentBits?(ls: MlaLayerState, from: number, count: number): Uint16Array | undefined;
  /** Optional: the type a layer's rows are kept in where it is not fp32 (they are then saved so). */
  latentDtype?(ls: MlaLayerState): 'f32' | 'bf16';

  /** Frees weights and device memory. */
  dispose(): Promise<void>;
}
