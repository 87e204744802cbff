/**
 * What a step of the model must at least move or compute, from the config alone: the floors the
 * speed figures are measured against (bytes ÷ copy bandwidth for decode, FLOPs ÷ GEMM rate for
 * prefill). Weights are counted as the CUDA backend keeps them: matrices bf16 or under the load's
 * quantization scheme (weights.ts), lm_head bf16, the router fp32.
 */
import type { KimiConfig } from '../model/config';
import { attentionMatrices, elements, swigluMatrices, type Shape } from './inventory';
import { mlaCacheElementBytes } from './memory-plan';
import type { Quantization } from '../../common/quantization';
import { storedBytes } from './weights';

const BF16 = 2;
const F32 = 4;

/** Matrices every token uses (attention, dense MLP, shared experts), one routed expert's, and the routers' fp32 values. */
function activeWeights(c: KimiConfig): { matrices: Shape[]; f32: number; expert: Shape[]; moeLayers: number } {
  const e = c.moe;
  const matrices: Shape[] = [];
  let f32 = 0;
  let moeLayers = 0;
  for (const l of c.layers) {
    matrices.push(...attentionMatrices(c, l.attention));
    if (l.ffn === 'dense') matrices.push(...swigluMatrices(c, c.intermediateSize));
    else {
      moeLayers++;
      matrices.push(...swigluMatrices(c, e.intermediateSize * e.numSharedExperts));
      f32 += e.numExperts * c.hiddenSize;
    }
  }
  return { matrices, f32, expert: swigluMatrices(c, e.intermediateSize), moeLayers };
}

/** Distinct experts a layer reads for `answers` tokens routed independently (expected value). */
export function expectedExperts(c: KimiConfig, answers: number): number {
  const { numExperts: E, topK: k } = c.moe;
  return E * (1 - (1 - k / E) ** answers);
}

export interface DecodeStepOptions {
  /** bf16 MLA rows (tensor-core mode); fp32 in exact mode. Default true. */
  tensorCores?: boolean;
  /** How the weights are stored. Default none (bf16). */
  quantization?: Quantization;
  /**
   * Tokens at the start of every answer's context that the answers share, read once per step:
   * forks of one repository state (Annotate File, several questions) attend to the same rows.
   */
  shared?: number;
}

/**
 * Bytes one decode step of `answers` sequences, each `context` tokens long, must read: the weights
 * it uses once (lm_head included) as stored, each sequence's KDA state read and written, and its
 * MLA rows, those of a shared prefix once for all.
 */
export function decodeStepBytes(c: KimiConfig, context: number, answers = 1, opts: DecodeStepOptions = {}): number {
  const quantization = opts.quantization ?? 'none';
  const shared = Math.min(opts.shared ?? 0, context);
  const w = activeWeights(c);
  const routed = w.moeLayers * expectedExperts(c, answers) * storedBytes(w.expert, quantization);
  const weights = storedBytes(w.matrices, quantization) + routed + c.vocabSize * c.hiddenSize * BF16 + w.f32 * F32;
  const { numHeads: H, headDim: K } = c.kda;
  const row = (c.mla.kvLoraRank + c.mla.qkRopeHeadDim) * mlaCacheElementBytes(opts.tensorCores ?? true);
  let state = 0;
  for (const l of c.layers) {
    state += l.attention === 'kda' ? answers * 2 * H * K * K * F32 : (shared + answers * (context - shared)) * row;
  }
  return weights + state;
}

/**
 * FLOPs of prefilling tokens [from, to) of one sequence: two per active weight per token (lm_head
 * not included: ingest wants no logits), causal MLA attention in the up-projected form (scores and
 * values over every earlier key), and the KDA chunk form's state products (chunk 64).
 */
export function prefillFlops(c: KimiConfig, from: number, to: number): number {
  const w = activeWeights(c);
  const T = to - from;
  const perToken = 2 * (elements(w.matrices) + w.f32 + w.moeLayers * c.moe.topK * elements(w.expert));
  const m = c.mla;
  const { numHeads: H, headDim: K } = c.kda;
  const C = 64;
  // Keys attended, summed over the new tokens: (from + 1) + … + to.
  const keys = (T * (from + 1 + to)) / 2;
  let attention = 0;
  for (const l of c.layers) {
    attention += l.attention === 'kda'
      ? T * H * (4 * K * K + 4 * C * K)
      : 2 * m.numHeads * (m.qkNopeHeadDim + m.qkRopeHeadDim + m.vHeadDim) * keys;
  }
  return perToken * T + attention;
}
