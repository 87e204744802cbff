/**
 * GPU memory the CUDA backend needs before it loads anything: the weights as uploaded (matrices
 * bf16, norms/gates/conv fp32), one sequence's state for the planned context, and the per-layer
 * workspace of the largest slice. Pure arithmetic, so it is checked without a GPU.
 */
import type { KimiConfig } from '../../model/config';

export interface MemoryPlan {
  weights: number;
  state: number;
  workspace: number;
  total: number;
}

const BF16 = 2;
const F32 = 4;

/** Bytes of the weights on the device; matrices take `matrix` bytes per value (2 as bf16, 4 if stored fp32). */
export function weightBytes(c: KimiConfig, matrix = BF16): number {
  const d = c.hiddenSize;
  const { numHeads: H, headDim: K, convKernel: W } = c.kda;
  const P = H * K;
  const m = c.mla;
  const qw = m.qkNopeHeadDim + m.qkRopeHeadDim;
  const D = m.kvLoraRank + m.qkRopeHeadDim;
  const e = c.moe;
  let b = c.vocabSize * d * matrix * (c.tieWordEmbeddings ? 1 : 2) + d * F32;
  for (const l of c.layers) {
    b += 2 * d * F32;
    if (l.attention === 'kda') {
      b += (3 * P * d + 2 * K * d + H * d + 2 * P * K + d * P) * matrix + (3 * P * W + H + P + K) * F32;
    } else {
      b += (m.numHeads * qw * d + D * d + m.numHeads * m.kvLoraRank * (m.qkNopeHeadDim + m.vHeadDim) + d * m.numHeads * m.vHeadDim) * matrix;
      b += m.kvLoraRank * F32;
    }
    if (l.ffn === 'dense') b += 3 * c.intermediateSize * d * matrix;
    else {
      const Is = e.intermediateSize * e.numSharedExperts;
      // The router is kept in fp32: its logits choose experts, and ties are close.
      b += (3 * e.numExperts * e.intermediateSize * d + 3 * Is * d) * matrix + (e.numExperts * d + e.numExperts) * F32;
    }
  }
  return b;
}

/** Bytes of one sequence's state after `tokens` tokens: KDA S and conv tails, MLA latents (fp32). */
export function stateBytes(c: KimiConfig, tokens: number): number {
  const { numHeads: H, headDim: K, convKernel: W } = c.kda;
  const D = c.mla.kvLoraRank + c.mla.qkRopeHeadDim;
  let b = 0;
  for (const l of c.layers) b += l.attention === 'kda' ? (H * K * K + 3 * H * K * (W - 1)) * F32 : tokens * D * F32;
  return b;
}

/** Rows of logits computed per lm_head pass when every position's logits are wanted. */
export const LM_HEAD_ROWS = 64;

/**
 * An upper bound of the workspace one layer uses for T tokens (every buffer of every layer kind
 * counted, allocations rounded to 256 bytes), plus the MoE and MLA scratch the native library
 * asks for. `moeScratch` and `mlaScratch` come from klc_*_workspace_bytes.
 */
export function layerWorkspaceBytes(c: KimiConfig, T: number, moeScratch: number, mlaScratch: number): number {
  const d = c.hiddenSize;
  const { numHeads: H, headDim: K } = c.kda;
  const P = H * K;
  const m = c.mla;
  const D = m.kvLoraRank + m.qkRopeHeadDim;
  const qw = m.qkNopeHeadDim + m.qkRopeHeadDim;
  const e = c.moe;
  const Is = e.intermediateSize * e.numSharedExperts;
  const floats = [
    4 * T * d, // input norm, attention out, post norm, ffn out
    T * 3 * P, 3 * T * P, 2 * T * P, T * K, T * P, T * H, T * K, T * P, T * P, T * P, // KDA
    T * m.numHeads * qw, T * D, T * m.numHeads * D, T * m.numHeads * m.kvLoraRank, T * m.numHeads * m.vHeadDim, // MLA
    T * e.numExperts, 2 * T * e.topK, T * 2 * Is, T * Is, // MoE router and shared expert
    T * 3 * c.intermediateSize, // dense MLP
    T * d, Math.min(T, LM_HEAD_ROWS) * c.vocabSize, // final norm, lm_head rows
  ];
  const pieces = floats.length + 4;
  return floats.reduce((s, n) => s + n * F32, 0) + moeScratch + mlaScratch + pieces * 256;
}

/** Bytes one MLA query block's scores and probabilities take at most in tensor-core mode (tc_ops.cu). */
const MLA_BLOCK_BYTES = 2 ** 30;

/** Keys the up-projected MLA prefill (native/src/mla_flash.cu) expands at a time. */
const MLA_KEY_BLOCK = 8192;

/**
 * Staging of the up-projected MLA prefill (mla_flash.cu): for one key block the fp32 up-projection,
 * bf16 latents, per-head keys and values, and the transposed key weights; for the slice the carried
 * softmax (unnormalised output, max and sum per row).
 */
export function mlaHeadsScratchBytes(c: KimiConfig, sliceTokens: number): number {
  const m = c.mla;
  const H = m.numHeads;
  const qk = m.qkNopeHeadDim + m.qkRopeHeadDim;
  const block = MLA_KEY_BLOCK * (H * m.vHeadDim * F32 + m.kvLoraRank * BF16 + H * (qk + m.vHeadDim) * BF16);
  return block + H * m.qkNopeHeadDim * m.kvLoraRank * BF16 + sliceTokens * H * (m.vHeadDim + 2) * F32 + 6 * 256;
}

/**
 * Staging memory of tensor-core mode (native/src/tc_ops.cu): the MLA score block, bf16 copies of
 * the latent cache and of a query block, the bf16 copy of the widest linear-layer input, and the
 * up-projected MLA prefill's buffers (they share the same staging slots, so this bounds both).
 */
export function tensorCoreScratchBytes(c: KimiConfig, contextTokens: number, sliceTokens: number): number {
  const m = c.mla;
  const D = m.kvLoraRank + m.qkRopeHeadDim;
  const widest = Math.max(c.hiddenSize, c.kda.numHeads * c.kda.headDim, m.numHeads * m.kvLoraRank, c.intermediateSize, m.numHeads * (m.qkNopeHeadDim + m.qkRopeHeadDim));
  return MLA_BLOCK_BYTES + contextTokens * D * BF16 + sliceTokens * m.numHeads * D * BF16 + sliceTokens * widest * BF16 + 3 * 256
    + mlaHeadsScratchBytes(c, sliceTokens);
}

/** `sampleScratch`: the device sampling buffers (klc_sample_workspace_bytes and the ids) kept beside the arena. */
export function planMemory(c: KimiConfig, contextTokens: number, sliceTokens: number, moeScratch: number, mlaScratch: number, matrix = BF16, tensorCores = false, sampleScratch = 0): MemoryPlan {
  const weights = weightBytes(c, matrix);
  const state = stateBytes(c, contextTokens);
  const staging = tensorCores ? tensorCoreScratchBytes(c, contextTokens, sliceTokens) : 0;
  const workspace = layerWorkspaceBytes(c, sliceTokens, moeScratch, mlaScratch) + 2 * sliceTokens * c.hiddenSize * F32 + sliceTokens * 4 + staging + sampleScratch;
  return { weights, state, workspace, total: weights + state + workspace };
}

export function gib(bytes: number): string {
  return `${(bytes / 2 ** 30).toFixed(2)} GiB`;
}
