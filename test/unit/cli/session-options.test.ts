/** The memory budget that klc ingest, ask, serve and bench read from their options. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isUserError } from '../../../src/common/errors';
import { memoryBudget } from '../../../src/cli/session-options';

test('--prefill-slice, --gpu-memory and --quantization become the budget; nothing given leaves every default', () => {
  assert.deepEqual(memoryBudget({ 'prefill-slice': '16384', 'gpu-memory': '24GB', quantization: 'int4' }, { maxTokens: 131_072 }), {
    contextTokens: 131_072,
    gpuMemory: 24e9,
    quantization: 'int4',
    sliceTokens: 16_384,
  });
  assert.deepEqual(memoryBudget({}, {}), {});
});

test('a prefill slice out of range or not a whole number is refused naming the option', () => {
  for (const bad of ['32', '65537', '4k', '1.5']) {
    assert.throws(() => memoryBudget({ 'prefill-slice': bad }, {}), (e) => isUserError(e) && /^--prefill-slice must be/.test(e.message), bad);
  }
});
