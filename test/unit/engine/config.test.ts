/**
 * config.json parsing: the published 48B config gives the documented layer map; aliases are
 * accepted; every bad value is a UserError naming config.json and the field.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig, parseConfig } from '../../../src/engine/model/config';
import { tinyConfigJson } from './random-checkpoint';

/** The architecture fields of Kimi-Linear-48B-A3B's config.json (spec §1). */
const published = {
  model_type: 'kimi_linear',
  vocab_size: 163840,
  hidden_size: 2304,
  num_hidden_layers: 27,
  num_attention_heads: 32,
  num_key_value_heads: 32,
  head_dim: 72,
  q_lora_rank: null,
  kv_lora_rank: 512,
  qk_nope_head_dim: 128,
  qk_rope_head_dim: 64,
  v_head_dim: 128,
  mla_use_nope: true,
  hidden_act: 'silu',
  intermediate_size: 9216,
  moe_intermediate_size: 1024,
  num_experts: 256,
  num_experts_per_token: 8,
  num_shared_experts: 1,
  first_k_dense_replace: 1,
  moe_layer_freq: 1,
  moe_router_activation_func: 'sigmoid',
  moe_renormalize: true,
  routed_scaling_factor: 2.446,
  use_grouped_topk: true,
  num_expert_group: 1,
  topk_group: 1,
  num_nextn_predict_layers: 0,
  rms_norm_eps: 1e-5,
  tie_word_embeddings: false,
  bos_token_id: 163584,
  eos_token_id: 163586,
  pad_token_id: 163839,
  model_max_length: 1048576,
  linear_attn_config: {
    kda_layers: [1, 2, 3, 5, 6, 7, 9, 10, 11, 13, 14, 15, 17, 18, 19, 21, 22, 23, 25, 26],
    full_attn_layers: [4, 8, 12, 16, 20, 24, 27],
    num_heads: 32,
    head_dim: 128,
    short_conv_kernel_size: 4,
  },
};

test('the published 48B config gives MLA at 0-based 3, 7, …, 23, 26 and MoE from layer 1', () => {
  const c = parseConfig(published);
  const mla = c.layers.flatMap((l, i) => (l.attention === 'mla' ? [i] : []));
  assert.deepEqual(mla, [3, 7, 11, 15, 19, 23, 26]);
  assert.equal(c.layers.filter((l) => l.attention === 'kda').length, 20);
  assert.deepEqual(c.layers.map((l) => l.ffn).slice(0, 3), ['dense', 'moe', 'moe']);
  assert.equal(c.layers.filter((l) => l.ffn === 'moe').length, 26);
  assert.deepEqual(c.kda, { numHeads: 32, headDim: 128, convKernel: 4 });
  assert.equal(c.mla.kvLoraRank, 512);
  assert.equal(c.moe.topK, 8);
  assert.deepEqual(c.eosTokenIds, [163586]);
  assert.equal(c.maxPositionEmbeddings, 1048576);
});

test('transformers aliases are accepted', () => {
  const json: Record<string, unknown> = { ...tinyConfigJson(), num_local_experts: 4, num_experts_per_tok: 2, n_shared_experts: 1, norm_topk_prob: false, n_group: 1 };
  for (const k of ['num_experts', 'num_experts_per_token', 'num_shared_experts', 'moe_renormalize', 'num_expert_group']) delete json[k];
  const c = parseConfig(json);
  assert.deepEqual([c.moe.numExperts, c.moe.topK, c.moe.numSharedExperts, c.moe.renormalize], [4, 2, 1, false]);
});

test('moe_layer_freq and first_k_dense_replace place the dense layers', () => {
  const c = parseConfig(tinyConfigJson({ first_k_dense_replace: 0, moe_layer_freq: 2 }));
  assert.deepEqual(c.layers.map((l) => l.ffn), ['moe', 'dense', 'moe', 'dense']);
});

