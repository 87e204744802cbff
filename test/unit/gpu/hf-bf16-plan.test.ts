// What test/gpu/hf_bf16_reference.py will hand our engine on the device, checked here without torch
// (its --plan output): the checkpoints it copies exist, the cases cover what the check promises, and
// the wide checkpoint it generates is one our loader accepts, tensor for tensor.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseConfig } from '../../../src/engine/model/config';
import { expectedTensors } from '../../../src/engine/model/checkpoint';

const REPO = resolve(__dirname, '..', '..', '..');

interface Plan {
  cases: { name: string; kind: 'prefill' | 'greedy'; rows: number; length: number; steps?: number }[];
  sources: Record<string, string>;
  wide_config: unknown;
  wide_layout: [string, number[]][];
}

const plan = JSON.parse(execFileSync('python3', [join(REPO, 'test', 'gpu', 'hf_bf16_reference.py'), '--plan'], { encoding: 'utf8' })) as Plan;

test('the checkpoints it copies are in the repository', () => {
  assert.deepEqual(Object.keys(plan.sources).sort(), ['tiny-kimi-public', 'tiny-model']);
  for (const dir of Object.values(plan.sources)) {
    for (const file of ['config.json', 'model.safetensors']) assert.ok(existsSync(join(REPO, dir, file)), `${dir}/${file}`);
  }
});

test('the cases: a prefill of at least 512 tokens, a batch, greedy steps through the cache; names unique', () => {
  const names = plan.cases.map((c) => c.name);
  assert.equal(new Set(names).size, names.length);
  assert.ok(plan.cases.some((c) => c.kind === 'prefill' && c.rows === 1 && c.length >= 512));
  assert.ok(plan.cases.some((c) => c.kind === 'prefill' && c.rows >= 2));
  assert.ok(plan.cases.some((c) => c.kind === 'greedy' && (c.steps ?? 0) >= 16));
});

test('the wide checkpoint has real head widths and exactly the tensors our loader expects for its config', () => {
  const c = parseConfig(plan.wide_config, 'wide/config.json');
  assert.ok(c.hiddenSize >= 1024);
  assert.equal(c.kda.headDim, 128);
  assert.equal(c.mla.qkNopeHeadDim, 128);
  assert.equal(c.mla.vHeadDim, 128);
  assert.equal(c.mla.kvLoraRank, 512);
  assert.deepEqual(
    c.layers.map((l) => `${l.attention}/${l.ffn}`),
    ['kda/dense', 'kda/moe', 'kda/moe', 'mla/moe'],
  );
  const want = expectedTensors(c);
  const got = new Map(plan.wide_layout);
  assert.equal(got.size, plan.wide_layout.length, 'a tensor name appears twice');
  assert.deepEqual([...got.keys()].sort(), [...want.keys()].sort());
  for (const [name, shape] of got) {
    assert.ok(want.get(name)?.some((s) => s.length === shape.length && s.every((x, i) => x === shape[i])), `${name}: shape [${shape}] not among [${JSON.stringify(want.get(name))}]`);
  }
});
