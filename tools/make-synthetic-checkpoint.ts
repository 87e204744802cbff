/**
 * Generates a larger synthetic Kimi Linear checkpoint (≈178M parameters) for benchmarks: the
 * published Hugging Face layout with one bf16 safetensors shard per layer plus
 * model.safetensors.index.json, config.json and the bundled tokenizer. Layers 1–3 and 5–7
 * (1-based) are KDA, 4 and 8 MLA; layer 0's FFN is dense, the rest MoE (8 experts, top 2, one
 * shared). Seeded random weights, so the same command writes byte-identical files; the answers
 * of such a model mean nothing, only its shapes and cost are real.
 *
 *   npx tsx tools/make-synthetic-checkpoint.ts [outDir]     (default .cache/synthetic-kimi-178m)
 */
import { copyFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { writeFileAtomic } from '../src/common/atomic';
import { writeSafetensors, type TensorToWrite } from '../src/engine/model/safetensors';
import { seededRandom } from '../src/engine/sampler';

export const SYNTHETIC_DIR = resolve(__dirname, '..', '.cache', 'synthetic-kimi-178m');

const root = resolve(__dirname, '..');
const tokenizerDir = join(root, 'assets', 'tokenizer');

const VOCAB = 16384;
const hidden = 1024;
const kdaHeads = 8;
const kdaDim = 128;
const P = kdaHeads * kdaDim;
const mlaHeads = 8;
const nope = 128;
const rope = 64;
const vDim = 128;
const kvLora = 512;
const experts = 8;
const moeInter = 512;
const denseInter = 2816;
const layers: ('kda' | 'mla')[] = ['kda', 'kda', 'kda', 'mla', 'kda', 'kda', 'kda', 'mla'];

function config(specialBase: number) {
  return {
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
    // The bundled tokenizer's special ids, so that the CLI can also talk to this model.
    bos_token_id: specialBase,
    eos_token_id: specialBase + 2,
    pad_token_id: specialBase + 255,
    model_max_length: 1048576,
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
}

/** Writes the checkpoint into `out` unless a complete one is there; returns the parameter count written (0 if it existed). */
export async function makeSyntheticCheckpoint(out = SYNTHETIC_DIR): Promise<number> {
  const index = join(out, 'model.safetensors.index.json');
  if (existsSync(index)) return 0;
  const uniform = seededRandom(20261128);
  const normal = () => Math.sqrt(-2 * Math.log(Math.max(uniform(), 1e-12))) * Math.cos(2 * Math.PI * uniform());
  // Linear weights scaled by 1/sqrt(fan-in) keep activations of order one through the layers.
  const lin = (cols: number) => () => normal() / Math.sqrt(cols);
  const ones = () => 1 + 0.1 * normal();
  const softplusInv = (y: number) => Math.log(Math.expm1(y));

  mkdirSync(out, { recursive: true });
  const shards: TensorToWrite[][] = [];
  let shard: TensorToWrite[] = [];
  let params = 0;
  const add = (name: string, shape: number[], init: () => number, dtype: 'BF16' | 'F32' = 'BF16') => {
    const n = shape.reduce((a, b) => a * b, 1);
    shard.push({ name, shape, dtype, data: Float32Array.from({ length: n }, init) });
    params += n;
  };
  const linear = (name: string, rows: number, cols: number) => add(name, [rows, cols], lin(cols));
  const swiglu = (prefix: string, [g, u, d]: string[], inner: number) => {
    linear(`${prefix}${g}.weight`, inner, hidden);
    linear(`${prefix}${u}.weight`, inner, hidden);
    linear(`${prefix}${d}.weight`, hidden, inner);
  };

  add('model.embed_tokens.weight', [VOCAB, hidden], () => normal());
  add('model.norm.weight', [hidden], ones);
  linear('lm_head.weight', VOCAB, hidden);
  shards.push(shard);
  for (const [i, kind] of layers.entries()) {
    shard = [];
    const p = `model.layers.${i}.`;
    add(`${p}input_layernorm.weight`, [hidden], ones);
    add(`${p}post_attention_layernorm.weight`, [hidden], ones);
    const a = `${p}self_attn.`;
    if (kind === 'kda') {
      for (const x of ['q', 'k', 'v']) {
        linear(`${a}${x}_proj.weight`, P, hidden);
        add(`${a}${x}_conv1d.weight`, [P, 1, 4], () => 0.3 * normal());
      }
      add(`${a}A_log`, [1, 1, kdaHeads, 1], () => Math.log(1 + 15 * uniform()), 'F32');
      add(`${a}dt_bias`, [P], () => softplusInv(Math.exp(Math.log(1e-3) + uniform() * Math.log(100))), 'F32');
      linear(`${a}f_a_proj.weight`, kdaDim, hidden);
      linear(`${a}f_b_proj.weight`, P, kdaDim);
      linear(`${a}b_proj.weight`, kdaHeads, hidden);
      linear(`${a}g_a_proj.weight`, kdaDim, hidden);
      linear(`${a}g_b_proj.weight`, P, kdaDim);
      add(`${a}o_norm.weight`, [kdaDim], ones);
      linear(`${a}o_proj.weight`, hidden, P);
    } else {
      linear(`${a}q_proj.weight`, mlaHeads * (nope + rope), hidden);
      linear(`${a}kv_a_proj_with_mqa.weight`, kvLora + rope, hidden);
      add(`${a}kv_a_layernorm.weight`, [kvLora], ones);
      linear(`${a}kv_b_proj.weight`, mlaHeads * (nope + vDim), kvLora);
      linear(`${a}o_proj.weight`, hidden, mlaHeads * vDim);
    }
    if (i === 0) {
      swiglu(`${p}mlp.`, ['gate_proj', 'up_proj', 'down_proj'], denseInter);
    } else {
      const m = `${p}block_sparse_moe.`;
      linear(`${m}gate.weight`, experts, hidden);
      add(`${m}gate.e_score_correction_bias`, [experts], () => 0.1 * normal(), 'F32');
      for (let e = 0; e < experts; e++) swiglu(`${m}experts.${e}.`, ['w1', 'w3', 'w2'], moeInter);
      swiglu(`${m}shared_experts.`, ['gate_proj', 'up_proj', 'down_proj'], moeInter);
    }
    shards.push(shard);
  }

  const names = shards.map((_, s) => `model-${String(s + 1).padStart(5, '0')}-of-${String(shards.length).padStart(5, '0')}.safetensors`);
  const weightMap: Record<string, string> = {};
  let bytes = 0;
  for (const [s, tensors] of shards.entries()) {
    await writeSafetensors(join(out, names[s]), tensors, { format: 'pt', generator: 'tools/make-synthetic-checkpoint.ts' });
    for (const t of tensors) {
      weightMap[t.name] = names[s];
      bytes += t.data.length * (t.dtype === 'BF16' ? 2 : 4);
    }
  }
  const ranks = readFileSync(join(tokenizerDir, 'tiktoken.model'), 'utf8').split('\n').filter((l) => l.trim() !== '').length;
  await writeFileAtomic(join(out, 'config.json'), `${JSON.stringify(config(ranks), null, 2)}\n`);
  for (const f of ['tiktoken.model', 'tokenizer_config.json']) copyFileSync(join(tokenizerDir, f), join(out, f));
  // The index last: its presence marks a complete checkpoint.
  await writeFileAtomic(index, `${JSON.stringify({ metadata: { total_size: bytes }, weight_map: weightMap }, null, 2)}\n`);
  return params;
}

if (require.main === module) {
  const out = resolve(process.argv[2] ?? SYNTHETIC_DIR);
  makeSyntheticCheckpoint(out).then((n) => {
    console.log(n > 0 ? `wrote ${out}: ${n.toLocaleString('en-US')} parameters` : `${out} already holds a complete checkpoint`);
  });
}
