import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DecodeGraphs } from '../../../src/engine/backends/cuda/decode-graphs';
import type { NativeContext, NativeKlc } from '../../../src/engine/backends/cuda/loader';

/**
 * The graph calls of the native library, as a log: recording begins and ends, launches (false while
 * `stale` is set, as when a workspace moved) and frees. `failEnd` makes the next end throw, as
 * klc_graph_end does when a call inside the recording was not recordable.
 */
function fakeNative() {
  const log: string[] = [];
  let next = 1n;
  const state = { stale: false, failEnd: false, recording: false };
  const native = {
    graphBegin: () => {
      log.push('begin');
      state.recording = true;
    },
    graphEnd: (_c: NativeContext, keep: boolean) => {
      state.recording = false;
      if (state.failEnd) {
        state.failEnd = false;
        log.push('end failed');
        throw new Error('recording a CUDA graph: not recordable');
      }
      log.push(keep ? `end ${next}` : 'discard');
      return keep ? next++ : undefined;
    },
    graphLaunch: (_c: NativeContext, g: bigint) => {
      log.push(state.stale ? `launch ${g} refused` : `launch ${g}`);
      return !state.stale;
    },
    graphFree: (_c: NativeContext, g: bigint) => void log.push(`free ${g}`),
  } as unknown as NativeKlc;
  return { native, log, state };
}

type Rows = { generation: number; id: number };

/**
 * A step whose pass logs itself and returns rows outside the arena, with the host bookkeeping
 * counted. failRecorded: the pass throws while it is recorded (as a synchronising call does then).
 */
function stepper(graphs: DecodeGraphs<Rows>, log: string[], state: { recording: boolean }) {
  const book = { advanced: 0, undone: 0, passes: 0 };
  const run = (B: number, key: string, failRecorded = false) =>
    graphs.step(
      B,
      key,
      async () => {
        log.push(`pass ${B}`);
        book.passes++;
        if (failRecorded && state.recording) throw new Error('synchronising inside a recording');
        return { generation: -1, id: book.passes };
      },
      () => book.advanced++,
      () => book.undone++,
    );
  return { run, book };
}

test('a new key runs plainly, the next step with it is recorded and launched, the steps after replay it', async () => {
  const { native, log, state } = fakeNative();
  const lines: string[] = [];
  const graphs = new DecodeGraphs<Rows>(native, {} as NativeContext, true, (l) => lines.push(l));
  const { run, book } = stepper(graphs, log, state);
  const first = await run(1, 'k');
  const second = await run(1, 'k');
  const third = await run(1, 'k');
  const fourth = await run(1, 'k');
  assert.deepEqual(log, ['pass 1', 'begin', 'pass 1', 'end 1', 'launch 1', 'launch 1', 'launch 1']);
  assert.equal(book.passes, 2);
  assert.equal(book.advanced, 2, 'each replay advances the host bookkeeping once');
  assert.equal(first.id, 1);
  assert.equal(second.id, 2);
  assert.equal(third, second, 'a replay returns the recorded output rows');
  assert.equal(fourth, second);
  assert.deepEqual(lines, []);
});

test('a changed key frees the old graph, runs plainly once and records again; batch sizes keep their own graphs', async () => {
  const { native, log, state } = fakeNative();
  const graphs = new DecodeGraphs<Rows>(native, {} as NativeContext, true, () => {});
  const { run } = stepper(graphs, log, state);
  await run(1, 'a');
  await run(1, 'a');
  await run(8, 'x');
  await run(8, 'x');
  log.length = 0;
  await run(1, 'b');
  await run(1, 'b');
  await run(8, 'x');
  assert.deepEqual(log, ['free 1', 'pass 1', 'begin', 'pass 1', 'end 3', 'launch 3', 'launch 2']);
});

test('a graph refused at launch (a workspace moved) is recorded again at once', async () => {
  const { native, log, state } = fakeNative();
  const graphs = new DecodeGraphs<Rows>(native, {} as NativeContext, true, () => {});
  const { run, book } = stepper(graphs, log, state);
  await run(2, 'k');
  await run(2, 'k');
  log.length = 0;
  state.stale = true;
  const before = book.advanced;
  const promise = run(2, 'k');
  state.stale = false;
  await promise;
  assert.deepEqual(log, ['launch 1 refused', 'free 1', 'begin', 'pass 2', 'end 2', 'launch 2']);
  assert.equal(book.advanced, before, 'a refused launch does not advance the bookkeeping');
});

test('a failed recording is taken back and run plainly, and that batch size is not recorded again', async () => {
  const { native, log, state } = fakeNative();
  const lines: string[] = [];
  const graphs = new DecodeGraphs<Rows>(native, {} as NativeContext, true, (l) => lines.push(l));
  const { run, book } = stepper(graphs, log, state);
  await run(3, 'k');
  log.length = 0;
  const out = await run(3, 'k', true);
  assert.deepEqual(log, ['begin', 'pass 3', 'discard', 'pass 3']);
  assert.equal(out.id, 3, 'the output is the plain pass’s');
  assert.equal(book.undone, 1, 'the recorded pass is taken back before the plain one');
  assert.equal(lines.length, 1);
  assert.match(lines[0], /3 sequences run without a CUDA graph \(recording one failed: synchronising inside a recording\)/);
  log.length = 0;
  await run(3, 'k');
  await run(3, 'k');
  assert.deepEqual(log, ['pass 3', 'pass 3']);
});

test('an end that fails (a call inside was not recordable) is taken back and the step runs plainly', async () => {
  const { native, log, state } = fakeNative();
  const graphs = new DecodeGraphs<Rows>(native, {} as NativeContext, true, () => {});
  const { run, book } = stepper(graphs, log, state);
  await run(1, 'k');
  log.length = 0;
  state.failEnd = true;
  const out = await run(1, 'k');
  assert.deepEqual(log, ['begin', 'pass 1', 'end failed', 'pass 1']);
  assert.equal(book.undone, 1);
  assert.equal(out.id, 3, 'the output is the plain pass’s');
});

test('switched off, every step runs its pass; switched on again, a graph recorded before replays', async () => {
  const { native, log, state } = fakeNative();
  const graphs = new DecodeGraphs<Rows>(native, {} as NativeContext, true, () => {});
  const { run } = stepper(graphs, log, state);
  await run(1, 'k');
  await run(1, 'k');
  graphs.enabled = false;
  log.length = 0;
  await run(1, 'k');
  await run(1, 'k');
  graphs.enabled = true;
  await run(1, 'k');
  assert.deepEqual(log, ['pass 1', 'pass 1', 'launch 1']);
  graphs.dispose();
  assert.deepEqual(log.slice(-1), ['free 1']);
});
