/**
 * KL divergence and top-1 agreement of logit matrices, against closed forms worked out by hand:
 * for p = (1/2, 1/2) and q = softmax(ln r, 0) = (r/(r+1), 1/(r+1)),
 * KL(p ‖ q) = ½ ln(½ (r+1)/r) + ½ ln(½ (r+1)) = ½ ln((r+1)² / (4r)).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compareLogits, comparePositions, summarizeDivergence } from '../../../src/engine/logit-divergence';

const rows = (...r: number[][]) => Float32Array.from(r.flat());
const near = (actual: number, expected: number, tol = 1e-9) => assert.ok(Math.abs(actual - expected) <= tol, `${actual} is not within ${tol} of ${expected}`);

test('two-token distributions give the closed-form KL', () => {
  // r = 3: ½ ln(16/12) = ½ ln(4/3); r = 9: ½ ln(100/36) = ln(5/3).
  near(compareLogits(rows([0, 0]), rows([Math.log(3), 0]), 2).meanKl, 0.5 * Math.log(4 / 3), 1e-7);
  near(compareLogits(rows([0, 0]), rows([Math.log(9), 0]), 2).meanKl, Math.log(5 / 3), 1e-7);
  near(0.5 * Math.log(4 / 3), 0.14384103622589045);
});

test('KL is taken as KL(base ‖ other), which is not symmetric', () => {
  // p = (3/4, 1/4), q = (1/2, 1/2): ¾ ln(3/2) + ¼ ln(1/2) = 0.1308..., not the 0.1438... of the reverse.
  const forward = compareLogits(rows([Math.log(3), 0]), rows([0, 0]), 2).meanKl;
  near(forward, 0.75 * Math.log(1.5) + 0.25 * Math.log(0.5), 1e-7);
  assert.ok(Math.abs(forward - 0.5 * Math.log(4 / 3)) > 0.01);
});

test('identical logits give KL 0 exactly and full agreement', () => {
  const logits = rows([1.5, -2, 0.25, 7], [0, 0, 0, 0], [-30, 12, 11.9, 3]);
  assert.deepEqual(compareLogits(logits, logits.slice(), 4), { positions: 3, meanKl: 0, maxKl: 0, top1Agreement: 1 });
});

test('shifting a row of logits by a constant changes nothing, even at magnitudes where exp overflows', () => {
  const base = rows([0.3, -1.2, 2.5, 0.9]);
  const other = rows([0.1, -1, 2.2, 1.4]);
  const kl = compareLogits(base, other, 4).meanKl;
  assert.ok(kl > 1e-3);
  const shift = (r: Float32Array, c: number) => r.map((x) => x + c);
  near(compareLogits(shift(base, 40), shift(other, -25), 4).meanKl, kl, 1e-6);
  assert.equal(compareLogits(rows([0, 0], [1000, 1000]), rows([7, 7], [-500, -500]), 2).maxKl, 0);
  near(compareLogits(rows([1000, 1000]), rows([1000 + Math.log(3), 1000]), 2).meanKl, 0.5 * Math.log(4 / 3), 1e-4);
});

test('a position whose argmax differs counts against agreement; mean and max are over positions', () => {
  const base = rows([0, 0], [2, 1], [0, 0], [0, 5]);
  const other = rows([0, 0], [1, 2], [Math.log(3), 0], [0, 5]);
  const s = compareLogits(base, other, 2);
  assert.equal(s.positions, 4);
  // Positions 0 and 3 agree and are equal; position 2 ties in the baseline (the lower index wins) and agrees.
  assert.equal(s.top1Agreement, 0.75);
  // Position 1: p = σ(1)·(1, e⁻¹)…, q its mirror image: KL = (p₀ − p₁)·(1 − (−1)) = 2·tanh(½).
  const klSwap = Math.tanh(0.5);
  const klThird = 0.5 * Math.log(4 / 3);
  near(s.maxKl, klSwap, 1e-6);
  near(s.meanKl, (klSwap + klThird) / 4, 1e-6);
  const per = comparePositions(base, other, 2);
  assert.deepEqual([...per.sameTop1], [1, 0, 1, 1]);
  assert.equal(per.kl[0], 0);
});

test('summaries over several parts weigh every position alike', () => {
  const a = comparePositions(rows([0, 0]), rows([Math.log(3), 0]), 2);
  const b = comparePositions(rows([0, 0], [0, 0], [0, 0]), rows([0, 0], [0, 0], [0, 0]), 2);
  const s = summarizeDivergence([a, b]);
  assert.equal(s.positions, 4);
  near(s.meanKl, (0.5 * Math.log(4 / 3)) / 4, 1e-7);
  assert.equal(s.top1Agreement, 1);
});

test('mismatched shapes, non-finite logits and empty input are errors', () => {
  assert.throws(() => compareLogits(rows([0, 0]), rows([0, 0, 0]), 2), /the baseline has 2 logits, the other 3/);
  assert.throws(() => compareLogits(rows([0, 0, 0]), rows([0, 0, 0]), 2), /not whole rows of 2/);
  assert.throws(() => compareLogits(rows([0, 0], [0, 0]), rows([0, 0], [NaN, 0]), 2), /compared logits at position 1, token 0 are NaN/);
  assert.throws(() => summarizeDivergence([]), /no positions/);
});
