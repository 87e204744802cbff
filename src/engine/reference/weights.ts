/**
 * Weights as fp32 arrays, grouped the way the reference code uses them. Tensors are read one by
 * one from the checkpoint (each converted on its own). The reference backend keeps all of them (it
 * is meant for small models and for checking other backends); the ONNX backend reads one layer at
 * a time and lets the arrays go once that layer's sessions are built.
 */
import type { KimiConfig } from '../model/config';
import type { WeightSource } from '../model/weight-source';
import { EMBED, FINAL_NORM, kdaNames, LM_HEAD, mlaNames, mlpNames, moeNames, normNames, type SwigluNames } from '../model/weight-names';
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

/** Reads every tensor a record of names points to, keeping the keys. */
async function readAll<K extends string>(ckpt: WeightSource, names: Record<K, string>): Promise<Record<K, Float32Array>> {
  const out = {} as Record<K, Float32Array>;
  for (const key of Object.keys(names) as K[]) out[key] = await ckpt.tensor(names[key]);
  return out;
}

async function readSwiglu(ckpt: WeightSource, n: SwigluNames): Promise<SwigluWeights> {
  return { gate: await ckpt.tensor(n.gate), up: await ckpt.tensor(n.up), down: await ckpt.tensor(n.down), inner: n.inner };
}

export function readKda(ckpt: WeightSource, layer: number): Promise<KdaWeights> {
  return readAll(ckpt, kdaNames(layer));
}

export function readMla(ckpt: WeightSource, layer: number): Promise<MlaWeights> {
  return readAll(ckpt, mlaNames(layer));
}

export function readMlp(cfg: KimiConfig, ckpt: WeightSource, layer: number): Promise<SwigluWeights> {
  return readSwiglu(ckpt, mlpNames(cfg, layer));
}

export async function readMoe(cfg: KimiConfig, ckpt: WeightSource, layer: number): Promise<MoeWeights> {
  const n = moeNames(cfg, layer);
  const experts: SwigluWeights[] = [];
  for (const e of n.experts) experts.push(await readSwiglu(ckpt, e));
  return {
    router: await ckpt.tensor(n.router),
    bias: await ckpt.tensor(n.bias),
    experts,
    shared: n.shared ? await readSwiglu(ckpt, n.shared) : null,
  };
}

export async function loadWeights(cfg: KimiConfig, ckpt: WeightSource): Promise<ModelWeights> {
  const layers: LayerWeights[] = [];
  for (let i = 0; i < cfg.numLayers; i++) {
    const spec = cfg.layers[i];
    const norms = normNames(i);
    layers.push({
      inputNorm: await ckpt.tensor(norms.input),
      postNorm: await ckpt.tensor(norms.post),
      kda: spec.attention === 'kda' ? await readKda(ckpt, i) : null,
      mla: spec.attention === 'kda' ? null : await readMla(ckpt, i),
      mlp: spec.ffn === 'dense' ? await readMlp(cfg, ckpt, i) : null,
      moe: spec.ffn === 'dense' ? null : await readMoe(cfg, ckpt, i),
    });
  }
  const embed = await ckpt.tensor(EMBED);
  return {
    embed,
    finalNorm: await ckpt.tensor(FINAL_NORM),
    lmHead: cfg.tieWordEmbeddings ? embed : await ckpt.tensor(LM_HEAD),
    layers,
  };
}
