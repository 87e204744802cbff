// The comparison test/gpu/hf-bf16.test.ts makes on the device, on arrays whose figures are known.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { closeness, farther, median, pooled, SLACK, top1Slack, worst, type Closeness } from '../../gpu/bf16-yardstick';
import { seededRandom } from '../../../src/engine/sampler';

const of = (errors: number[], top1Equal: number): Closeness => ({ errors: Float64Array.from(errors), top1Equal, positions: errors.length });

test('closeness: per position ‖Δ‖₂ / ‖reference‖₂, and the positions whose argmax is the reference\'s', () => {
  const reference = Float32Array.of(0, 3, 4, 0, 0, 5);
  // Row 0: norm 5; Δ = (0, 0, 0.5) keeps the top token → 0.1. Row 1: norm 5; Δ = (3, 0, −4) → 1, argmax moves to 0.
  const c = closeness(Float32Array.of(0, 3, 4.5, 3, 0, 1), reference, 3);
  assert.equal(c.positions, 2);
  assert.equal(c.top1Equal, 1);
  assert.ok(Math.abs(c.errors[0] - 0.1) < 1e-12 && Math.abs(c.errors[1] - 1) < 1e-12, String(c.errors));
});

test('closeness refuses arrays that do not line up', () => {
  assert.throws(() => closeness(new Float32Array(6), new Float32Array(4), 2), /6 logits vs 4/);
  assert.throws(() => closeness(new Float32Array(6), new Float32Array(6), 4), /not rows of 4/);
});

test('median and worst: odd and even counts, and a non-finite error is never hidden', () => {
  assert.equal(median(of([0.3, 0.1, 0.2], 3)), 0.2);
  assert.equal(median(of([0.4, 0.1, 0.2, 0.3], 4)), 0.25);
  assert.equal(worst(of([0.4, 0.1, 0.2, 0.3], 4)), 0.4);
  assert.equal(median(of([0.1, NaN, 0.1], 3)), Infinity);
  assert.equal(worst(of([0.1, Infinity], 2)), Infinity);
});

test('farther: the median may exceed transformers bf16\'s by the stated factor, no more; the max is not judged', () => {
  const theirs = of([0.1, 0.1, 0.1, 0.1], 4);
  assert.deepEqual(farther('c', of([0.05, 0.05, 0.05, 0.9], 4), theirs), []);
  assert.deepEqual(farther('c', of([0.1, 0.1, 0.1, 0.1].map((x) => x * SLACK.medianFactor * 0.999), 4), theirs), []);
  const why = farther('c', of([0.12, 0.12, 0.12, 0.12], 4), theirs);
  assert.equal(why.length, 1);
  assert.match(why[0], /^c: median relative error 1\.20e-1 > 1\.1 × transformers bf16's 1\.00e-1$/);
  assert.equal(farther('c', of([0.01, Infinity, 0.01], 3), of([0.1, 0.1, 0.1], 3)).length, 1);
  assert.equal(farther('c', of([0.01, NaN, 0.01], 3), of([0.1, 0.1, 0.1], 3)).length, 1);
});

test('farther: top-1 agreement may fall short by one position or 1% of them, whichever is more', () => {
  assert.equal(top1Slack(1), 1);
  assert.equal(top1Slack(100), 1);
  assert.equal(top1Slack(1024), 11);
  const e = (n: number, x: number): number[] => Array.from({ length: n }, () => x);
  const theirs = of(e(1024, 0.1), 950);
  assert.deepEqual(farther('c', of(e(1024, 0.05), 939), theirs), []);
  const why = farther('c', of(e(1024, 0.05), 938), theirs);
  assert.deepEqual(why, ['c: top-1 equal to the reference at 938 of 1024 positions, transformers bf16 at 950 (11 fewer allowed)']);
  assert.deepEqual(farther('c', of([0.05], 0), of([0.1], 1)), []);
  assert.throws(() => farther('c', of([0], 1), of([0, 0], 1)), /1 positions vs 2/);
});

test('pooled: the cases\' positions together', () => {
  const p = pooled([of([0.02], 1), of([0.07, 0.01, 0.03], 2)]);
  assert.deepEqual([...p.errors], [0.02, 0.07, 0.01, 0.03]);
  assert.equal(p.top1Equal, 3);
  assert.equal(p.positions, 4);
  assert.equal(median(p), 0.025);
});

/** x rounded to `bits` mantissa bits (bf16 keeps 7), nearest even. */
function roundMantissa(x: number, bits: number): number {
  if (x === 0) return 0;
  const e = Math.floor(Math.log2(Math.abs(x)));
  const q = 2 ** (e - bits);
  const r = x / q;
  const f = Math.floor(r);
  const n = r - f > 0.5 || (r - f === 0.5 && f % 2 !== 0) ? f + 1 : f;
  return n * q;
}

test('a computation rounded as coarsely as transformers bf16 passes, one with router-flip outliers too; a coarser one fails', () => {
  const rand = seededRandom(7);
  const P = 400;
  const V = 257;
  const reference = Float32Array.from({ length: P * V }, () => 4 * (rand() + rand() + rand() - 1.5));
  // Logits computed from activations rounded at a few stages: an error of a few units of the last
  // place, per entry, at the given mantissa width.
  const run = (bits: number, seed: number): Float32Array => {
    const r = seededRandom(seed);
    return Float32Array.from(reference, (x) => roundMantissa(x + (r() - 0.5) * 3 * 2 ** (Math.floor(Math.log2(Math.abs(x) + 1e-30)) - bits), bits));
  };
  const hf = closeness(run(7, 1), reference, V);
  const same = closeness(run(7, 2), reference, V);
  const finer = closeness(run(10, 3), reference, V);
  const coarser = closeness(run(4, 4), reference, V);
  // Same precision, but 5 positions where another expert was picked: their logits are another row's.
  const flipped = run(7, 5);
  for (const p of [3, 50, 120, 200, 399]) flipped.set(reference.subarray(0, V), p * V);
  const withFlips = closeness(flipped, reference, V);
  assert.ok(median(hf) > 0 && hf.top1Equal < P, 'the bf16-like run must differ from the reference at all');
  assert.ok(worst(withFlips) > 10 * worst(hf), 'the flipped positions must stand out');
  assert.deepEqual(farther('finer', finer, hf), []);
  assert.deepEqual(farther('same precision', same, hf), []);
  assert.deepEqual(farther('same precision with 5 router flips', withFlips, hf), []);
  const why = farther('coarser', coarser, hf);
  assert.ok(why.some((w) => /median relative error/.test(w)), why.join('; '));
  assert.ok(why.some((w) => /top-1/.test(w)), why.join('; '));
});
