/**
 * Reads the weights of one layer (or the globals) from a checkpoint as fp32, in the shapes the
 * reference code uses, so the ONNX backend can turn each layer into sessions and let the JS
 * copies go before it reads the next: only one layer's weights are ever in the JS heap.
 */
import type { KimiConfig } from '../../model/config';
import type { Checkpoint } from '../../model/checkpoint';
import type { KdaWeights } from '../../reference/kda';
import type { MlaWeights } from '../../reference/mla';
import type { MoeWeights, SwigluWeights } from '../../reference/moe';

export async function readKda(ckpt: Checkpoint, layer: number): Promise<KdaWeights> {
  const a = `model.layers.${layer}.self_attn.`;
  const t = (n: string) => ckpt.tensor(`${a}${n}`);
  return {
    qProj: await t('q_proj.weight'),
    kProj: await t('k_proj.weight'),
    vProj: await t('v_proj.weight'),
    // [P, 1, W] and [P, W] have the same memory order.
    qConv: await t('q_conv1d.weight'),
    kConv: await t('k_conv1d.weight'),
    vConv: await t('v_conv1d.weight'),
    aLog: await t('A_log'),
    dtBias: await t('dt_bias'),
    fA: await t('f_a_proj.weight'),
    fB: await t('f_b_proj.weight'),
    bProj: await t('b_proj.weight'),
    gA: await t('g_a_proj.weight'),
    gB: await t('g_b_proj.weight'),
    oNorm: await t('o_norm.weight'),
    oProj: await t('o_proj.weight'),
  };
}

export async function readMla(ckpt: Checkpoint, layer: number): Promise<MlaWeights> {
  const a = `model.layers.${layer}.self_attn.`;
  const t = (n: string) => ckpt.tensor(`${a}${n}`);
  return {
    qProj: await t('q_proj.weight'),
    kvA: await t('kv_a_proj_with_mqa.weight'),
    kvNorm: await t('kv_a_layernorm.weight'),
    kvB: await t('kv_b_proj.weight'),
    oProj: await t('o_proj.weight'),
  };
}

async function swiglu(ckpt: Checkpoint, prefix: string, names: [string, string, string], inner: number): Promise<SwigluWeights> {
  const [gate, up, down] = names;
  return {
    gate: await ckpt.tensor(`${prefix}${gate}.weight`),
    up: await ckpt.tensor(`${prefix}${up}.weight`),
    down: await ckpt.tensor(`${prefix}${down}.weight`),
    inner,
  };
}

export function readMlp(cfg: KimiConfig, ckpt: Checkpoint, layer: number): Promise<SwigluWeights> {
  return swiglu(ckpt, `model.layers.${layer}.mlp.`, ['gate_proj', 'up_proj', 'down_proj'], cfg.intermediateSize);
}

export async function readMoe(cfg: KimiConfig, ckpt: Checkpoint, layer: number): Promise<MoeWeights> {
  const b = `model.layers.${layer}.block_sparse_moe.`;
  const { numExperts: E, intermediateSize: I, numSharedExperts: S } = cfg.moe;
  const experts: SwigluWeights[] = [];
  for (let e = 0; e < E; e++) experts.push(await swiglu(ckpt, `${b}experts.${e}.`, ['w1', 'w3', 'w2'], I));
  return {
    router: await ckpt.tensor(`${b}gate.weight`),
    bias: await ckpt.tensor(`${b}gate.e_score_correction_bias`),
    experts,
    shared: S > 0 ? await swiglu(ckpt, `${b}shared_experts.`, ['gate_proj', 'up_proj', 'down_proj'], I * S) : null,
  };
}
