/**
 * A decode step of several sequences at once (Model.decodeBatch / decodeAndPick) against one
 * decode call per sequence, on the bundled tiny checkpoint with the reference and onnx backends.
 * The sequences have different lengths: forked from one prefix and continued with different tokens.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadModel, type Model } from '../../../src/engine/model/model';
import type { TokenPick } from '../../../src/engine/sampler';
import type { SequenceState } from '../../../src/engine/state/types';
import { bundledModelDir } from '../../../src/common/package-root';
import { relError } from '../../golden/golden-data';
import { inverseCdf, pickDistribution } from './sampling-reference';

const PREFIX = Int32Array.from({ length: 37 }, (_, i) => (i * 53 + 11) % 1000);
/** Tokens each sequence is continued with after the prefix: three different lengths. */
const CONTINUATIONS = [[], [7], [12, 99, 401]];
/** The token each sequence decodes next, in two steps. */
const STEPS = [Int32Array.of(5, 17, 230), Int32Array.of(64, 3, 777)];

/** Three states forked from one prefix and continued differently, plus an independent twin of each. */
async function sequences(model: Model): Promise<{ batch: SequenceState[]; single: SequenceState[] }> {
  const base = model.newState();
  await model.prefill(base, PREFIX, { logits: 'none' });
  const batch: SequenceState[] = [];
  for (const ids of CONTINUATIONS) {
    const s = model.forkState(base);
    for (const id of ids) await model.decode(s, id);
    batch.push(s);
  }
  return { batch, single: batch.map((s) => model.forkState(s)) };
}

function assertStatesEqual(model: Model, a: SequenceState, b: SequenceState, tol: number, what: string): void {
  model.syncState(a);
  model.syncState(b);
  assert.equal(a.length, b.length, `${what}: length`);
  a.layers.forEach((la, i) => {
    const lb = b.layers[i];
    if (la.kind === 'kda' && lb.kind === 'kda') {
      assert.ok(relError(la.S, lb.S) <= tol, `${what}: layer ${i} S differs by ${relError(la.S, lb.S)}`);
      assert.ok(relError(la.conv, lb.conv) <= tol, `${what}: layer ${i} conv differs by ${relError(la.conv, lb.conv)}`);
    } else if (la.kind === 'mla' && lb.kind === 'mla') {
      assert.equal(la.cache.length, lb.cache.length, `${what}: layer ${i} cache length`);
      const d = relError(la.cache.toArray(), lb.cache.toArray());
      assert.ok(d <= tol, `${what}: layer ${i} latent cache differs by ${d}`);
    } else assert.fail(`${what}: layer ${i} kinds ${la.kind} vs ${lb.kind}`);
  });
}

for (const [backend, tol] of [['reference', 1e-6], ['onnx', 1e-5]] as const) {
  test(`${backend}: decodeBatch of three sequences of different lengths equals three decode calls`, async () => {
    const model = await loadModel(bundledModelDir(), { backend, log: () => {} });
    try {
      const { batch, single } = await sequences(model);
      assert.deepEqual(batch.map((s) => s.length), [37, 38, 40]);
      const V = model.config.vocabSize;
      for (const [step, ids] of STEPS.entries()) {
        const together = await model.decodeBatch(batch, ids);
        assert.equal(together.length, 3 * V);
        for (let i = 0; i < 3; i++) {
          const alone = await model.decode(single[i], ids[i]);
          const row = together.subarray(i * V, (i + 1) * V);
          assert.ok(relError(row, alone) <= tol, `step ${step}, sequence ${i}: ${relError(row, alone)}`);
        }
      }
      batch.forEach((s, i) => assertStatesEqual(model, s, single[i], tol, `sequence ${i}`));
    } finally {
      await model.dispose();
    }
  });
}

test('decodeAndPick picks each row by the sampling definition over its logits, within the vocabulary limit', async () => {
  const model = await loadModel(bundledModelDir(), { backend: 'reference' });
  try {
    const { batch, single } = await sequences(model);
    const V = model.config.vocabSize;
    const picks: TokenPick[] = [
      { temperature: 0, topP: 1, topK: 0, vocab: V, uniform: 0 },
      { temperature: 0.8, topP: 0.9, topK: 40, vocab: V, uniform: 0.37 },
      { temperature: 0, topP: 1, topK: 0, vocab: 100, uniform: 0 },
    ];
    const got = await model.decodeAndPick(batch, STEPS[0], picks);
    const logits = await model.decodeBatch(single, STEPS[0]);
    // Independent of src/engine/sampler: a plain argmax for greedy rows, the inverse CDF of the
    // top-k/top-p softmax (test/unit/engine/sampling-reference.ts) for the sampled one.
    const want = picks.map((p, i) => {
      const row = logits.subarray(i * V, i * V + Math.min(p.vocab, V));
      if (p.temperature === 0) return row.reduce((best, x, j) => (x > row[best] ? j : best), 0);
      return inverseCdf(pickDistribution(row, p), p.uniform);
    });
    assert.deepEqual([...got], want);
    assert.ok(got[2] < 100);
    batch.forEach((s, i) => assertStatesEqual(model, s, single[i], 0, `sequence ${i}`));
  } finally {
    await model.dispose();
  }
});

test('a batch refuses mismatched ids and the same state twice', async () => {
  const model = await loadModel(bundledModelDir(), { backend: 'reference' });
  try {
    const s = model.newState();
    await model.prefill(s, PREFIX.subarray(0, 4), { logits: 'none' });
    const t = model.forkState(s);
    await assert.rejects(model.decodeBatch([s, t], Int32Array.of(1)), /2 sequences but 1 token ids/);
    await assert.rejects(model.decodeBatch([s, s], Int32Array.of(1, 2)), /same sequence state appears twice/);
    assert.equal(s.length, 4);
  } finally {
    await model.dispose();
  }
});