test('eos_token_id may be a list', () => {
  assert.deepEqual(parseConfig(tinyConfigJson({ eos_token_id: [94, 93] })).eosTokenIds, [94, 93]);
});

const bad: [string, Record<string, unknown>, RegExp][] = [
  ['model_type', { model_type: 'llama' }, /"model_type" must be "kimi_linear"/],
  ['hidden_size missing', { hidden_size: undefined }, /"hidden_size" is missing/],
  ['hidden_size not integer', { hidden_size: 32.5 }, /"hidden_size" must be an integer/],
  ['vocab_size zero', { vocab_size: 0 }, /"vocab_size" must be ≥ 1/],
  ['rms_norm_eps', { rms_norm_eps: -1 }, /"rms_norm_eps" must be > 0/],
  ['hidden_act', { hidden_act: 'gelu' }, /"hidden_act" must be "silu"/],
  ['mla_use_nope', { mla_use_nope: false }, /"mla_use_nope" must be true/],
  ['q_lora_rank', { q_lora_rank: 64 }, /"q_lora_rank" must be null/],
  ['kv heads', { num_key_value_heads: 1 }, /"num_key_value_heads" must equal num_attention_heads/],
  ['router', { moe_router_activation_func: 'softmax' }, /"moe_router_activation_func" must be "sigmoid"/],
  ['mtp', { num_nextn_predict_layers: 1 }, /"num_nextn_predict_layers" must be 0/],
  ['topk', { num_experts_per_token: 5 }, /"num_experts_per_token" \(5\) exceeds num_experts \(4\)/],
  ['groups', { num_expert_group: 3 }, /"num_expert_group" \(3\) must divide num_experts/],
  ['pad id', { pad_token_id: 96 }, /"pad_token_id" \(96\) must be < vocab_size/],
  ['eos id', { eos_token_id: 500 }, /"eos_token_id" \(500\) must be < vocab_size/],
  ['linear_attn_config', { linear_attn_config: 'kda' }, /"linear_attn_config" must be an object/],
];
for (const [name, patch, message] of bad) {
  test(`bad config (${name}) is a UserError naming the field`, () => {
    const json = { ...tinyConfigJson(), ...patch };
    assert.throws(() => parseConfig(json, '/m/config.json'), (e: Error) => {
      assert.equal(e.name, 'UserError');
      assert.match(e.message, /^\/m\/config\.json: /);
      assert.match(e.message, message);
      return true;
    });
  });
}

const lin = (patch: Record<string, unknown>) => ({ linear_attn_config: { ...(tinyConfigJson().linear_attn_config as object), ...patch } });
const badLayers: [string, Record<string, unknown>, RegExp][] = [
  ['0-based list', lin({ kda_layers: [0, 2] }), /"linear_attn_config.kda_layers" holds layer 0, outside 1..num_hidden_layers \(4\); the lists are 1-based/],
  ['layer twice', lin({ full_attn_layers: [2, 3, 4] }), /"linear_attn_config.full_attn_layers" names layer 3 twice/],
  ['layer missing', lin({ full_attn_layers: [2] }), /must cover every layer 1..4; missing 4/],
  ['not integers', lin({ kda_layers: ['1', 3] }), /"linear_attn_config.kda_layers" must hold integers only/],
  ['head_dim', lin({ head_dim: 0 }), /"linear_attn_config.head_dim" must be ≥ 1/],
];
for (const [name, patch, message] of badLayers) {
  test(`bad layer lists (${name}) are a UserError naming the field`, () => {
    assert.throws(() => parseConfig({ ...tinyConfigJson(), ...patch }), { name: 'UserError', message });
  });
}

test('loadConfig names the file when it is missing or not JSON', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'klc-cfg-'));
  await assert.rejects(loadConfig(dir), { name: 'UserError', message: /cannot read .*config\.json \(ENOENT\)/ });
  writeFileSync(join(dir, 'config.json'), '{"model_type": ');
  await assert.rejects(loadConfig(dir), { name: 'UserError', message: /config\.json is not valid JSON/ });
});
