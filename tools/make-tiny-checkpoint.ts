/**
 * Generates the bundled tiny checkpoint in assets/tiny-model/: a Kimi Linear model in the
 * published Hugging Face layout (config.json, model.safetensors in bf16, the bundled tokenizer),
 * with seeded random weights. It exists so that everything — packing, ingest, state caching,
 * answering, the extension — runs on any machine in seconds. Its answers are not meaningful.
 *
 *   npx tsx tools/make-tiny-checkpoint.ts [outDir]
 *
 * Deterministic: the same script writes byte-identical files.
 */
import { copyFileSync, mkdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { writeFileAtomicSync } from '../src/common/atomic';
import { writeSafetensors, type TensorToWrite } from '../src/engine/model/safetensors';
import { seededRandom } from '../src/engine/sampler';

const root = resolve(__dirname, '..');
const out = resolve(process.argv[2] ?? join(root, 'assets', 'tiny-model'));
const tokenizerDir = join(root, 'assets', 'tokenizer');

const ranksLines = readFileSync(join(tokenizerDir, 'tiktoken.model'), 'utf8').split('\n').filter((l) => l.trim() !== '').length;
const VOCAB = ranksLines + 256;
const hidden = 128;
const kdaHeads = 4;
const kdaDim = 32;
const P = kdaHeads * kdaDim;
const mlaHeads = 4;
const nope = 32;
const rope = 16;
const vDim = 32;
const kvLora = 64;
const experts = 8;
const moeInter = 64;
const denseInter = 256;
const layers: ('kda' | 'mla')[] = ['kda', 'kda', 'kda', 'mla'];

const config = {
  architectures: ['KimiLinearForCausalLM'],
  model_type: 'kimi_linear',
  dtype: 'bfloat16',
  vocab_size: VOCAB,
  hidden_size: hidden,
  intermediate_size: denseInter,
  num_hidden_layers: layers.length,
  num_attention_heads: mlaHeads,
  num_key_value_heads: mlaHeads,
  head_dim: hidden / mlaHeads,
  hidden_act: 'silu',
  rms_norm_eps: 1e-5,
  initializer_range: 0.02,
  tie_word_embeddings: false,
  use_cache: true,
  bos_token_id: ranksLines,
  eos_token_id: ranksLines + 2,
  pad_token_id: ranksLines + 255,
  // Small on purpose: the tiny model is a demo that must ingest a workspace in seconds on the
  // reference backend, so its context (and hence the packed workspace) is capped here.
  model_max_length: 8192,
  q_lora_rank: null,
  kv_lora_rank: kvLora,
  qk_nope_head_dim: nope,
  qk_rope_head_dim: rope,
  v_head_dim: vDim,
  mla_use_nope: true,
  linear_attn_config: {
    kda_layers: layers.flatMap((k, i) => (k === 'kda' ? [i + 1] : [])),
    full_attn_layers: layers.flatMap((k, i) => (k === 'mla' ? [i + 1] : [])),
    num_heads: kdaHeads,
    head_dim: kdaDim,
    short_conv_kernel_size: 4,
  },
  num_experts: experts,
  num_experts_per_token: 2,
  num_shared_experts: 1,
  moe_intermediate_size: moeInter,
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

const uniform = seededRandom(20261128);
function normal(): number {
  const u = Math.max(uniform(), 1e-12);
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * uniform());
}
const tensors: TensorToWrite[] = [];
function add(name: string, shape: number[], init: () => number, dtype: 'BF16' | 'F32' = 'BF16') {
  const n = shape.reduce((a, b) => a * b, 1);
  tensors.push({ name, shape, dtype, data: Float32Array.from({ length: n }, init) });
}
const gauss = (std: number) => () => std * normal();
const ones = (std: number) => () => 1 + std * normal();
const softplusInv = (y: number) => Math.log(Math.expm1(y));

add('model.embed_tokens.weight', [VOCAB, hidden], gauss(0.5));
layers.forEach((kind, i) => {
  const p = `model.layers.${i}`;
  add(`${p}.input_layernorm.weight`, [hidden], ones(0.1));
  add(`${p}.post_attention_layernorm.weight`, [hidden], ones(0.1));
  const a = `${p}.self_attn`;
  if (kind === 'kda') {
    for (const x of ['q', 'k', 'v']) {
      add(`${a}.${x}_proj.weight`, [P, hidden], gauss(0.08));
      add(`${a}.${x}_conv1d.weight`, [P, 1, 4], gauss(0.3));
    }
    add(`${a}.A_log`, [1, 1, kdaHeads, 1], () => Math.log(1 + 15 * uniform()), 'F32');
    add(`${a}.dt_bias`, [P], () => softplusInv(Math.exp(Math.log(1e-3) + uniform() * Math.log(100))), 'F32');
    add(`${a}.f_a_proj.weight`, [kdaDim, hidden], gauss(0.08));
    add(`${a}.f_b_proj.weight`, [P, kdaDim], gauss(0.08));
    add(`${a}.b_proj.weight`, [kdaHeads, hidden], gauss(0.08));
    add(`${a}.g_a_proj.weight`, [kdaDim, hidden], gauss(0.08));
    add(`${a}.g_b_proj.weight`, [P, kdaDim], gauss(0.08));
    add(`${a}.o_norm.weight`, [kdaDim], ones(0.1));
    add(`${a}.o_proj.weight`, [hidden, P], gauss(0.08));
  } else {
    add(`${a}.q_proj.weight`, [mlaHeads * (nope + rope), hidden], gauss(0.08));
    add(`${a}.kv_a_proj_with_mqa.weight`, [kvLora + rope, hidden], gauss(0.08));
    add(`${a}.kv_a_layernorm.weight`, [kvLora], ones(0.1));
    add(`${a}.kv_b_proj.weight`, [mlaHeads * (nope + vDim), kvLora], gauss(0.08));
    add(`${a}.o_proj.weight`, [hidden, mlaHeads * vDim], gauss(0.08));
  }
  if (i === 0) {
    add(`${p}.mlp.gate_proj.weight`, [denseInter, hidden], gauss(0.08));
    add(`${p}.mlp.up_proj.weight`, [denseInter, hidden], gauss(0.08));
    add(`${p}.mlp.down_proj.weight`, [hidden, denseInter], gauss(0.08));
  } else {
    const m = `${p}.block_sparse_moe`;
    add(`${m}.gate.weight`, [experts, hidden], gauss(0.08));
    add(`${m}.gate.e_score_correction_bias`, [experts], gauss(0.1), 'F32');
    for (let e = 0; e < experts; e++) {
      add(`${m}.experts.${e}.w1.weight`, [moeInter, hidden], gauss(0.08));
      add(`${m}.experts.${e}.w2.weight`, [hidden, moeInter], gauss(0.08));
      add(`${m}.experts.${e}.w3.weight`, [moeInter, hidden], gauss(0.08));
    }
    add(`${m}.shared_experts.gate_proj.weight`, [moeInter, hidden], gauss(0.08));
    add(`${m}.shared_experts.up_proj.weight`, [moeInter, hidden], gauss(0.08));
    add(`${m}.shared_experts.down_proj.weight`, [hidden, moeInter], gauss(0.08));
  }
});
add('model.norm.weight', [hidden], ones(0.1));
add('lm_head.weight', [VOCAB, hidden], gauss(0.08));

mkdirSync(out, { recursive: true });
writeFileAtomicSync(join(out, 'config.json'), `${JSON.stringify(config, null, 2)}\n`);
for (const f of ['tiktoken.model', 'tokenizer_config.json']) copyFileSync(join(tokenizerDir, f), join(out, f));
writeSafetensors(join(out, 'model.safetensors'), tensors, { format: 'pt', generator: 'tools/make-tiny-checkpoint.ts' }).then(() => {
  const params = tensors.reduce((n, t) => n + t.data.length, 0);
  console.log(`wrote ${out}: ${tensors.length} tensors, ${params.toLocaleString('en-US')} parameters`);
});
