/**
 * Bytes of a Kimi Linear model's weights on the GPU under each quantization scheme, matrix by
 * matrix as the CUDA backend uploads them (src/engine/backends/cuda/device-weights.ts): matrices
 * bf16 (fp32 for fp32 checkpoints), the MoE router's weight and bias, norms, conv taps, A_log and
 * dt_bias fp32. Quantized schemes quantize every linear layer except embed_tokens, lm_head and the
 * router, as llm-compressor's usual ignore list does, and MLA's kv_b_proj (inventory.ts); norms and
 * the other small tensors stay fp32.
 */
import type { KimiConfig } from '../model/config';
import { attentionMatrices, swigluMatrices, type Shape } from './inventory';

export type Quantization = 'none' | 'fp8' | 'int8' | 'int4';

export const QUANTIZATIONS: readonly Quantization[] = ['none', 'fp8', 'int8', 'int4'];

const F32 = 4;
const BF16 = 2;
/** Inputs sharing one bf16 scale in int4 (w4a16, group 128). */
export const INT4_GROUP = 128;

/** Bytes of one [rows, cols] linear weight stored under `q` (`matrix`: bytes per weight when unquantized). */
export function matrixBytes(rows: number, cols: number, q: Quantization, matrix: number): number {
  switch (q) {
    case 'none':
      return rows * cols * matrix;
    case 'fp8':
    case 'int8':
      // One byte per weight (E4M3 or int8) and one fp32 scale per output row.
      return rows * cols + rows * F32;
    case 'int4':
      return (rows * cols) / 2 + rows * Math.ceil(cols / INT4_GROUP) * BF16;
  }
}

export interface WeightBytes {
  /** Everything but the routed experts. */
  resident: number;
  /** Routed experts of each layer (0 for dense layers), by layer index. */
  experts: number[];
}

/** Weight bytes under `q`; `matrix` is 2 for bf16 checkpoints and 4 for fp32 ones. */
export function weightBytes(c: KimiConfig, q: Quantization, matrix = BF16): WeightBytes {
  const lin = (shapes: readonly Shape[]) => shapes.reduce((n, [r, k, kept]) => n + matrixBytes(r, k, kept ? 'none' : q, matrix), 0);
  // embed_tokens and lm_head are never quantized.
  const table = (rows: number, cols: number) => rows * cols * matrix;
  const d = c.hiddenSize;
  const { numHeads: H, headDim: K, convKernel: W } = c.kda;
  const P = H * K;
  const e = c.moe;
  let resident = table(c.vocabSize, d) * (c.tieWordEmbeddings ? 1 : 2) + d * F32;
  const experts: number[] = [];
  for (const l of c.layers) {
    resident += 2 * d * F32 + lin(attentionMatrices(c, l.attention));
    // conv taps, A_log, dt_bias and the output norm (KDA); the latent norm (MLA).
    resident += (l.attention === 'kda' ? 3 * P * W + H + P + K : c.mla.kvLoraRank) * F32;
    if (l.ffn === 'dense') {
      resident += lin(swigluMatrices(c, c.intermediateSize));
      experts.push(0);
    } else {
      // The router chooses experts from close scores: it stays fp32 under every scheme.
      resident += (e.numExperts * d + e.numExperts) * F32;
      if (e.numSharedExperts > 0) resident += lin(swigluMatrices(c, e.intermediateSize * e.numSharedExperts));
      experts.push(e.numExperts * lin(swigluMatrices(c, e.intermediateSize)));
    }
  }
  return { resident, experts };
}
