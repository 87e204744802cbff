import { test } from 'node:test';
import assert from 'node:assert/strict';
import { argmax, pickToken, picksAtRandom, sampleToken, seededRandom, tokenPick } from '../../../src/engine/sampler';
import { chiSquare, inverseCdf, pickDistribution } from './sampling-reference';

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

const rows = [Float32Array.from([0.5, 1.5, 1.5, -2, 0.25, 1.4]), Float32Array.from({ length: 50 }, (_, i) => Math.sin(i * 1.7) * 3)];
const settings = [
  { temperature: 0.7, topP: 1, topK: 0 },
  { temperature: 1.3, topP: 0.8, topK: 0 },
  { temperature: 0.9, topP: 0.95, topK: 3 },
  { temperature: 2, topP: 0.5, topK: 100 },
];

test('sampled tokens follow softmax(logits / T) cut to top-k and top-p: chi-square over 20,000 seeded draws', () => {
  const draws = 20_000;
  for (const [r, logits] of rows.entries()) {
    for (const [k, s] of settings.entries()) {
      const dist = pickDistribution(logits, { ...s, vocab: logits.length });
      const random = seededRandom(1000 + 10 * r + k);
      const counts = new Map<number, number>();
      for (let n = 0; n < draws; n++) {
        const id = sampleToken(logits, { ...s, maxNewTokens: 1 }, random);
        counts.set(id, (counts.get(id) ?? 0) + 1);
      }
      const support = new Set(dist.map(([id]) => id));
      const outside = [...counts.keys()].filter((id) => !support.has(id));
      assert.deepEqual(outside, [], `row ${r}, ${JSON.stringify(s)}: ids outside top-k/top-p were drawn`);
      const { statistic, critical } = chiSquare(counts, dist, draws);
      assert.ok(statistic < critical, `row ${r}, ${JSON.stringify(s)}: chi-square ${statistic.toFixed(1)} ≥ ${critical.toFixed(1)} over ${dist.length} ids`);
    }
  }
});

test('a pick with draw u returns the id whose cumulative probability interval holds u', () => {
  const u = seededRandom(5);
  for (const logits of rows) {
    for (const s of settings) {
      const dist = pickDistribution(logits, { ...s, vocab: logits.length });
      for (let n = 0; n < 200; n++) {
        const uniform = u();
        assert.equal(pickToken(logits, { ...s, vocab: logits.length, uniform }), inverseCdf(dist, uniform), `u = ${uniform}, ${JSON.stringify(s)}`);
      }
    }
  }
});

test('greedy settings draw nothing', () => {
  assert.equal(picksAtRandom({ temperature: 0, topK: 0 }), false);
  assert.equal(picksAtRandom({ temperature: 1, topK: 1 }), false);
  assert.equal(picksAtRandom({ temperature: 0.1, topK: 0 }), true);
  let drawn = 0;
  tokenPick({ temperature: 1, topP: 1, topK: 1, maxNewTokens: 1 }, 10, () => ++drawn);
  assert.equal(drawn, 0);
});

test('pickToken: ties go to the lower id, the top-p cut includes the token reaching it, ids ≥ vocab never win', () => {
  const tied = Float32Array.from([1, 3, 3, 3, 0]);
  assert.equal(pickToken(tied, { temperature: 0, topP: 1, topK: 0, vocab: 5, uniform: 0 }), 1);
  // Three equal weights: the walk r = u·3 − 1 − 1 − 1 picks the tied ids in ascending order.
  assert.equal(pickToken(tied, { temperature: 1, topP: 1, topK: 3, vocab: 5, uniform: 0 }), 1);
  assert.equal(pickToken(tied, { temperature: 1, topP: 1, topK: 3, vocab: 5, uniform: 0.5 }), 2);
  assert.equal(pickToken(tied, { temperature: 1, topP: 1, topK: 3, vocab: 5, uniform: 0.99 }), 3);
  // Weights 1, 1 (of total 2): cum reaches 0.5 exactly at the first, so only id 0 is kept.
  const pair = Float32Array.from([2, 2]);
  assert.equal(pickToken(pair, { temperature: 1, topP: 0.5, topK: 0, vocab: 2, uniform: 0.99 }), 0);
  assert.equal(pickToken(pair, { temperature: 1, topP: 0.51, topK: 0, vocab: 2, uniform: 0.99 }), 1);
  const padded = Float32Array.from([0, 1, 2, 50, 60]);
  assert.equal(pickToken(padded, { temperature: 0, topP: 1, topK: 0, vocab: 3, uniform: 0 }), 2);
  for (const u of [0, 0.3, 0.999]) assert.ok(pickToken(padded, { temperature: 5, topP: 1, topK: 0, vocab: 3, uniform: u }) < 3);
});
