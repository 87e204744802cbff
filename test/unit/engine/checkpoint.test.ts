/**
 * Checkpoint folders: single file and sharded with an index, names and shapes checked against
 * the config, lazy reads, and each kind of mismatch reported with the file and tensor.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Checkpoint, expectedTensors } from '../../../src/engine/model/checkpoint';
import { parseConfig } from '../../../src/engine/model/config';
import { writeSafetensors, type TensorToWrite } from '../../../src/engine/model/safetensors';
import { randomTensors, tinyConfigJson } from './random-checkpoint';

const config = parseConfig(tinyConfigJson());
const tensors = randomTensors(config, 3);

async function folder(files: Record<string, TensorToWrite[]>, index?: Record<string, string>): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'klc-ck-'));
  for (const [name, ts] of Object.entries(files)) await writeSafetensors(join(dir, name), ts);
  if (index) writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: index }));
  return dir;
}

async function openFails(dir: string, message: RegExp): Promise<void> {
  await assert.rejects(Checkpoint.open(dir, config), (e: Error) => {
    assert.equal(e.name, 'UserError');
    assert.match(e.message, message);
    return true;
  });
}

test('the expected tensor list follows the config (4 layers: KDA, MLA, KDA, MLA)', () => {
  const names = [...expectedTensors(config).keys()];
  assert.equal(names.filter((n) => n.endsWith('q_conv1d.weight')).length, 2);
  assert.equal(names.filter((n) => n.endsWith('kv_b_proj.weight')).length, 2);
  assert.ok(names.includes('model.layers.0.mlp.gate_proj.weight'));
  assert.ok(names.includes('model.layers.3.block_sparse_moe.experts.3.w2.weight'));
  assert.ok(!names.includes('model.layers.0.block_sparse_moe.gate.weight'));
  // 3 globals + 4·2 norms + 2·15 KDA + 2·5 MLA + 3 dense + 3·(2 + 4·3 + 3) MoE
  assert.equal(names.length, 3 + 8 + 30 + 10 + 3 + 3 * 17);
});

test('a single-file checkpoint opens and reads tensors by name', async () => {
  const dir = await folder({ 'model.safetensors': tensors });
  const ck = await Checkpoint.open(dir, config);
  try {
    const want = tensors.find((t) => t.name === 'model.layers.1.self_attn.kv_b_proj.weight');
    assert.ok(want);
    assert.deepEqual(Array.from(await ck.tensor(want.name)), Array.from(want.data));
    assert.equal(ck.parameters, tensors.reduce((n, t) => n + t.data.length, 0));
    assert.deepEqual(ck.names.sort(), tensors.map((t) => t.name).sort());
  } finally {
    await ck.close();
  }
});

test('a sharded checkpoint opens through its index, with 2-D conv weights and flat A_log', async () => {
  const reshaped = tensors.map((t) => {
    if (t.name.endsWith('conv1d.weight')) return { ...t, shape: [t.shape[0], t.shape[2]] };
    if (t.name.endsWith('A_log')) return { ...t, shape: [t.shape[2]] };
    return t;
  });
  const half = Math.floor(reshaped.length / 2);
  const shards = { 'model-00001-of-00002.safetensors': reshaped.slice(0, half), 'model-00002-of-00002.safetensors': reshaped.slice(half) };
  const index: Record<string, string> = {};
  for (const [file, ts] of Object.entries(shards)) for (const t of ts) index[t.name] = file;
  const ck = await Checkpoint.open(await folder(shards, index), config);
  try {
    const last = reshaped[reshaped.length - 1];
    assert.deepEqual(Array.from(await ck.tensor(last.name)), Array.from(last.data));
    assert.deepEqual(ck.info('model.layers.0.self_attn.q_conv1d.weight').shape, [16, 4]);
  } finally {
    await ck.close();
  }
});

test('a missing tensor is named', async () => {
  const dir = await folder({ 'model.safetensors': tensors.filter((t) => t.name !== 'model.layers.2.self_attn.dt_bias') });
  await openFails(dir, /lacks 1 tensor\(s\) that config.json requires: model.layers.2.self_attn.dt_bias/);
});

test('a tensor of the wrong shape is named with both shapes', async () => {
  const bad = tensors.map((t) => (t.name === 'model.norm.weight' ? { ...t, shape: [16, 2] } : t));
  await openFails(await folder({ 'model.safetensors': bad }), /tensor "model.norm.weight" has shape \[16,2\], expected \[32\]/);
});

test('an unknown tensor name is rejected', async () => {
  const extra: TensorToWrite = { name: 'model.layers.9.self_attn.q_proj.weight', dtype: 'F32', shape: [1], data: new Float32Array(1) };
  await openFails(await folder({ 'model.safetensors': [...tensors, extra] }), /tensor "model.layers.9.self_attn.q_proj.weight" is not part of this model/);
});

test('an index that maps a tensor to the wrong shard is rejected', async () => {
  const shards = { 'a.safetensors': tensors.slice(0, 10), 'b.safetensors': tensors.slice(10) };
  const index: Record<string, string> = {};
  for (const [file, ts] of Object.entries(shards)) for (const t of ts) index[t.name] = file;
  index[tensors[0].name] = 'b.safetensors';
  await openFails(await folder(shards, index), new RegExp(`holds "${tensors[0].name.replace(/\./g, '\\.')}", but model.safetensors.index.json maps it to b.safetensors`));
});

test('an index naming a shard that does not exist is rejected', async () => {
  const dir = await folder({ 'a.safetensors': tensors });
  const index: Record<string, string> = {};
  for (const t of tensors) index[t.name] = 'a.safetensors';
  index[tensors[5].name] = 'gone.safetensors';
  writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ weight_map: index }));
  await openFails(dir, /cannot open .*gone\.safetensors \(ENOENT\)/);
});

test('a folder without weights says what it looked for', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'klc-ck-'));
  await openFails(dir, /neither model.safetensors nor model.safetensors.index.json/);
  rmSync(dir, { recursive: true });
});

test('the transformers save_pretrained spelling of the dense MLP is accepted', async () => {
  const renamed = tensors.map((t) => (t.name.startsWith('model.layers.0.mlp.') ? { ...t, name: t.name.replace('.mlp.', '.block_sparse_moe.') } : t));
  const ck = await Checkpoint.open(await folder({ 'model.safetensors': renamed }), config);
  try {
    assert.equal((await ck.tensor('model.layers.0.mlp.up_proj.weight')).length, 48 * 32);
  } finally {
    await ck.close();
  }
});
