/**
 * Seeded random Kimi Linear checkpoints in the published Hugging Face layout, at any width: the
 * config.json, the tensors with their published names and shapes, and the bundled tokenizer.
 * Used by make-tiny-checkpoint.ts (the bundled demo model) and make-synthetic-checkpoint.ts (a
 * larger model for benchmarks). The same shape and seed always give byte-identical files.
 */
import { copyFileSync, mkdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { writeFileAtomic } from '../src/common/atomic';
import { writeSafetensors, type TensorToWrite } from '../src/engine/model/safetensors';
import { seededRandom } from '../src/engine/sampler';

export const TOKENIZER_DIR = resolve(__dirname, '..', 'assets', 'tokenizer');

export interface KimiShape {
  hidden: number;
  kdaHeads: number;
  kdaDim: number;
  mlaHeads: number;
  nope: number;
  rope: number;
  vDim: number;
  kvLora: number;
  experts: number;
  topK: number;
  moeInter: number;
  denseInter: number;
  layers: ('kda' | 'mla')[];
  maxLength: number;
}

/** How weights are drawn: `linear(cols)` gives the initializer of a [rows, cols] Linear weight. */
export interface KimiInit {
  seed: number;
  embed: (normal: () => number) => () => number;
  linear: (normal: () => number, cols: number) => () => number;
}

/** Rank lines of the bundled tokenizer: its special ids start right after them. */
export function bundledRanks(): number {
  return readFileSync(join(TOKENIZER_DIR, 'tiktoken.model'), 'utf8').split('\n').filter((l) => l.trim() !== '').length;
}

export function kimiConfig(s: KimiShape, vocab: number, specialBase: number) {
  return {
    architectures: ['KimiLinearForCausalLM'],
    model_type: 'kimi_linear',
    dtype: 'bfloat16',
    vocab_size: vocab,
    hidden_size: s.hidden,
    intermediate_size: s.denseInter,
    num_hidden_layers: s.layers.length,
    num_attention_heads: s.mlaHeads,
    num_key_value_heads: s.mlaHeads,
    head_dim: s.hidden / s.mlaHeads,
    hidden_act: 'silu',
    rms_norm_eps: 1e-5,
    initializer_range: 0.02,
    tie_word_embeddings: false,
    use_cache: true,
    // The bundled tokenizer's special ids, so that the CLI can talk to the model.
    bos_token_id: specialBase,
    eos_token_id: specialBase + 2,
    pad_token_id: specialBase + 255,
    model_max_length: s.maxLength,
    q_lora_rank: null,
    kv_lora_rank: s.kvLora,
    qk_nope_head_dim: s.nope,
    qk_rope_head_dim: s.rope,
    v_head_dim: s.vDim,
    mla_use_nope: true,
    linear_attn_config: {
      kda_layers: s.layers.flatMap((k, i) => (k === 'kda' ? [i + 1] : [])),
      full_attn_layers: s.layers.flatMap((k, i) => (k === 'mla' ? [i + 1] : [])),
      num_heads: s.kdaHeads,
      head_dim: s.kdaDim,
      short_conv_kernel_size: 4,
    },
    num_experts: s.experts,
    num_experts_per_token: s.topK,
    num_shared_experts: 1,
    moe_intermediate_size: s.moeInter,
    moe_renormalize: true,
    moe_router_activation_func: 'sigmoid',
    routed_scaling_factor: 2.446,
    use_grouped_topk: true,
    num_expert_group: 1,
    topk_group: 1,
    first_k_dense_replace: 1,
    moe_layer_freq: 1,
    num_nextn_predict_layers: 0,
    rope_theta: 10000.0,
    rope_scaling: null,
  };
}

/**
 * The tensors, grouped: one group per decoder layer, then a last group with the embedding, the
 * final norm and lm_head. Drawn in a fixed order from one seeded generator.
 */
export function kimiTensors(s: KimiShape, vocab: number, init: KimiInit): TensorToWrite[][] {
  const uniform = seededRandom(init.seed);
  const normal = () => Math.sqrt(-2 * Math.log(Math.max(uniform(), 1e-12))) * Math.cos(2 * Math.PI * uniform());
  const ones = () => 1 + 0.1 * normal();
  const softplusInv = (y: number) => Math.log(Math.expm1(y));
  const P = s.kdaHeads * s.kdaDim;
  let group: TensorToWrite[] = [];
  const add = (name: string, shape: number[], draw: () => number, dtype: 'BF16' | 'F32' = 'BF16') => {
    group.push({ name, shape, dtype, data: Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, draw) });
  };
  const linear = (name: string, rows: number, cols: number) => add(name, [rows, cols], init.linear(normal, cols));

  const embed = { name: 'model.embed_tokens.weight', shape: [vocab, s.hidden], draw: init.embed(normal) };
  add(embed.name, embed.shape, embed.draw);
  const embedTensor = group.pop()!;
  const groups: TensorToWrite[][] = [];
  for (const [i, kind] of s.layers.entries()) {
    group = [];
    const p = `model.layers.${i}`;
    add(`${p}.input_layernorm.weight`, [s.hidden], ones);
    add(`${p}.post_attention_layernorm.weight`, [s.hidden], ones);
    const a = `${p}.self_attn`;
    if (kind === 'kda') {
      for (const x of ['q', 'k', 'v']) {
        linear(`${a}.${x}_proj.weight`, P, s.hidden);
        add(`${a}.${x}_conv1d.weight`, [P, 1, 4], () => 0.3 * normal());
      }
      add(`${a}.A_log`, [1, 1, s.kdaHeads, 1], () => Math.log(1 + 15 * uniform()), 'F32');
      add(`${a}.dt_bias`, [P], () => softplusInv(Math.exp(Math.log(1e-3) + uniform() * Math.log(100))), 'F32');
      linear(`${a}.f_a_proj.weight`, s.kdaDim, s.hidden);
      linear(`${a}.f_b_proj.weight`, P, s.kdaDim);
      linear(`${a}.b_proj.weight`, s.kdaHeads, s.hidden);
      linear(`${a}.g_a_proj.weight`, s.kdaDim, s.hidden);
      linear(`${a}.g_b_proj.weight`, P, s.kdaDim);
      add(`${a}.o_norm.weight`, [s.kdaDim], ones);
      linear(`${a}.o_proj.weight`, s.hidden, P);
    } else {
      linear(`${a}.q_proj.weight`, s.mlaHeads * (s.nope + s.rope), s.hidden);
      linear(`${a}.kv_a_proj_with_mqa.weight`, s.kvLora + s.rope, s.hidden);
      add(`${a}.kv_a_layernorm.weight`, [s.kvLora], ones);
      linear(`${a}.kv_b_proj.weight`, s.mlaHeads * (s.nope + s.vDim), s.kvLora);
      linear(`${a}.o_proj.weight`, s.hidden, s.mlaHeads * s.vDim);
    }
    if (i === 0) {
      linear(`${p}.mlp.gate_proj.weight`, s.denseInter, s.hidden);
      linear(`${p}.mlp.up_proj.weight`, s.denseInter, s.hidden);
      linear(`${p}.mlp.down_proj.weight`, s.hidden, s.denseInter);
    } else {
      const m = `${p}.block_sparse_moe`;
      linear(`${m}.gate.weight`, s.experts, s.hidden);
      add(`${m}.gate.e_score_correction_bias`, [s.experts], () => 0.1 * normal(), 'F32');
      for (let e = 0; e < s.experts; e++) {
        linear(`${m}.experts.${e}.w1.weight`, s.moeInter, s.hidden);
        linear(`${m}.experts.${e}.w2.weight`, s.hidden, s.moeInter);
        linear(`${m}.experts.${e}.w3.weight`, s.moeInter, s.hidden);
      }
      linear(`${m}.shared_experts.gate_proj.weight`, s.moeInter, s.hidden);
      linear(`${m}.shared_experts.up_proj.weight`, s.moeInter, s.hidden);
      linear(`${m}.shared_experts.down_proj.weight`, s.hidden, s.moeInter);
    }
    groups.push(group);
  }
  group = [embedTensor];
  add('model.norm.weight', [s.hidden], ones);
  linear('lm_head.weight', vocab, s.hidden);
  groups.push(group);
  return groups;
}

