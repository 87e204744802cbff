/**
 * The CUDA backend's load-time plan without a GPU: the device's free memory and the user's budget
 * in, the planned context (logged when chosen) or a refusal with numbers out. Expected values are
 * worked out by hand for the published 48B config (see test/unit/plan/memory-plan.test.ts for the
 * components: bf16 weights 98,278,444,544, KDA state 44,892,160, a fork 103,612,416 (bf16 MLA rows in
 * tensor-core mode), the 512-token workspace 2,343,790,880 and the 1024-token one 2,834,657,568).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { isUserError } from '../../../src/common/errors';
import { loadConfigFile } from '../../../src/engine/model/config';
import { CUDA_SCHEMES, planFigures, planLoad, type DeviceFacts } from '../../../src/engine/backends/cuda/load-plan';
import { planMemory } from '../../../src/engine/plan/memory-plan';
import type { KimiConfig } from '../../../src/engine/model/config';
import type { Quantization } from '../../../src/common/quantization';
import { dequantBufferBytes, weightBytes } from '../../../src/engine/plan/weights';

const CONFIG = join(__dirname, '..', '..', '..', 'assets', 'configs', 'kimi-linear-48b-a3b-instruct.json');
/** The device with the plan's formula bytes for each scheme and no dequantization buffer, unless `dense` gives one. */
const facts = (free: number, c?: KimiConfig, extra: Partial<DeviceFacts> = {}): DeviceFacts => ({
  free,
  matrixBytes: 2,
  tensorCores: true,
  sampleScratch: 53_477_408,
  gpuName: 'Test GPU',
  dir: '/models/kimi',
  schemes: ['none', 'fp8', 'int8', 'int4'],
  weights: (q: Quantization) => ({ bytes: weightBytes(c as KimiConfig, q, 2), dense: 0 }),
  ...extra,
});

test('without a budget the longest context that fits is planned and logged', async () => {
  const c = await loadConfigFile(CONFIG);
  const lines: string[] = [];
  // 110 GB free → 104.5e9 usable. Fixed at 512-token slices: 98,278,444,544 + 44,892,160 + 8 × 103,612,416
  //   + 7 × 134,217,728 (growth extents) + 2,343,790,880 = 102,435,551,008, leaving 2,064,448,992 / 7 = 294,921,284 per
  //   MLA layer: 140 granules (293,601,280). 254,862 × 1152 = 293,601,024 fits, 254,863 tokens do not; in 1024-token
  //   steps 253,952 (292,552,704 B, still 140 granules) → 102,435,551,008 + 7 × 293,601,280 = 104,490,759,968.
  //   1024-token slices would add 2,834,657,568 − 2,343,790,880 = 490,866,688: too much.
  const plan = planLoad(c, { log: (l) => lines.push(l) }, facts(110e9, c));
  assert.equal(plan.contextTokens, 253_952);
  assert.equal(plan.sliceTokens, 512);
  assert.equal(plan.gpu.total, 104_490_759_968);
  assert.deepEqual(lines, ['cuda: planned for a context of 253952 tokens and 8 forks (the config allows 1048576, more does not fit)']);
  // 141 GB free holds the config's whole 1,048,576 tokens (118,254,268,192 at 8192-token slices, see the plan tests).
  const full = planLoad(c, { log: (l) => lines.push(l) }, facts(141e9, c));
  assert.equal(full.contextTokens, 1_048_576);
  assert.equal(full.sliceTokens, 8192);
  assert.equal(full.gpu.total, 118_254_268_192);
  assert.equal(lines[1], 'cuda: planned for a context of 1048576 tokens and 8 forks (the config\'s maximum)');
});

test('a budget that does not fit is refused with the numbers and the advice', async () => {
  const c = await loadConfigFile(CONFIG);
  // --gpu-memory 80GB on a card with 140 GB free: bf16 weights alone (98.28 GB) exceed 76 GB usable.
  const refused = () => planLoad(c, { contextTokens: 131_072, gpuMemory: 80e9, log: () => {} }, facts(140e9, c));
  assert.throws(refused, (e) => isUserError(e)
    && e.message.startsWith('the model does not fit in the limit of 80.00 GB (kimiLinear.gpuMemoryLimit / --gpu-memory): for 131072 tokens and 8 forks it needs weights 98.28 GB')
    && /a quantized model: --quantization fp8 needs 62\.59 GB/.test(e.message));
  // A cap above the free memory is bounded by it: 60 GB free, 200 GB asked.
  assert.throws(() => planLoad(c, { gpuMemory: 200e9, contextTokens: 4096 }, facts(60e9, c)), (e) => isUserError(e) && /does not fit in 60\.00 GB free on Test GPU/.test(e.message));
});

