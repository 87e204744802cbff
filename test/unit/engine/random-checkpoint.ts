/**
 * Small seeded random Kimi Linear checkpoints for unit tests, written with our own safetensors
 * writer in the published layout. Layer mix is KDA, MLA, KDA, MLA so every path runs; scales keep
 * activations O(1) like the golden model's.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig, type KimiConfig } from '../../../src/engine/model/config';
import { expectedTensors } from '../../../src/engine/model/checkpoint';
import { writeSafetensors, type TensorToWrite } from '../../../src/engine/model/safetensors';

export function tinyConfigJson(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    model_type: 'kimi_linear',
    vocab_size: 96,
    hidden_size: 32,
    intermediate_size: 48,
    num_hidden_layers: 4,
    num_attention_heads: 2,
    num_key_value_heads: 2,
    hidden_act: 'silu',
    rms_norm_eps: 1e-5,
    tie_word_embeddings: false,
    bos_token_id: 92,
    eos_token_id: 94,
    pad_token_id: 95,
    q_lora_rank: null,
    kv_lora_rank: 16,
    qk_nope_head_dim: 8,
    qk_rope_head_dim: 4,
    v_head_dim: 8,
    mla_use_nope: true,
    linear_attn_config: { kda_layers: [1, 3], full_attn_layers: [2, 4], num_heads: 2, head_dim: 8, short_conv_kernel_size: 4 },
    num_experts: 4,
    num_experts_per_token: 2,
    num_shared_experts: 1,
    moe_intermediate_size: 16,
    moe_renormalize: true,
    moe_router_activation_func: 'sigmoid',
    routed_scaling_factor: 2.446,
    num_expert_group: 1,
    topk_group: 1,
    first_k_dense_replace: 1,
    moe_layer_freq: 1,
    num_nextn_predict_layers: 0,
    ...overrides,
  };
}

/** A deterministic PRNG (mulberry32) with normal samples by Box–Muller. */
export function rng(seed: number): { uniform(): number; normal(): number } {
  let a = seed >>> 0;
  const uniform = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return { uniform, normal: () => Math.sqrt(-2 * Math.log(1 - uniform())) * Math.cos(2 * Math.PI * uniform()) };
}

export function randomTensors(cfg: KimiConfig, seed = 1): TensorToWrite[] {
  const r = rng(seed);
  return [...expectedTensors(cfg)].map(([name, shapes]) => {
    const shape = shapes[0];
    const n = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      if (/norm\.weight$/.test(name)) data[i] = 1 + 0.1 * r.normal();
      else if (name.endsWith('A_log')) data[i] = Math.log(1 + 15 * r.uniform());
      else if (name.endsWith('dt_bias')) data[i] = Math.log(Math.expm1(10 ** (-3 + 2 * r.uniform())));
      else if (name.includes('conv1d')) data[i] = 0.3 * r.normal();
      else if (name.includes('embed_tokens')) data[i] = 0.5 * r.normal();
      else if (name.endsWith('e_score_correction_bias')) data[i] = 0.1 * r.normal();
      else data[i] = 0.15 * r.normal();
    }
    return { name, dtype: 'F32', shape, data };
  });
}

/** Writes config.json + model.safetensors into a fresh temp folder and returns it. */
export async function writeRandomCheckpoint(overrides: Record<string, unknown> = {}, seed = 1): Promise<{ dir: string; config: KimiConfig; tensors: TensorToWrite[] }> {
  const json = tinyConfigJson(overrides);
  const config = parseConfig(json);
  const dir = mkdtempSync(join(tmpdir(), 'klc-ckpt-'));
  writeFileSync(join(dir, 'config.json'), JSON.stringify(json));
  const tensors = randomTensors(config, seed);
  await writeSafetensors(join(dir, 'model.safetensors'), tensors);
  return { dir, config, tensors };
}
