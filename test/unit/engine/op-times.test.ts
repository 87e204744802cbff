import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Backend } from '../../../src/engine/backends/backend';
import { describeOpTimes, timeOps } from '../../../src/engine/model/op-times';

/**
 * A backend whose calls each take a known time on a fake clock, one of them asynchronously (as onnx
 * does), and which records the synchronisations around them.
 */
function fakeBackend() {
  let clock = 0;
  const log: string[] = [];
  const took = (name: string, ms: number) => {
    log.push(name);
    clock += ms;
    return name;
  };
  const backend = {
    embed: () => took('embed', 1),
    kdaPrefill: () => took('kdaPrefill', 10),
    mlaDecode: () => took('mlaDecode', 20),
    moe: () => Promise.resolve().then(() => took('moe', 40)),
    mlp: () => took('mlp', 5),
    addRmsnorm: (_h: unknown, _x: unknown, site: { which: string }) => took(`addRmsnorm ${site.which}`, site.which === 'final' ? 3 : 2),
    lmHead: () => took('lmHead', 7),
    rows: () => 1,
  };
  const sync = () => log.push('sync');
  return { backend, sync, log, now: () => clock, advance: (ms: number) => (clock += ms) };
}

test('timeOps sums each call between two synchronisations into its kind, awaiting promised results', async () => {
  const f = fakeBackend();
  const timer = timeOps(f.backend as unknown as Backend<unknown>, f.sync, f.now);
  timer.on = true;
  const b = f.backend;
  b.embed();
  b.kdaPrefill();
  b.kdaPrefill();
  b.mlaDecode();
  assert.equal(await b.moe(), 'moe', 'the wrapped call returns what the backend returned');
  b.mlp();
  b.addRmsnorm(null, null, { which: 'post_attention' });
  b.addRmsnorm(null, null, { which: 'final' });
  b.lmHead();
  assert.deepEqual(timer.times, { kda: 20, mla: 20, moe: 40, dense: 5, norms: 2, outside: 1 + 3 + 7 });
  assert.deepEqual(f.log.slice(0, 6), ['sync', 'embed', 'sync', 'sync', 'kdaPrefill', 'sync']);
  assert.equal(f.log.filter((l) => l === 'sync').length, 18, 'two synchronisations per timed call');
  assert.equal(b.rows(), 1, 'calls outside a forward are left alone');
});

test('timeOps times nothing while off, restarts from zero on reset, and restore gives the backend its own methods back', () => {
  const f = fakeBackend();
  const own = f.backend.kdaPrefill;
  const timer = timeOps(f.backend as unknown as Backend<unknown>, f.sync, f.now);
  assert.notEqual(f.backend.kdaPrefill, own);
  f.backend.kdaPrefill();
  assert.equal(timer.times.kda, 0);
  assert.ok(!f.log.includes('sync'), 'no synchronisation while off');
  timer.on = true;
  f.backend.kdaPrefill();
  assert.equal(timer.times.kda, 10);
  timer.reset();
  assert.equal(timer.times.kda, 0);
  f.advance(100);
  f.backend.mlp();
  assert.equal(timer.times.dense, 5, 'time between calls is not counted');
  timer.restore();
  assert.equal(f.backend.kdaPrefill, own);
});

test('timeOps hides a call that joins two kinds (addNormMoe) until restored, so the model times the norm and the MoE block apart', () => {
  const f = fakeBackend();
  const joined = () => 'joined';
  const backend = { ...f.backend, addNormMoe: joined };
  const timer = timeOps(backend as unknown as Backend<unknown>, f.sync, f.now);
  assert.equal(backend.addNormMoe, undefined);
  timer.restore();
  assert.equal(backend.addNormMoe, joined);
});

test('describeOpTimes lists the kinds that took time, per step when asked', () => {
  assert.equal(describeOpTimes({ kda: 20, mla: 0, moe: 123.4, dense: 0, norms: 0.5, outside: 8 }, 2), 'kda 10.0 ms, moe 61.7 ms, norms 0.25 ms, outside 4.00 ms');
});
