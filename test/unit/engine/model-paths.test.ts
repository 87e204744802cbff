/**
 * Equivalent paths through the model must agree (random 4-layer checkpoint: KDA, MLA, KDA, MLA):
 * absorbed MLA decode vs up-projected MLA prefill, token-by-token decode vs one-pass prefill,
 * prefill in slices vs whole, chunk sizes, continuation from a forked state.
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { loadModel, type Model } from '../../../src/engine/model/model';
import { mlaDecode, mlaPrefill, type MlaWeights } from '../../../src/engine/reference/mla';
import { LatentCache } from '../../../src/engine/state/latent-cache';
import type { KimiConfig } from '../../../src/engine/model/config';
import { rng, writeRandomCheckpoint } from './random-checkpoint';

let model: Model;
let cfg: KimiConfig;
const T = 150;
let ids: Int32Array;

before(async () => {
  const { dir } = await writeRandomCheckpoint({}, 7);
  model = await loadModel(dir, { backend: 'reference' });
  cfg = model.config;
  const r = rng(3);
  ids = Int32Array.from({ length: T }, () => Math.floor(r.uniform() * cfg.vocabSize));
});

function relError(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let d = 0;
  let s = 0;
  for (let i = 0; i < a.length; i++) {
    assert.ok(Number.isFinite(a[i]), `non-finite at ${i}`);
    d = Math.max(d, Math.abs(a[i] - b[i]));
    s = Math.max(s, Math.abs(b[i]));
  }
  return d / s;
}

test('the random checkpoint has both attention kinds and both FFN kinds', () => {
  assert.deepEqual(cfg.layers.map((l) => `${l.attention}/${l.ffn}`), ['kda/dense', 'mla/moe', 'kda/moe', 'mla/moe']);
});

test('MLA absorbed decode equals MLA up-projected prefill, token by token', () => {
  const r = rng(11);
  const d = cfg.hiddenSize;
  const { numHeads: H, qkNopeHeadDim: n, qkRopeHeadDim: rr, vHeadDim: v, kvLoraRank: L } = cfg.mla;
  const rand = (len: number) => Float32Array.from({ length: len }, () => 0.2 * r.normal());
  const w: MlaWeights = { qProj: rand(H * (n + rr) * d), kvA: rand((L + rr) * d), kvNorm: rand(L).map((x) => 1 + x), kvB: rand(H * (n + v) * L), oProj: rand(d * H * v) };
  const steps = 300; // more than one cache page, so decode crosses page boundaries
  const x = rand(steps * d);
  const oneShot = mlaPrefill(cfg, w, x, steps, new LatentCache(L + rr));
  const cache = new LatentCache(L + rr);
  const split = 40;
  const head = mlaPrefill(cfg, w, x.subarray(0, split * d), split, cache);
  const decoded = new Float32Array(steps * d);
  decoded.set(head);
  for (let t = split; t < steps; t++) decoded.set(mlaDecode(cfg, w, x.subarray(t * d, (t + 1) * d), cache), t * d);
  assert.equal(cache.length, steps);
  assert.ok(relError(decoded, oneShot) < 1e-5, `decode vs prefill ${relError(decoded, oneShot)}`);
});

test('decode after prefill gives the one-pass prefill logits', async () => {
  const V = cfg.vocabSize;
  const full = await model.prefill(model.newState(), ids, { logits: 'all' });
  const state = model.newState();
  const split = 100;
  const first = await model.prefill(state, ids.subarray(0, split), { logits: 'last' });
  assert.ok(relError(first, full.subarray((split - 1) * V, split * V)) < 1e-5);
  for (let t = split; t < T; t++) {
    const logits = await model.decode(state, ids[t]);
    const e = relError(logits, full.subarray(t * V, (t + 1) * V));
    assert.ok(e < 1e-5, `position ${t}: ${e}`);
  }
  assert.equal(state.length, T);
});

test('prefill in slices, with other chunk sizes, and resumed from a fork, gives the same logits', async () => {
  const full = await model.prefill(model.newState(), ids, { logits: 'all' });
  assert.ok(relError(await model.prefill(model.newState(), ids, { logits: 'all', slice: 17 }), full) < 1e-5, 'slice 17');
  assert.ok(relError(await model.prefill(model.newState(), ids, { logits: 'all', chunk: 16 }), full) < 1e-5, 'chunk 16');

  const V = cfg.vocabSize;
  const base = model.newState();
  await model.prefill(base, ids.subarray(0, 60), { logits: 'none' });
  const a = model.forkState(base);
  const b = model.forkState(base);
  const tailA = await model.prefill(a, ids.subarray(60), { logits: 'all' });
  // Running a fork must not touch the state it was forked from, nor its sibling.
  await model.prefill(base, Int32Array.of(1, 2, 3), { logits: 'none' });
  const tailB = await model.prefill(b, ids.subarray(60), { logits: 'all' });
  assert.ok(relError(tailA, full.subarray(60 * V)) < 1e-5, 'fork a');
  assert.ok(relError(tailB, full.subarray(60 * V)) < 1e-5, 'fork b');
});

test('logits "last" and "none" return the last row and nothing', async () => {
  const V = cfg.vocabSize;
  const full = await model.prefill(model.newState(), ids.subarray(0, 30), { logits: 'all' });
  const last = await model.prefill(model.newState(), ids.subarray(0, 30), { logits: 'last', slice: 8 });
  assert.equal(last.length, V);
  assert.ok(relError(last, full.subarray(29 * V)) < 1e-5);
  assert.equal((await model.prefill(model.newState(), ids.subarray(0, 30), { logits: 'none' })).length, 0);
});

test('a token id outside the vocabulary is a user error and leaves the state untouched', async () => {
  const state = model.newState();
  await assert.rejects(() => model.prefill(state, Int32Array.of(1, cfg.vocabSize)), { name: 'UserError', message: /token id 96 at position 1/ });
  assert.equal(state.length, 0);
});
