/**
 * The chunkwise-parallel KDA form must equal the token recurrence: random inputs, ragged last
 * chunks, a non-zero initial state, several chunk sizes, and gates down to g ≈ −20 per step
 * (cumulative −1280 over a chunk), where a naive e^{−G} would overflow.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { kdaChunked, kdaRecurrent, type KdaInputs } from '../../../src/engine/reference/kda';
import { l2normInPlace } from '../../../src/engine/reference/norms';
import { rng } from './random-checkpoint';

function randomInputs(T: number, H: number, K: number, V: number, gateScale: number, seed: number): KdaInputs {
  const r = rng(seed);
  const q = Float64Array.from({ length: T * H * K }, () => r.normal());
  const k = Float64Array.from({ length: T * H * K }, () => r.normal());
  l2normInPlace(q, T * H, K);
  l2normInPlace(k, T * H, K);
  return {
    q,
    k,
    v: Float64Array.from({ length: T * H * V }, () => r.normal()),
    g: Float64Array.from({ length: T * H * K }, () => -gateScale * r.uniform()),
    beta: Float64Array.from({ length: T * H }, () => r.uniform()),
    T,
    H,
    K,
    V,
    scale: 1 / Math.sqrt(K),
  };
}

function maxRel(a: Float64Array, b: Float64Array): number {
  let d = 0;
  let s = 0;
  for (let i = 0; i < a.length; i++) {
    assert.ok(Number.isFinite(a[i]) && Number.isFinite(b[i]), `non-finite value at ${i}: ${a[i]} vs ${b[i]}`);
    d = Math.max(d, Math.abs(a[i] - b[i]));
    s = Math.max(s, Math.abs(b[i]));
  }
  return d / s;
}

const cases = [
  { name: 'one ragged chunk', T: 37, chunk: 64, gate: 0.5, h0: false },
  { name: 'two full chunks and a ragged one, initial state', T: 150, chunk: 64, gate: 0.5, h0: true },
  { name: 'chunk 16 with sub-block boundaries', T: 70, chunk: 16, gate: 1, h0: true },
  { name: 'chunk 1 (degenerate)', T: 9, chunk: 1, gate: 1, h0: true },
  { name: 'chunk longer than the input', T: 20, chunk: 100, gate: 1, h0: true },
  { name: 'strong gates down to −20 per step', T: 130, chunk: 64, gate: 20, h0: true },
];

for (const c of cases) {
  test(`chunked KDA equals the recurrence: ${c.name}`, () => {
    const [H, K, V] = [3, 16, 12];
    const x = randomInputs(c.T, H, K, V, c.gate, c.T * 7 + c.chunk);
    const r = rng(99);
    const h0 = c.h0 ? Float64Array.from({ length: H * K * V }, () => r.normal()) : new Float64Array(H * K * V);
    const S1 = h0.slice();
    const S2 = h0.slice();
    const o1 = kdaRecurrent(x, S1);
    const o2 = kdaChunked(x, S2, c.chunk);
    assert.ok(maxRel(o2, o1) < 1e-10, `output differs: ${maxRel(o2, o1)}`);
    assert.ok(maxRel(S2, S1) < 1e-10, `final state differs: ${maxRel(S2, S1)}`);
  });
}

test('strong gates make the initial state vanish instead of overflowing', () => {
  const [T, H, K, V] = [64, 1, 8, 8];
  const x = randomInputs(T, H, K, V, 0, 5);
  x.g = new Float64Array(T * H * K).fill(-20);
  const S = new Float64Array(H * K * V).fill(1e3);
  const o = kdaChunked(x, S, 64);
  // After one step every row of the old state is scaled by e^{−20} ≈ 2e−9: only the new writes remain.
  const fresh = new Float64Array(H * K * V);
  const oFresh = kdaChunked(x, fresh, 64);
  assert.ok(maxRel(o.subarray(V), oFresh.subarray(V)) < 1e-5);
  assert.ok(S.every(Number.isFinite));
});
