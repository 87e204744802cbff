import { test } from 'node:test';
import assert from 'node:assert/strict';
import { argmax, sampleToken, seededRandom } from '../../../src/engine/sampler';

const logits = Float32Array.from([0.1, 2.0, 1.9, -1, 2.0]);

test('greedy picks the first of the largest logits', () => {
  assert.equal(argmax(logits), 1);
  assert.equal(sampleToken(logits, { temperature: 0, topP: 1, topK: 0, maxNewTokens: 1 }, seededRandom(1)), 1);
});

test('top-k 2 only ever returns the two best tokens; the seed makes it repeatable', () => {
  const opts = { temperature: 1, topP: 1, topK: 2, maxNewTokens: 1 };
  const r = seededRandom(42);
  const seen = new Set(Array.from({ length: 200 }, () => sampleToken(logits, opts, r)));
  assert.deepEqual([...seen].sort(), [1, 4]);
  const a = Array.from({ length: 20 }, ((rr) => () => sampleToken(logits, opts, rr))(seededRandom(7)));
  const b = Array.from({ length: 20 }, ((rr) => () => sampleToken(logits, opts, rr))(seededRandom(7)));
  assert.deepEqual(a, b);
});

test('top-p keeps the smallest set of tokens reaching the probability mass', () => {
  const peaked = Float32Array.from([5, 0, 0, 0]);
  const r = seededRandom(3);
  for (let i = 0; i < 100; i++) assert.equal(sampleToken(peaked, { temperature: 1, topP: 0.9, topK: 0, maxNewTokens: 1 }, r), 0);
  const flat = Float32Array.from([1, 1, 1, 1]);
  const seen = new Set(Array.from({ length: 400 }, () => sampleToken(flat, { temperature: 1, topP: 1, topK: 0, maxNewTokens: 1 }, r)));
  assert.equal(seen.size, 4);
});
