import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeFusions } from '../../../src/engine/backends/cuda/decode-fusions';

test('KLC_FUSED_DECODE: unset and 0 take none, 1 takes all', () => {
  const none = { router: false, shared: false, kda: false };
  assert.deepEqual(decodeFusions(undefined), none);
  assert.deepEqual(decodeFusions(''), none);
  assert.deepEqual(decodeFusions('0'), none);
  assert.deepEqual(decodeFusions('1'), { router: true, shared: true, kda: true });
});

test('KLC_FUSED_DECODE: a comma list takes exactly the parts it names', () => {
  assert.deepEqual(decodeFusions('shared'), { router: false, shared: true, kda: false });
  assert.deepEqual(decodeFusions('kda, router'), { router: true, shared: false, kda: true });
  assert.deepEqual(decodeFusions('shared,kda'), { router: false, shared: true, kda: true });
});

test('KLC_FUSED_DECODE: an unknown part is an error that names it and the accepted values', () => {
  assert.throws(() => decodeFusions('shared,norm'), /KLC_FUSED_DECODE=shared,norm: unknown part "norm"; use 1, 0 or a comma list of router, shared, kda/);
  assert.throws(() => decodeFusions('yes'), /unknown part "yes"/);
});