test('fp8, int8 and int4 are planned with the weights\' device bytes; quantizing a stored quantized checkpoint is refused', async () => {
  const c = await loadConfigFile(CONFIG);
  const int4 = planLoad(c, { quantization: 'int4', contextTokens: 4096 }, facts(141e9, c));
  assert.equal(int4.quantization, 'int4');
  assert.equal(int4.gpu.weights, weightBytes(c, 'int4').resident + weightBytes(c, 'int4').experts.reduce((a, b) => a + b, 0));
  // The dequantization buffer is part of the workspace.
  const withDense = planLoad(c, { quantization: 'int4', contextTokens: 4096 }, facts(141e9, c, { weights: (q) => ({ bytes: weightBytes(c, q), dense: 3e9 }) }));
  assert.equal(withDense.gpu.workspace - int4.gpu.workspace, 3e9);
  // fp8: one byte per weight, 50,017,362,304 bytes (memory-plan.test.ts), as int8.
  const fp8 = planLoad(c, { quantization: 'fp8', contextTokens: 4096 }, facts(141e9, c));
  assert.deepEqual([fp8.quantization, fp8.gpu.weights], ['fp8', 50_017_362_304]);
  const stored = facts(141e9, c, { schemes: ['none'] });
  assert.throws(() => planLoad(c, { quantization: 'int8', contextTokens: 4096 }, stored), (e) => isUserError(e) && /is already quantized/.test(e.message));
  assert.equal(planLoad(c, { quantization: 'auto', contextTokens: 4096 }, stored).quantization, 'none');
});

test('auto plans unquantized weights where they fit and the least quantization that fits elsewhere, in klc plan\'s order', async () => {
  const c = await loadConfigFile(CONFIG);
  assert.deepEqual(CUDA_SCHEMES, ['none', 'fp8', 'int8', 'int4']);
  assert.equal(planLoad(c, { quantization: 'auto', contextTokens: 4096 }, facts(141e9, c)).quantization, 'none');
  // 80 GB: bf16 (98.28 GB) does not fit, fp8 (50.02 GB + 8.65 GB at 128k) does.
  assert.equal(planLoad(c, { quantization: 'auto', contextTokens: 131_072 }, facts(80e9, c)).quantization, 'fp8');
  // The GPU-free plan (klc plan) chooses the same on every card size, given the weights and dequantization buffer
  // the backend counts (dequant-buffer.test.ts checks them against the uploader's own placement).
  const counted = facts(200e9, c, { weights: (q) => ({ bytes: weightBytes(c, q, 2), dense: dequantBufferBytes(c, q) }) });
  for (const gb of [24, 32, 40, 48, 80, 141]) {
    const cuda = planLoad(c, { quantization: 'auto', contextTokens: 131_072, gpuMemory: gb * 1e9, log: () => {} }, counted);
    const plain = planMemory(c, { quantization: 'auto', contextTokens: 131_072, forks: 8, gpuMemory: gb * 1e9, sampleScratch: 53_477_408 });
    assert.deepEqual([cuda.quantization, cuda.offloadedLayers, cuda.gpu.total], [plain.quantization, plain.offloadedLayers, plain.gpu.total], `${gb} GB`);
  }
  // 40 GB: only int4 (about 27 GB) fits.
  assert.equal(planLoad(c, { quantization: 'auto', contextTokens: 131_072 }, facts(40e9, c)).quantization, 'int4');
  // Without a context budget, auto does not quantize for a longer context: bf16 fits at 110 GB.
  const lines: string[] = [];
  const unbudgeted = planLoad(c, { quantization: 'auto', log: (l) => lines.push(l) }, facts(110e9, c));
  assert.equal(unbudgeted.quantization, 'none');
  assert.equal(unbudgeted.contextTokens, 253_952);
});

