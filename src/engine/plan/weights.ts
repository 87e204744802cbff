/**
 * Bytes of a Kimi Linear model's weights on the GPU under each quantization scheme, matrix by
 * matrix as the CUDA backend uploads them (src/engine/backends/cuda/device-weights.ts): matrices
 * bf16 (fp32 for fp32 checkpoints), the MoE router's weight and bias, norms, conv taps, A_log and
 * dt_bias fp32. Quantized schemes quantize every linear layer except embed_tokens, lm_head and the
 * router, as llm-compressor's usual ignore list does, and KDA's b_proj and MLA's kv_b_proj
 * (inventory.ts); norms and the other small tensors stay fp32.
 */
import type { Quantization } from '../../common/quantization';
import type { KimiConfig } from '../model/config';
import { attentionMatrices, elements, swigluMatrices, type Shape } from './inventory';
import { moeDenseBytes } from './workspace';

const F32 = 4;
const BF16 = 2;
/** Inputs sharing one bf16 scale in int4 (w4a16, group 128). */
export const INT4_GROUP = 128;

/**
 * Bytes of one [rows, cols] linear weight stored under `q` (`matrix`: bytes per weight when
 * unquantized); scales take the checkpoint's precision (bf16, or fp32 for fp32 checkpoints), as
 * quantization at load writes them (quant/round.ts scaleDtypeFor).
 */
export function matrixBytes(rows: number, cols: number, q: Quantization, matrix: number): number {
  switch (q) {
    case 'none':
      return rows * cols * matrix;
    case 'fp8':
    case 'int8':
      // One byte per weight (E4M3 or int8) and one scale per output row.
      return rows * cols + rows * matrix;
    case 'int4':
      return (rows * cols) / 2 + rows * Math.ceil(cols / INT4_GROUP) * matrix;
  }
}

export interface WeightBytes {
  /** Everything but the routed experts. */
  resident: number;
  /** Routed experts of each layer (0 for dense layers), by layer index. */
  experts: number[];
}

/** Bytes of `shapes` stored under `q`, a matrix kept in full precision unquantized. */
export function storedBytes(shapes: readonly Shape[], q: Quantization, matrix = BF16): number {
  return shapes.reduce((n, [r, k, kept]) => n + matrixBytes(r, k, kept ? 'none' : q, matrix), 0);
}

/** Weight bytes under `q`; `matrix` is 2 for bf16 checkpoints and 4 for fp32 ones. */
export function weightBytes(c: KimiConfig, q: Quantization, matrix = BF16): WeightBytes {
  const lin = (shapes: readonly Shape[]) => storedBytes(shapes, q, matrix);
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

/**
 * The buffer quantized weights are dequantized into for prefill GEMMs (deviceWeightBytes' dense):
 * the largest quantized matrix the backend multiplies as one (KDA's q, k, v side by side; gate and
 * up side by side), or the routed experts of one MoE layer dequantized at a time (moeDenseBytes),
 * whichever is larger; bf16 on tensor cores, fp32 without. 0 for unquantized weights.
 */
export function dequantBufferBytes(c: KimiConfig, q: Quantization, tensorCores = true): number {
  if (q === 'none') return 0;
  const { numHeads: H, headDim: K } = c.kda;
  const P = H * K;
  const d = c.hiddenSize;
  const mats: Shape[][] = [];
  for (const l of c.layers) {
    const attention = attentionMatrices(c, l.attention).filter(([, , kept]) => !kept);
    // KDA's q, k and v (the first three) are one GEMM.
    if (l.attention === 'kda') mats.push([[3 * P, d]], ...attention.slice(3).map((m) => [m]));
    else mats.push(...attention.map((m) => [m]));
    const inner = l.ffn === 'dense' ? c.intermediateSize : c.moe.numSharedExperts > 0 ? c.moe.intermediateSize * c.moe.numSharedExperts : 0;
    if (inner > 0) {
      const [gate, up, down] = swigluMatrices(c, inner);
      mats.push([gate, up], [down]);
    }
  }
  const largest = Math.max(...mats.map(elements));
  const experts = c.layers.some((l) => l.ffn === 'moe') ? moeDenseBytes(c, !tensorCores) : 0;
  return Math.max(largest * (tensorCores ? BF16 : F32), experts);
}
