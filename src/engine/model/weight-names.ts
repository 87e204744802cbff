/**
 * Where each weight of Kimi Linear lives in a checkpoint (the Hugging Face layout, spec §3), in one
 * place for every backend: the reference and ONNX backends read these tensors as fp32 arrays, the
 * CUDA backend uploads them (fused side by side where one GEMM takes several).
 */
import type { KimiConfig } from './config';

export const EMBED = 'model.embed_tokens.weight';
export const FINAL_NORM = 'model.norm.weight';
export const LM_HEAD = 'lm_head.weight';

export interface NormNames {
  input: string;
  post: string;
}

export interface KdaNames {
  qProj: string;
  kProj: string;
  vProj: string;
  /** [P, 1, W], the same memory order as [P, W]. */
  qConv: string;
  kConv: string;
  vConv: string;
  aLog: string;
  dtBias: string;
  fA: string;
  fB: string;
  bProj: string;
  gA: string;
  gB: string;
  oNorm: string;
  oProj: string;
}

export interface MlaNames {
  qProj: string;
  kvA: string;
  kvNorm: string;
  kvB: string;
  oProj: string;
}

export interface SwigluNames {
  gate: string;
  up: string;
  down: string;
  /** Intermediate width. */
  inner: number;
}

export interface MoeNames {
  router: string;
  bias: string;
  experts: SwigluNames[];
  shared: SwigluNames | null;
}

const layerPrefix = (layer: number) => `model.layers.${layer}.`;
const attention = (layer: number) => `${layerPrefix(layer)}self_attn.`;
const moePrefix = (layer: number) => `${layerPrefix(layer)}block_sparse_moe.`;

export function normNames(layer: number): NormNames {
  const p = layerPrefix(layer);
  return { input: `${p}input_layernorm.weight`, post: `${p}post_attention_layernorm.weight` };
}

export function kdaNames(layer: number): KdaNames {
  const a = attention(layer);
  return {
    qProj: `${a}q_proj.weight`,
    kProj: `${a}k_proj.weight`,
    vProj: `${a}v_proj.weight`,
    qConv: `${a}q_conv1d.weight`,
    kConv: `${a}k_conv1d.weight`,
    vConv: `${a}v_conv1d.weight`,
    aLog: `${a}A_log`,
    dtBias: `${a}dt_bias`,
    fA: `${a}f_a_proj.weight`,
    fB: `${a}f_b_proj.weight`,
    bProj: `${a}b_proj.weight`,
    gA: `${a}g_a_proj.weight`,
    gB: `${a}g_b_proj.weight`,
    oNorm: `${a}o_norm.weight`,
    oProj: `${a}o_proj.weight`,
  };
}

export function mlaNames(layer: number): MlaNames {
  const a = attention(layer);
  return {
    qProj: `${a}q_proj.weight`,
    kvA: `${a}kv_a_proj_with_mqa.weight`,
    kvNorm: `${a}kv_a_layernorm.weight`,
    kvB: `${a}kv_b_proj.weight`,
    oProj: `${a}o_proj.weight`,
  };
}

/** The dense MLP of a layer whose ffn is 'dense'. */
export function mlpNames(cfg: KimiConfig, layer: number): SwigluNames {
  const m = `${layerPrefix(layer)}mlp.`;
  return { gate: `${m}gate_proj.weight`, up: `${m}up_proj.weight`, down: `${m}down_proj.weight`, inner: cfg.intermediateSize };
}

/** The MoE block of a layer whose ffn is 'moe': experts name their projections w1 (gate), w3 (up), w2 (down). */
export function moeNames(cfg: KimiConfig, layer: number): MoeNames {
  const b = moePrefix(layer);
  const { numExperts: E, intermediateSize: I, numSharedExperts: S } = cfg.moe;
  const experts = Array.from({ length: E }, (_, e) => {
    const x = `${b}experts.${e}.`;
    return { gate: `${x}w1.weight`, up: `${x}w3.weight`, down: `${x}w2.weight`, inner: I };
  });
  const s = `${b}shared_experts.`;
  return {
    router: `${b}gate.weight`,
    bias: `${b}gate.e_score_correction_bias`,
    experts,
    shared: S > 0 ? { gate: `${s}gate_proj.weight`, up: `${s}up_proj.weight`, down: `${s}down_proj.weight`, inner: I * S } : null,
  };
}