test('bad budgets are user errors', async () => {
  const c = await loadConfigFile(CONFIG);
  assert.throws(() => planLoad(c, { contextTokens: 2_000_000 }, facts(141e9, c)), (e) => isUserError(e) && /1 to 1048576 tokens/.test(e.message));
  assert.throws(() => planLoad(c, { forks: 9 }, facts(141e9, c)), (e) => isUserError(e) && /0 to 8, got 9/.test(e.message));
});

test('INT4 on a card too small for every expert: the last MoE layers\' experts are planned in host memory and the figures say so', async () => {
  const c = await loadConfigFile(CONFIG);
  // 128k tokens, 8 forks, a 24 GB cap (22.8e9 usable), no dequantization buffer in these facts: at 1024-token slices
  // 26,552,952,064 + staging 934,281,216 + 5,704,937,760 = 33,192,171,040 − k × 934,281,216: 11 layers 22,915,077,664
  // no, 12 → 21,980,796,448, layers 15–26; 12 × 934,281,216 = 11,211,374,592 in host memory.
  const plan = planLoad(c, { quantization: 'int4', contextTokens: 131_072, gpuMemory: 24e9, log: () => {} }, facts(80e9, c));
  assert.deepEqual(plan.offloadedLayers, [15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26]);
  assert.equal(plan.gpu.total, 21_980_796_448);
  assert.equal(plan.host.experts, 11_211_374_592);
  assert.match(planFigures(plan), /= 21\.98 GB, with the routed experts of 12 layers \(11\.21 GB\) in host memory$/);
  // FP8 experts are offloaded too (1 byte per weight: 1,814,167,552 per layer, weights 50,017,362,304): on the same cap
  //   50,017,362,304 − 20 × 1,814,167,552 + staging 1,814,167,552 + 5,704,937,760 (the rest at 1024-token slices)
  //   = 21,253,116,576 ≤ 22.8e9, and 2048-token slices (+981,733,376) still fit: 22,234,849,952. 19 layers
  //   (23,067,284,128 at 1024) fit only at 512-token slices, tried after 1024 at every count.
  const fp8 = planLoad(c, { quantization: 'fp8', contextTokens: 131_072, gpuMemory: 24e9, log: () => {} }, facts(80e9, c));
  assert.deepEqual(fp8.offloadedLayers, Array.from({ length: 20 }, (_, i) => 7 + i));
  assert.deepEqual([fp8.gpu.total, fp8.host.experts, fp8.sliceTokens], [22_234_849_952, 36_283_351_040, 2048]);
  // Unquantized experts are never offloaded (the CPU runs INT4/INT8/FP8): bf16 on the same cap is refused.
  assert.throws(() => planLoad(c, { quantization: 'none', contextTokens: 131_072, gpuMemory: 24e9, log: () => {} }, facts(80e9, c)), (e) => isUserError(e) && /does not fit/.test(e.message));
  // A stored INT4 checkpoint plans as 'none' with quantized experts: it offloads too.
  const stored = planLoad(c, { contextTokens: 131_072, gpuMemory: 24e9, log: () => {} }, facts(80e9, c, { schemes: ['none'], weights: () => ({ bytes: weightBytes(c, 'int4', 2), dense: 0 }), quantizedExperts: () => true }));
  assert.equal(stored.offloadedLayers.length, 12);
});

test('a prefill slice the user asks for is planned as asked, and one out of range is refused naming the option', async () => {
  const c = await loadConfigFile(CONFIG);
  // 141 GB free, 131,072 tokens: the default is the longest choice that fits (8192); 16,384 asked for is
  // planned with its larger workspace.
  const byDefault = planLoad(c, { contextTokens: 131_072, log: () => {} }, facts(141e9, c));
  const asked = planLoad(c, { contextTokens: 131_072, sliceTokens: 16_384, log: () => {} }, facts(141e9, c));
  assert.equal(byDefault.sliceTokens, 8192);
  assert.equal(asked.sliceTokens, 16_384);
  assert.ok(asked.gpu.workspace > 1.5 * byDefault.gpu.workspace, `${asked.gpu.workspace} vs ${byDefault.gpu.workspace}`);
  for (const bad of [32, 65_537, 1.5]) {
    assert.throws(() => planLoad(c, { contextTokens: 4096, sliceTokens: bad, log: () => {} }, facts(141e9, c)),
      (e) => isUserError(e) && e.message === `the prefill slice must be 64 to 65536 tokens, got ${bad}.`);
  }
});
