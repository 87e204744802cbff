import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RestartBackoff } from '../../../src/client/backoff';

const policy = { initialMs: 1000, factor: 2, maxMs: 5000, resetAfterMs: 60_000 };

function clock(start = 1_000_000) {
  let now = start;
  return { now: () => now, advance: (ms: number) => { now += ms; } };
}

test('the first restart is immediate, then pauses double up to the cap', () => {
  const c = clock();
  const b = new RestartBackoff(policy, c.now);
  assert.equal(b.delayBeforeStart(), 0, 'no crash yet');
  const expected = [0, 1000, 2000, 4000, 5000, 5000];
  for (const want of expected) {
    b.recordCrash(100);
    assert.equal(b.delayBeforeStart(), want);
  }
});

test('time passed since the crash counts towards the pause', () => {
  const c = clock();
  const b = new RestartBackoff(policy, c.now);
  b.recordCrash(10);
  b.recordCrash(10);
  b.recordCrash(10);
  assert.equal(b.delayBeforeStart(), 2000);
  c.advance(1500);
  assert.equal(b.delayBeforeStart(), 500);
  c.advance(10_000);
  assert.equal(b.delayBeforeStart(), 0);
});

test('a process that ran long enough before crashing starts the count again', () => {
  const c = clock();
  const b = new RestartBackoff(policy, c.now);
  for (let i = 0; i < 4; i++) b.recordCrash(10);
  assert.equal(b.crashesInARow, 4);
  b.recordCrash(60_000);
  assert.equal(b.crashesInARow, 1);
  assert.equal(b.delayBeforeStart(), 0);
});
