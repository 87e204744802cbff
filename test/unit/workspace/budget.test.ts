import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fitBudget } from '../../../src/workspace/budget';
import { isUserError } from '../../../src/common/errors';

/** A header costing 10 tokens plus 2 per kept file, like a tree that shrinks as files leave. */
const header = (kept: readonly boolean[]) => 10 + 2 * kept.filter(Boolean).length;

test('everything is kept when it fits', () => {
  assert.deepEqual(fitBudget([5, 5, 5], 10 + 6 + 15, header), [true, true, true]);
});

test('the largest files are left out first, ties from the end of the order', () => {
  // total = 10 + 8 + (10+50+10+30) = 118
  assert.deepEqual(fitBudget([10, 50, 10, 30], 70, header), [true, false, true, true]);
  assert.deepEqual(fitBudget([10, 50, 10, 30], 40, header), [true, false, true, false]);
  assert.deepEqual(fitBudget([10, 50, 10, 30], 25, header), [true, false, false, false]);
});

test('the header shrinking is taken into account', () => {
  // With 4 files the header is 18; dropping the 30-token file leaves header 16 + 30 = 46.
  assert.deepEqual(fitBudget([10, 10, 10, 30], 46, header), [true, true, true, false]);
});

test('a budget below the empty header is a user error', () => {
  assert.throws(() => fitBudget([1, 2], 5, header), (e) => isUserError(e) && /smaller than the pack header/.test(e.message));
});
