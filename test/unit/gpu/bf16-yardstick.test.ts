// The comparison test/gpu/hf-bf16.test.ts makes on the device, on arrays whose figures are known.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { closeness, farther, pooled, SLACK, top1Slack, type Closeness } from '../../gpu/bf16-yardstick';
import { seededRandom } from '../../../src/engine/sampler';

test('closeness: max |Δ| over max |fp32|, and the positions whose argmax is fp32s', () => {
  const fp32 = Float32Array.of(1, 2, 3, 4, 0, -5);
  // Row 0: 2 → 2.5 keeps the top token (index 2); row 1: 0 → 0.2. Largest change 0.5, scale 5.
  assert.deepEqual(closeness(Float32Array.of(1, 2.5, 3, 4, 0.2, -5), fp32, 3), { relError: 0.1, top1Equal: 2, positions: 2 });
  // Row 0's top token flips to index 1; largest change 1.5.
  const flipped = closeness(Float32Array.of(1, 3.5, 3, 4, 0, -5), fp32, 3);
  assert.equal(flipped.top1Equal, 1);
  assert.ok(Math.abs(flipped.relError - 0.3) < 1e-7, String(flipped.relError));
});

test('closeness refuses arrays that do not line up', () => {
  assert.throws(() => closeness(new Float32Array(6), new Float32Array(4), 2), /6 logits vs 4/);
  assert.throws(() => closeness(new Float32Array(6), new Float32Array(6), 4), /not rows of 4/);
});

test('farther: the relative error may exceed transformers bf16s by the stated factor, no more', () => {
  const theirs: Closeness = { relError: 0.1, top1Equal: 10, positions: 10 };
  assert.deepEqual(farther('c', { relError: 0.05, top1Equal: 10, positions: 10 }, theirs), []);
  assert.deepEqual(farther('c', { relError: 0.1 * SLACK.relErrorFactor * 0.999, top1Equal: 10, positions: 10 }, theirs), []);
  const why = farther('c', { relError: 0.12, top1Equal: 10, positions: 10 }, theirs);
  assert.equal(why.length, 1);
  assert.match(why[0], /^c: relative error 1\.20e-1 > 1\.1 × transformers bf16's 1\.00e-1$/);
  assert.equal(farther('c', { relError: Infinity, top1Equal: 10, positions: 10 }, theirs).length, 1);
  assert.equal(farther('c', { relError: NaN, top1Equal: 10, positions: 10 }, theirs).length, 1);
});

test('farther: top-1 agreement may fall short by one position or 1% of them, whichever is more', () => {
  assert.equal(top1Slack(1), 1);
  assert.equal(top1Slack(100), 1);
  assert.equal(top1Slack(1024), 11);
  const theirs: Closeness = { relError: 0.1, top1Equal: 950, positions: 1024 };
  assert.deepEqual(farther('c', { relError: 0.05, top1Equal: 939, positions: 1024 }, theirs), []);
  const why = farther('c', { relError: 0.05, top1Equal: 938, positions: 1024 }, theirs);
  assert.deepEqual(why, ['c: top-1 equal to fp32 at 938 of 1024 positions, transformers bf16 at 950 (11 fewer allowed)']);
  // One position cannot rank two runs.
  assert.deepEqual(farther('c', { relError: 0.05, top1Equal: 0, positions: 1 }, { relError: 0.1, top1Equal: 1, positions: 1 }), []);
  assert.throws(() => farther('c', { relError: 0, top1Equal: 1, positions: 1 }, { relError: 0, top1Equal: 1, positions: 2 }), /1 positions vs 2/);
});

test('pooled: positions and agreements add up, the error is the worst case', () => {
  assert.deepEqual(
    pooled([
      { relError: 0.02, top1Equal: 1, positions: 1 },
      { relError: 0.07, top1Equal: 90, positions: 100 },
    ]),
    { relError: 0.07, top1Equal: 91, positions: 101 },
  );
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

test('a computation rounded as coarsely as transformers bf16 passes; a coarser one fails', () => {
  const rand = seededRandom(7);
  const P = 400;
  const V = 257;
  const fp32 = Float32Array.from({ length: P * V }, () => 4 * (rand() + rand() + rand() - 1.5));
  // Logits computed from activations rounded at a few stages: an error of a few units of the last
  // place, per entry, at the given mantissa width.
  const run = (bits: number, seed: number): Float32Array => {
    const r = seededRandom(seed);
    return Float32Array.from(fp32, (x) => roundMantissa(x + (r() - 0.5) * 3 * 2 ** (Math.floor(Math.log2(Math.abs(x) + 1e-30)) - bits), bits));
  };
  const hf = closeness(run(7, 1), fp32, V);
  const same = closeness(run(7, 2), fp32, V);
  const finer = closeness(run(10, 3), fp32, V);
  const coarser = closeness(run(4, 4), fp32, V);
  assert.ok(hf.relError > 0 && hf.top1Equal < P, 'the bf16-like run must differ from fp32 at all');
  assert.deepEqual(farther('finer', finer, hf), []);
  assert.deepEqual(farther('same precision', same, hf), []);
  const why = farther('coarser', coarser, hf);
  assert.ok(why.some((w) => /relative error/.test(w)), why.join('; '));
  assert.ok(why.some((w) => /top-1/.test(w)), why.join('; '));
});
