/**
 * The CUDA backend's load-time plan without a GPU: the device's free memory and the user's budget
 * in, the planned context (logged when chosen) or a refusal with numbers out. Expected values are
 * worked out by hand for the published 48B config (see test/unit/plan/memory-plan.test.ts for the
 * components: bf16 weights 98,278,444,544, KDA state 44,892,160, a fork 132,972,544, the 512-token
 * workspace 2,343,790,880 + 1152 B per token of the longest sequence).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { isUserError } from '../../../src/common/errors';
import { loadConfigFile } from '../../../src/engine/model/config';
import { planLoad, type DeviceFacts } from '../../../src/engine/backends/cuda/load-plan';

const CONFIG = join(__dirname, '..', '..', '..', 'assets', 'configs', 'kimi-linear-48b-a3b-instruct.json');
const facts = (free: number): DeviceFacts => ({ free, matrixBytes: 2, tensorCores: true, sampleScratch: 53_477_408, gpuName: 'Test GPU', dir: '/models/kimi' });

test('without a budget the longest context that fits is planned and logged', async () => {
  const c = await loadConfigFile(CONFIG);
  const lines: string[] = [];
  // 120 GB free → 114e9 usable. Fixed: 98,278,444,544 + 44,892,160 + 8 × 132,972,544 = 99,387,117,056.
  // 655,360 tokens: 655,360 × 2304 = 1,509,949,440 (360 granules) + 134,217,728 = 1,644,167,168 × 7 = 11,509,170,176;
  //   512-token workspace 2,343,790,880 + 659,456 × 1152 = 3,103,484,192 → 113,999,771,424 ≤ 114e9.
  // 656,384 tokens: 722 granules → 11,538,530,304 + workspace 3,104,663,840 → 114,030,311,200 > 114e9.
  const plan = planLoad(c, { log: (l) => lines.push(l) }, facts(120e9));
  assert.equal(plan.contextTokens, 655_360);
  assert.equal(plan.sliceTokens, 512);
  assert.equal(plan.gpu.total, 113_999_771_424);
  assert.deepEqual(lines, ['cuda: planned for a context of 655360 tokens and 8 forks (the config allows 1048576, more does not fit)']);
  // 141 GB free holds the config's whole 1,048,576 tokens (124,230,610,720 at 4096-token slices, see the plan tests).
  const full = planLoad(c, { log: (l) => lines.push(l) }, facts(141e9));
  assert.equal(full.contextTokens, 1_048_576);
  assert.equal(full.gpu.total, 124_230_610_720);
  assert.equal(lines[1], 'cuda: planned for a context of 1048576 tokens and 8 forks (the config\'s maximum)');
});

test('a budget that does not fit is refused with the numbers and the advice', async () => {
  const c = await loadConfigFile(CONFIG);
  // --gpu-memory 80GB on a card with 140 GB free: bf16 weights alone (98.28 GB) exceed 76 GB usable.
  const refused = () => planLoad(c, { contextTokens: 131_072, gpuMemory: 80e9, log: () => {} }, facts(140e9));
  assert.throws(refused, (e) => isUserError(e)
    && e.message.startsWith('the model does not fit in the limit of 80.00 GB (kimiLinear.gpuMemoryLimit / --gpu-memory): for 131072 tokens and 8 forks it needs weights 98.28 GB')
    && /a quantized model: --quantization fp8/.test(e.message)
    && /The CUDA backend runs unquantized weights only so far \(issue 11\)/.test(e.message));
  // A cap above the free memory is bounded by it: 60 GB free, 200 GB asked.
  assert.throws(() => planLoad(c, { gpuMemory: 200e9, contextTokens: 4096 }, facts(60e9)), (e) => isUserError(e) && /does not fit in 60\.00 GB free on Test GPU/.test(e.message));
});

test('quantized schemes are refused on the CUDA backend; bad budgets are user errors', async () => {
  const c = await loadConfigFile(CONFIG);
  assert.throws(() => planLoad(c, { quantization: 'int4' }, facts(141e9)), (e) => isUserError(e) && /does not run int4 weights yet \(issue 11\)/.test(e.message));
  assert.equal(planLoad(c, { quantization: 'auto', contextTokens: 4096 }, facts(141e9)).quantization, 'none');
  assert.throws(() => planLoad(c, { contextTokens: 2_000_000 }, facts(141e9)), (e) => isUserError(e) && /1 to 1048576 tokens/.test(e.message));
  assert.throws(() => planLoad(c, { forks: 9 }, facts(141e9)), (e) => isUserError(e) && /0 to 8, got 9/.test(e.message));
});
