// The CUDA backend's memory plan, checked without a GPU: the weight bytes it reserves equal the
// checkpoint's tensors at the dtypes the uploader uses, the state grows with the MLA latents only,
// and the spec's 48B model does not fit an 80 GB card while the bundled model does.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { loadConfig } from '../../../src/engine/model/config';
import { Checkpoint } from '../../../src/engine/model/checkpoint';
import { mlaHeadsScratchBytes, planMemory, stateBytes, tensorCoreScratchBytes, weightBytes } from '../../../src/engine/backends/cuda/memory-plan';

const TINY = join(__dirname, '..', '..', '..', 'assets', 'tiny-model');
/** Tensors the uploader keeps in fp32 (the router too); everything else is a bf16 matrix. */
const F32_NAMES = /(layernorm|norm)\.weight$|conv1d\.weight$|A_log$|dt_bias$|e_score_correction_bias$|block_sparse_moe\.gate\.weight$/;

test('weight bytes equal the bundled checkpoint at the uploaded dtypes', async () => {
  const config = await loadConfig(TINY);
  const ckpt = await Checkpoint.open(TINY, config);
  try {
    let want = 0;
    for (const name of ckpt.names) {
      if (config.tieWordEmbeddings && name === 'lm_head.weight') continue;
      const n = ckpt.info(name).shape.reduce((a, b) => a * b, 1);
      want += n * (F32_NAMES.test(name) ? 4 : 2);
    }
    assert.equal(weightBytes(config), want);
  } finally {
    await ckpt.close();
  }
});

test('state bytes: KDA state is fixed, MLA latents grow by one fp32 row per token and layer', async () => {
  const c = await loadConfig(TINY);
  const mlaLayers = c.layers.filter((l) => l.attention === 'mla').length;
  const row = (c.mla.kvLoraRank + c.mla.qkRopeHeadDim) * 4;
  assert.equal(stateBytes(c, 1000) - stateBytes(c, 0), 1000 * mlaLayers * row);
  const kdaLayers = c.layers.length - mlaLayers;
  const { numHeads: H, headDim: K, convKernel: W } = c.kda;
  assert.equal(stateBytes(c, 0), kdaLayers * (H * K * K + 3 * H * K * (W - 1)) * 4);
});

test('the 48B model needs more than an 80 GB card holds; the bundled model a few MB', async () => {
  const tiny = await loadConfig(TINY);
  const p = planMemory(tiny, 8192, 1024, 0, 0);
  assert.ok(p.total < 200e6, `${p.total}`);
  assert.equal(p.total, p.weights + p.state + p.workspace);
  const big = {
    ...tiny,
    vocabSize: 163840,
    hiddenSize: 2304,
    intermediateSize: 9216,
    kda: { numHeads: 32, headDim: 128, convKernel: 4 },
    mla: { ...tiny.mla, numHeads: 32, qkNopeHeadDim: 128, qkRopeHeadDim: 64, vHeadDim: 128, kvLoraRank: 512 },
    moe: { ...tiny.moe, numExperts: 256, topK: 8, intermediateSize: 1024, numSharedExperts: 1 },
    layers: Array.from({ length: 27 }, (_, i) => ({ attention: (i + 1) % 4 === 0 || i === 26 ? 'mla' : 'kda', ffn: i === 0 ? 'dense' : 'moe' }) as const),
  };
  // The spec's parameter total (49,122,681,728) in bf16, with small tensors in fp32.
  const w = weightBytes(big);
  assert.ok(w > 98.2e9 && w < 98.3e9, `${w}`);
});

test('tensor-core mode reserves its staging: the 1 GiB MLA score block, bf16 latents of the context, bf16 slices', async () => {
  const c = await loadConfig(TINY);
  const exact = planMemory(c, 4096, 512, 1000, 2000);
  const fast = planMemory(c, 4096, 512, 1000, 2000, 2, true);
  assert.equal(fast.weights, exact.weights);
  assert.equal(fast.total - exact.total, tensorCoreScratchBytes(c, 4096, 512));
  const D = c.mla.kvLoraRank + c.mla.qkRopeHeadDim;
  assert.equal(tensorCoreScratchBytes(c, 5096, 512) - tensorCoreScratchBytes(c, 4096, 512), 1000 * D * 2);
  assert.ok(tensorCoreScratchBytes(c, 0, 0) >= 2 ** 30);
});

test('the flash MLA prefill stages one 8192-key block of per-head keys/values and the slice\'s carried softmax', async () => {
  const tiny = await loadConfig(TINY);
  const c = { ...tiny, mla: { ...tiny.mla, numHeads: 32, qkNopeHeadDim: 128, qkRopeHeadDim: 64, vHeadDim: 128, kvLoraRank: 512 } };
  // Per key: fp32 up-projection 32 x 128, bf16 latent 512, bf16 keys 32 x 192 and values 32 x 128 (mla_flash.cu).
  const perKey = 32 * 128 * 4 + 512 * 2 + 32 * 192 * 2 + 32 * 128 * 2;
  const weights = 32 * 128 * 512 * 2;
  const perToken = 32 * 130 * 4;
  assert.equal(mlaHeadsScratchBytes(c, 8192), 8192 * perKey + weights + 8192 * perToken + 6 * 256);
  assert.equal(tensorCoreScratchBytes(c, 0, 100) - tensorCoreScratchBytes(c, 0, 0) - (mlaHeadsScratchBytes(c, 100) - mlaHeadsScratchBytes(c, 0)),
    100 * 32 * 576 * 2 + 100 * Math.max(c.hiddenSize, c.kda.numHeads * c.kda.headDim, 32 * 512, c.intermediateSize, 32 * 192) * 2);
});
