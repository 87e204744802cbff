/**
 * The CUDA backend's working memory for one forward call of T tokens, computed without a GPU: the
 * per-layer activations, the scratch the native MoE and MLA kernels ask for (the formulas of
 * klc_moe_workspace_bytes / klc_mla_workspace_bytes in native/src/moe.cu and mla.cu, ported so that
 * the plan and `klc plan` need no native library), tensor-core staging (native/src/tc_ops.cu,
 * mla_flash.cu) and the device sampling buffers.
 */
import type { KimiConfig } from '../model/config';

const F32 = 4;
const BF16 = 2;
const POINTER = 8;

function align256(bytes: number): number {
  return Math.ceil(bytes / 256) * 256;
}

/** Rows of logits computed per lm_head pass when every position's logits are wanted. */
export const LM_HEAD_ROWS = 64;

/** Quantized experts dequantized to bf16 at a time for a prefill slice's MoE (MOE_DENSE_GROUP in native/src/moe_small_wq.cu). */
export const MOE_DENSE_GROUP = 32;

/**
 * klc_moe_dense_bytes: quantized routed experts dequantized for a prefill slice, [G, 2I, d] from a
 * 256-byte boundary, then [G, d, I], for G experts: MOE_DENSE_GROUP in bf16 on tensor cores, every
 * expert in fp32 in exact mode.
 */
export function moeDenseBytes(c: KimiConfig, denseF32: boolean): number {
  const el = denseF32 ? F32 : BF16;
  const d = c.hiddenSize;
  const { numExperts: E, intermediateSize: I } = c.moe;
  const G = denseF32 ? E : Math.min(E, MOE_DENSE_GROUP);
  return align256(G * 2 * I * d * el) + G * d * I * el;
}

/** Rows per tile of the native MoE expert GEMMs (BM in native/src/gemm_f32.cuh). */
const MOE_TILE_ROWS = 64;

/**
 * klc_moe_workspace_bytes(T, d, I, E, k): routing offsets and token lists, 6 pointers per expert
 * for the batched GEMMs, and the gate/up, hidden and output rows of every expert padded to whole
 * 64-row tiles (at most T·k + 64·min(E, T·k) rows).
 */
export function moeScratchBytes(c: KimiConfig, T: number): number {
  const { numExperts: E, topK: k, intermediateSize: I } = c.moe;
  const n = T * k;
  const rows = n + MOE_TILE_ROWS * Math.min(E, n);
  return align256(4 * (3 * (E + 1) + 2 * n)) + align256(POINTER * 6 * E) + align256(F32 * rows * 2 * I) + align256(F32 * rows * I) + align256(F32 * rows * c.hiddenSize);
}

/**
 * The MLA attention's partial sums for T tokens: klc_mla_workspace_bytes(rows, L, 1) with
 * rows = splits · (T·H) bounded by 2·T·H + 32·256 (two splits per row plus 32 rows for each of a
 * generous 256 multiprocessors), each row L + 2 floats.
 */
export function mlaScratchBytes(c: KimiConfig, T: number): number {
  const rows = 2 * T * c.mla.numHeads + 32 * 256;
  return rows * (c.mla.kvLoraRank + 2) * F32;
}

/**
 * An upper bound of the workspace one layer uses for T tokens (every buffer of every layer kind
 * counted, allocations rounded to 256 bytes), plus the MoE and MLA scratch. The CUDA backend passes
 * the native library's figures for the scratch; the plan passes moeScratchBytes / mlaScratchBytes.
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
 * Staging memory of tensor-core mode (native/src/tc_ops.cu): the MLA score block, the bf16 copy of
 * a query block, the bf16 copy of the widest linear-layer input, and the up-projected MLA prefill's
 * buffers (they share the same staging slots, so this bounds both). The latent cache itself is
 * bf16 in this mode and feeds the GEMMs as it is: no copy of it is staged.
 */
export function tensorCoreScratchBytes(c: KimiConfig, sliceTokens: number): number {
  const m = c.mla;
  const D = m.kvLoraRank + m.qkRopeHeadDim;
  const widest = Math.max(c.hiddenSize, c.kda.numHeads * c.kda.headDim, m.numHeads * m.kvLoraRank, c.intermediateSize, m.numHeads * (m.qkNopeHeadDim + m.qkRopeHeadDim));
  return MLA_BLOCK_BYTES + sliceTokens * m.numHeads * D * BF16 + sliceTokens * widest * BF16 + 3 * 256 + mlaHeadsScratchBytes(c, sliceTokens);
}

/** Rows the engine samples on the device at once (it decodes up to 8 answers together). */
export const SAMPLE_ROWS = 8;

/**
 * klc_sample_workspace_bytes(rows, vocab) plus the sampled ids, with CUB's radix-sort temporary
 * storage (only a CUDA call can size it exactly) bounded by its alternate key and value buffers
 * (12 bytes per item), 4 bytes per item for its per-tile digit counts and 1 MiB.
 */
export function sampleScratchBytes(c: KimiConfig, rows = SAMPLE_ROWS): number {
  const n = rows * c.vocabSize;
  return 2 * align256(n * 8) + 2 * align256(n * 4) + align256(16 * n + 2 ** 20) + rows * 4;
}

/**
 * Device memory of one forward call of `sliceTokens` tokens, on a sequence of any length: the layer
 * workspace, the hidden and normed rows and the token ids beside it, tensor-core staging when that
 * mode is on, and the sampling buffers (`sampleScratch`: the native library's exact figure when a
 * GPU is at hand).
 */
export function prefillWorkspaceBytes(c: KimiConfig, sliceTokens: number, tensorCores: boolean, sampleScratch = sampleScratchBytes(c)): number {
  const T = sliceTokens;
  const staging = tensorCores ? tensorCoreScratchBytes(c, T) : 0;
  return layerWorkspaceBytes(c, T, moeScratchBytes(c, T), mlaScratchBytes(c, T)) + 2 * T * c.hiddenSize * F32 + T * 4 + staging + sampleScratch;
}
