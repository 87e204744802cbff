/**
 * All weights of a checkpoint as fp32 arrays, grouped per layer the way the reference backend
 * uses them. Tensors are read one by one from the checkpoint (each converted on its own), but the
 * reference keeps all of them: it is meant for small models and for checking other backends.
 */
import type { KimiConfig } from '../model/config';
import type { Checkpoint } from '../model/checkpoint';
import type { KdaWeights } from './kda';
import type { MlaWeights } from './mla';
import type { MoeWeights, SwigluWeights } from './moe';

export interface LayerWeights {
  inputNorm: Float32Array;
  postNorm: Float32Array;
  kda: KdaWeights | null;
  mla: MlaWeights | null;
  mlp: SwigluWeights | null;
  moe: MoeWeights | null;
}

export interface ModelWeights {
  embed: Float32Array;
  finalNorm: Float32Array;
  lmHead: Float32Array;
  layers: LayerWeights[];
}

export async function loadWeights(cfg: KimiConfig, ckpt: Checkpoint): Promise<ModelWeights> {
  const t = (name: string) => ckpt.tensor(name);
  const layers: LayerWeights[] = [];
  for (let i = 0; i < cfg.numLayers; i++) {
    const spec = cfg.layers[i];
    const p = `model.layers.${i}.`;
    const a = `${p}self_attn.`;
    const layer: LayerWeights = {
      inputNorm: await t(`${p}input_layernorm.weight`),
      postNorm: await t(`${p}post_attention_layernorm.weight`),
      kda: null,
      mla: null,
      mlp: null,
      moe: null,
    };
    if (spec.attention === 'kda') {
      layer.kda = {
        qProj: await t(`${a}q_proj.weight`),
        kProj: await t(`${a}k_proj.weight`),
        vProj: await t(`${a}v_proj.weight`),
        // [P, 1, W] and [P, W] have the same memory order, so the flat array serves both.
        qConv: await t(`${a}q_conv1d.weight`),
        kConv: await t(`${a}k_conv1d.weight`),
        vConv: await t(`${a}v_conv1d.weight`),
        aLog: await t(`${a}A_log`),
        dtBias: await t(`${a}dt_bias`),
        fA: await t(`${a}f_a_proj.weight`),
        fB: await t(`${a}f_b_proj.weight`),
        bProj: await t(`${a}b_proj.weight`),
        gA: await t(`${a}g_a_proj.weight`),
        gB: await t(`${a}g_b_proj.weight`),
        oNorm: await t(`${a}o_norm.weight`),
        oProj: await t(`${a}o_proj.weight`),
      };
    } else {
      layer.mla = {
        qProj: await t(`${a}q_proj.weight`),
        kvA: await t(`${a}kv_a_proj_with_mqa.weight`),
        kvNorm: await t(`${a}kv_a_layernorm.weight`),
        kvB: await t(`${a}kv_b_proj.weight`),
        oProj: await t(`${a}o_proj.weight`),
      };
    }
    if (spec.ffn === 'dense') {
      layer.mlp = await swiglu(t, `${p}mlp.`, 'gate_proj', 'up_proj', 'down_proj', cfg.intermediateSize);
    } else {
      const b = `${p}block_sparse_moe.`;
      const experts: SwigluWeights[] = [];
      for (let e = 0; e < cfg.moe.numExperts; e++) experts.push(await swiglu(t, `${b}experts.${e}.`, 'w1', 'w3', 'w2', cfg.moe.intermediateSize));
      layer.moe = {
        router: await t(`${b}gate.weight`),
        bias: await t(`${b}gate.e_score_correction_bias`),
        experts,
        shared:
          cfg.moe.numSharedExperts > 0
            ? await swiglu(t, `${b}shared_experts.`, 'gate_proj', 'up_proj', 'down_proj', cfg.moe.intermediateSize * cfg.moe.numSharedExperts)
            : null,
      };
    }
    layers.push(layer);
  }
  const embed = await t('model.embed_tokens.weight');
  return {
    embed,
    finalNorm: await t('model.norm.weight'),
    lmHead: cfg.tieWordEmbeddings ? embed : await t('lm_head.weight'),
    layers,
  };
}

async function swiglu(t: (n: string) => Promise<Float32Array>, prefix: string, gate: string, up: string, down: string, inner: number): Promise<SwigluWeights> {
  return {
    gate: await t(`${prefix}${gate}.weight`),
    up: await t(`${prefix}${up}.weight`),
    down: await t(`${prefix}${down}.weight`),
    inner,
  };
}
