import { test } from 'node:test';
import assert from 'node:assert/strict';
import { nextSliceEnd, type SlicePlan } from '../../../src/engine/ingest-slices';

/** Runs the whole ingest's slicing from `from` and lists [end, checkpoint] per slice. */
function slices(plan: SlicePlan, from = 0): [number, boolean][] {
  const out: [number, boolean][] = [];
  let position = from;
  let last = from;
  while (position < plan.total) {
    const { end, checkpoint } = nextSliceEnd(plan, position, last);
    assert.ok(end > position && end <= position + plan.slice, `slice ${position}..${end}`);
    out.push([end, checkpoint]);
    position = end;
    if (checkpoint) last = end;
  }
  return out;
}

test('files much shorter than a slice: every slice ends at its last boundary and checkpoints there', () => {
  // Files of 300 tokens from 100 (a preamble), the last ending at 3100; an index of 60 tokens after it.
  const boundaries = Array.from({ length: 10 }, (_, i) => 400 + 300 * i);
  const plan: SlicePlan = { total: 3160, slice: 1000, spacing: 1000, boundaries, filesEnd: 3100 };
  // The end of the files (3100) gets no cut of its own: the rest (2800..3160) runs as one slice, and an ingest that
  // adds files resumes at 2800, 300 tokens earlier, within the same one slice.
  assert.deepEqual(slices(plan), [
    [1000, true],
    [1900, true],
    [2800, true],
    [3160, false],
  ]);
});

test('the end of the files: cut where the rest needs two slices anyway, or where it saves an append a slice', () => {
  // A context shorter than one slice (a small repository) runs as one: no checkpoint before the index.
  assert.deepEqual(slices({ total: 4010, slice: 4096, spacing: 4096, boundaries: [900, 2500, 3990], filesEnd: 3990 }), [[4010, false]]);
  // The rest after the last checkpoint needs two slices whatever happens: the first ends at the files' end.
  assert.deepEqual(slices({ total: 2300, slice: 1000, spacing: 5000, boundaries: [1500, 2100], filesEnd: 2100 }), [
    [1000, false],
    [2000, false],
    [2100, true],
    [2300, false],
  ]);
  // After 0..1000 one slice would do, but resuming from the last checkpoint (0) would recompute 1800 tokens, more than
  // a slice: cut.
  assert.deepEqual(slices({ total: 1900, slice: 1000, spacing: 5000, boundaries: [1200, 1800], filesEnd: 1800 }), [
    [1000, false],
    [1800, true],
    [1900, false],
  ]);
});

test('a due checkpoint with no boundary in the slice\'s second half waits for the next slice', () => {
  // Files longer than half a slice: 0..1000 has no boundary, 1000..2000 only an early one.
  const plan: SlicePlan = { total: 5000, slice: 1000, spacing: 1000, boundaries: [1300, 2700, 4100], filesEnd: 4100 };
  // 1000..2000: 1300 is only 300 into the slice, but the checkpoint due at 1000 is now a whole spacing
  // late, so 1300 serves; likewise 2700 in 2300..3300.
  assert.deepEqual(slices(plan), [
    [1000, false],
    [1300, true],
    [2300, false],
    [2700, true],
    [3700, false],
    [4100, true],
    [5000, false],
  ]);
});

test('sparse checkpoints: full slices until one is due, then the last boundary in that slice', () => {
  const boundaries = Array.from({ length: 99 }, (_, i) => 100 * (i + 1));
  const plan: SlicePlan = { total: 10_050, slice: 1024, spacing: 3000, boundaries, filesEnd: 9900 };
  assert.deepEqual(slices(plan), [
    [1024, false],
    [2048, false],
    [3000, true],
    [4024, false],
    [5048, false],
    [6000, true],
    [7024, false],
    [8048, false],
    [9000, true],
    [9900, true],
    [10_050, false],
  ]);
});

test('a resumed ingest slices from where it resumed, and a context without files runs whole slices', () => {
  const plan: SlicePlan = { total: 2500, slice: 1000, spacing: 1000, boundaries: [1800, 2200], filesEnd: 2200 };
  assert.deepEqual(slices(plan, 1500), [
    [2200, true],
    [2500, false],
  ]);
  assert.deepEqual(slices({ total: 2500, slice: 1000, spacing: 1, boundaries: [], filesEnd: -1 }), [
    [1000, false],
    [2000, false],
    [2500, false],
  ]);
});

test('several checkpoints per slice (a CPU backend): each at the first boundary where it is due', () => {
  const plan: SlicePlan = { total: 1000, slice: 512, spacing: 100, boundaries: [50, 120, 180, 260, 500, 900], filesEnd: 900 };
  assert.deepEqual(slices(plan), [
    [120, true],
    [260, true],
    [500, true],
    [900, true],
    [1000, false],
  ]);
  // A workspace within one slice still checkpoints every file boundary at spacing 1.
  assert.deepEqual(slices({ total: 300, slice: 512, spacing: 1, boundaries: [40, 90, 250], filesEnd: 250 }), [
    [40, true],
    [90, true],
    [250, true],
    [300, false],
  ]);
});