/**
 * Writes config.json, the tokenizer files and the weights: one model.safetensors, or with
 * `sharded` one shard per group plus model.safetensors.index.json, written last so that its
 * presence marks a complete checkpoint. Returns the parameter count.
 */
export async function writeKimiCheckpoint(
  out: string,
  shape: KimiShape,
  init: KimiInit,
  opts: { vocab?: number; sharded: boolean; generator: string },
): Promise<number> {
  const ranks = bundledRanks();
  const vocab = opts.vocab ?? ranks + 256;
  const groups = kimiTensors(shape, vocab, init);
  mkdirSync(out, { recursive: true });
  await writeFileAtomic(join(out, 'config.json'), `${JSON.stringify(kimiConfig(shape, vocab, ranks), null, 2)}\n`);
  for (const f of ['tiktoken.model', 'tokenizer_config.json']) copyFileSync(join(TOKENIZER_DIR, f), join(out, f));
  const meta = { format: 'pt', generator: opts.generator };
  const params = groups.flat().reduce((n, t) => n + t.data.length, 0);
  if (!opts.sharded) {
    const [embed, ...rest] = groups[groups.length - 1];
    await writeSafetensors(join(out, 'model.safetensors'), [embed, ...groups.slice(0, -1).flat(), ...rest], meta);
    return params;
  }
  const names = groups.map((_, i) => `model-${String(i + 1).padStart(5, '0')}-of-${String(groups.length).padStart(5, '0')}.safetensors`);
  const weightMap: Record<string, string> = {};
  let bytes = 0;
  for (const [i, tensors] of groups.entries()) {
    await writeSafetensors(join(out, names[i]), tensors, meta);
    for (const t of tensors) {
      weightMap[t.name] = names[i];
      bytes += t.data.length * (t.dtype === 'BF16' ? 2 : 4);
    }
  }
  await writeFileAtomic(join(out, 'model.safetensors.index.json'), `${JSON.stringify({ metadata: { total_size: bytes }, weight_map: weightMap }, null, 2)}\n`);
  return params;
}
