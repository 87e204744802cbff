/**
 * The plan without a GPU (klc plan, the model folder check) counts the weights and the prefill
 * dequantization buffer as the CUDA uploader sizes them: for the published 48B config under every
 * scheme, weightBytes/dequantBufferBytes against deviceWeightBytes walking the dummy checkpoint's
 * tensors (the uploader's own placement), and the buffer against figures worked out by hand.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { deviceWeightBytes } from '../../../src/engine/backends/cuda/device-weights';
import { loadConfigFile } from '../../../src/engine/model/config';
import { DummyWeights } from '../../../src/engine/model/dummy-weights';
import { atLoadTargets } from '../../../src/engine/model/quant/at-load';
import { presetScheme, SCHEME_OF } from '../../../src/engine/model/quant/presets';
import type { Quantization } from '../../../src/common/quantization';
import { dequantBufferBytes, weightBytes } from '../../../src/engine/plan/weights';

const PUBLISHED = join(__dirname, '..', '..', '..', 'assets', 'configs', 'kimi-linear-48b-a3b-instruct.json');

test('the 48B dequantization buffer: 32 routed experts in bf16 on tensor cores, all 256 in fp32 without', async () => {
  const c = await loadConfigFile(PUBLISHED);
  // 32·2·1024·2304·2 = 301,989,888 (a multiple of 256) + 32·2304·1024·2 = 150,994,944; the largest other quantized
  // matrix, the dense MLP's gate and up side by side (2·9216·2304 = 42,467,328 values), is smaller.
  assert.equal(dequantBufferBytes(c, 'int4'), 452_984_832);
  assert.equal(dequantBufferBytes(c, 'fp8'), 452_984_832);
  assert.equal(dequantBufferBytes(c, 'int8', false), 256 * 3 * 1024 * 2304 * 4);
  assert.equal(dequantBufferBytes(c, 'none'), 0);
});

test('weights and dequantization buffer: the plan\'s config arithmetic equals the uploader\'s placement of every tensor', async () => {
  const c = await loadConfigFile(PUBLISHED);
  const ckpt = new DummyWeights(c, 0, 'kimi-linear-48b-a3b-instruct.json');
  for (const q of ['none', 'fp8', 'int8', 'int4'] as Quantization[]) {
    const atLoad = q === 'none' ? null : { scheme: presetScheme(SCHEME_OF[q]), targets: atLoadTargets(c) };
    for (const tensorCores of [true, false]) {
      const placed = await deviceWeightBytes(c, ckpt, atLoad, !tensorCores);
      const planned = weightBytes(c, q);
      assert.equal(planned.resident, placed.weights.resident, `${q}: resident weights`);
      assert.deepEqual(planned.experts, placed.weights.experts, `${q}: routed experts per layer`);
      assert.equal(dequantBufferBytes(c, q, tensorCores), placed.dense, `${q}, tensor cores ${tensorCores}: dequantization buffer`);
    }
  }
});
