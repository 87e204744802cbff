import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fitBudget } from '../../../src/workspace/budget';
import { isUserError } from '../../../src/common/errors';

/** An index costing 10 tokens plus 2 per kept file, like a tree that shrinks as files leave. */
const index = (kept: readonly boolean[]) => 10 + 2 * kept.filter(Boolean).length;

/** Blocks whose token count is their byte count, recording which were measured. */
async function run(bytes: number[], maxTokens: number) {
  const measured: number[] = [];
  const r = await fitBudget({ bytes, maxTokens, indexTokens: index, measure: async (i) => (measured.push(i), bytes[i]) });
  return { kept: r.kept, measured };
}

test('everything is kept when it fits', async () => {
  assert.deepEqual((await run([5, 5, 5], 10 + 6 + 15)).kept, [true, true, true]);
});

test('the largest files are left out first, ties from the end of the order', async () => {
  // all: index 18 + 100 files
  assert.deepEqual((await run([10, 50, 10, 30], 70)).kept, [true, false, true, true]);
  assert.deepEqual((await run([10, 50, 10, 30], 40)).kept, [true, false, true, false]);
  assert.deepEqual((await run([10, 50, 10, 30], 25)).kept, [true, false, false, false]);
  assert.deepEqual((await run([10, 10], 22)).kept, [true, false]);
});

test('the index shrinking is taken into account', async () => {
  // With 4 files the index is 18; without the 30-byte file it is 16, and 16 + 30 = 46.
  assert.deepEqual((await run([10, 10, 10, 30], 46)).kept, [true, true, true, false]);
});

test('files that cannot fit are never measured', async () => {
  const bytes = [5, 1000, 7, 2000, 6];
  const r = await run(bytes, 40);
  assert.deepEqual(r.kept, [true, false, true, false, true]);
  assert.deepEqual(r.measured, [0, 4, 2, 1], 'smallest first, stopping at the first block past the budget');
});

test('a budget below the empty index is a user error', async () => {
  await assert.rejects(run([1, 2], 5), (e) => isUserError(e) && /smaller than the file index/.test(e.message));
});
