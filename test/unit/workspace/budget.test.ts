import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fitBudget, fitBudgetAfter, type PreviousFate } from '../../../src/workspace/budget';
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

/** fitBudgetAfter with the same index and blocks as `run`. */
async function runAfter(bytes: number[], previously: PreviousFate[], maxTokens: number) {
  const measured: number[] = [];
  const r = await fitBudgetAfter({ bytes, previously, maxTokens, indexTokens: index, measure: async (i) => (measured.push(i), bytes[i]) });
  return { kept: r.kept, measured };
}

test('after a previous pack: everything is kept when it fits', async () => {
  // 15 + index 16 = 31
  assert.deepEqual((await runAfter([5, 5, 5], ['kept', 'over-budget', 'changed'], 31)).kept, [true, true, true]);
});

test('after a previous pack: an edited file that grows past the budget stays; the latest unchanged file gives way', async () => {
  // Before the edit the last file had 20 bytes: all six need 125 + 22 = 147 > 130, without the
  // 25-byte file 100 + 20 = 120, so the previous pack left file 2 out.
  const bytes = [20, 20, 25, 20, 20, 31];
  // The largest-first rule drops the edited file and lets file 2 back in, mid-context:
  // without the 31, 105 + 20 = 125 <= 130.
  assert.deepEqual((await run(bytes, 130)).kept, [true, true, true, true, true, false]);
  // Edited and unchanged: 111 + 20 = 131 > 130; without file 4: 91 + 18 = 109.
  const r = await runAfter(bytes, ['kept', 'kept', 'over-budget', 'kept', 'kept', 'changed'], 130);
  assert.deepEqual(r.kept, [true, true, false, true, false, true]);
  assert.equal(r.measured.includes(2), false, 'a file left out before is not measured when the others do not fit');
});

test('after a previous pack: a new file goes in, files left out before stay out while others fit', async () => {
  // Previously [20, 20, 25, 20, 20] in 120: 105 + 20 > 120, without the 25: 80 + 18 = 98.
  // A new 15-byte file: 95 + 20 = 115 <= 120, all: 120 + 22 > 120.
  assert.deepEqual((await runAfter([20, 20, 25, 20, 20, 15], ['kept', 'kept', 'over-budget', 'kept', 'kept', 'changed'], 120)).kept, [true, true, false, true, true, true]);
});

test('after a previous pack: files left out before stay out even with room for them, and come back when all fit', async () => {
  const bytes = [20, 25, 20, 30, 20];
  const previously: PreviousFate[] = ['kept', 'over-budget', 'kept', 'over-budget', 'kept'];
  // Kept ones: 60 + 16 = 76. The 25-byte file would fit beside them (85 + 18 = 103 <= 105), as the
  // largest-first rule shows, but it would land between files 0 and 2.
  assert.deepEqual((await run(bytes, 105)).kept, [true, true, true, false, true]);
  assert.deepEqual((await runAfter(bytes, previously, 105)).kept, [true, false, true, false, true]);
  // All: 115 + 20 = 135.
  assert.deepEqual((await runAfter(bytes, previously, 135)).kept, [true, true, true, true, true]);
});

test('after a previous pack: changed files alone over the budget give way largest first; the earliest unchanged fill what is left', async () => {
  const bytes = [20, 40, 20, 10, 30];
  const previously: PreviousFate[] = ['kept', 'changed', 'kept', 'changed', 'changed'];
  // Changed alone: 80 + 16 = 96 > 60; without the 40: 40 + 14 = 54; file 0 beside them: 60 + 16 = 76 > 60.
  assert.deepEqual((await runAfter(bytes, previously, 60)).kept, [false, false, false, true, true]);
  // In 80: file 0 fits (76), files 0 and 2 do not (80 + 18 = 98).
  assert.deepEqual((await runAfter(bytes, previously, 80)).kept, [true, false, false, true, true]);
});

test('after a previous pack: the index shrinking is taken into account', async () => {
  // All: 50 + 18 = 68 > 56. Without file 2: 40 + 16 = 56, which fits only because the index lost a line.
  assert.deepEqual((await runAfter([10, 10, 10, 20], ['kept', 'kept', 'kept', 'changed'], 56)).kept, [true, true, false, true]);
});

test('after a previous pack: files after the first one that cannot fit are never measured', async () => {
  // Changed file 4 first (6), then the unchanged in order: 6 + 5 + 1000 is past the budget.
  const r = await runAfter([5, 1000, 7, 2000, 6], ['kept', 'kept', 'kept', 'kept', 'changed'], 40);
  assert.deepEqual(r.kept, [true, false, false, false, true]);
  assert.deepEqual(r.measured, [4, 0, 1]);
});

test('after a previous pack: a budget below the empty index is a user error', async () => {
  await assert.rejects(runAfter([1, 2], ['kept', 'changed'], 5), (e) => isUserError(e) && /smaller than the file index/.test(e.message));
});
