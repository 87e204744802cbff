// Device-only: the memory plan's ports of the native scratch formulas (src/engine/plan/workspace.ts)
// give exactly what the native library asks for, and its bound of the sampling buffers (CUB's
// temporary storage can only be sized by a CUDA call) is never below the native figure. Bundled by
// test/gpu/prepare-model.sh, run by test/gpu/run-batch.sh.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadConfig, parseConfig, type KimiConfig } from '../../src/engine/model/config';
import { loadCudaBackend } from '../../src/engine/backends/cuda/loader';
import { mlaScratchBytes, moeDenseBytes, moeScratchBytes, SAMPLE_ROWS, sampleScratchBytes } from '../../src/engine/plan/workspace';

/** Run from the repository root (the bundle lives in .device/, so __dirname does not lead there). */
const ROOT = process.cwd();

async function configs(): Promise<[string, KimiConfig][]> {
  const published = parseConfig(JSON.parse(readFileSync(join(ROOT, 'assets', 'configs', 'kimi-linear-48b-a3b-instruct.json'), 'utf8')));
  return [['48B', published], ['tiny', await loadConfig(process.env.KLC_TINY_MODEL ?? join(ROOT, 'assets', 'tiny-model'))]];
}

test('MoE, MLA and sampling scratch and the MoE dequantization buffer: the plan against the native library', async (t) => {
  const cuda = loadCudaBackend();
  if (!cuda.ok) {
    t.skip(`no GPU: ${cuda.reason}`);
    return;
  }
  const { native } = cuda;
  const ctx = native.create(0);
  try {
    for (const [name, c] of await configs()) {
      for (const T of [1, 7, 64, 100, 512, 1000, 2048, 4096]) {
        const moe = native.moeWorkspaceBytes(ctx, T, c.hiddenSize, c.moe.intermediateSize, c.moe.numExperts, c.moe.topK);
        assert.equal(moeScratchBytes(c, T), moe, `${name} MoE scratch at T=${T}`);
        const mla = native.mlaWorkspaceBytes(ctx, 2 * T * c.mla.numHeads + 32 * 256, c.mla.kvLoraRank, 1);
        assert.equal(mlaScratchBytes(c, T), mla, `${name} MLA scratch at T=${T}`);
      }
      for (const f32 of [false, true]) {
        const dense = native.moeDenseBytes(ctx, c.hiddenSize, c.moe.intermediateSize, c.moe.numExperts, f32 ? 1 : 0);
        assert.equal(moeDenseBytes(c, f32), dense, `${name} quantized experts' dequantization buffer (${f32 ? 'fp32' : 'bf16'})`);
      }
      const sampling = native.sampleWorkspaceBytes(ctx, SAMPLE_ROWS, c.vocabSize) + SAMPLE_ROWS * 4;
      const bound = sampleScratchBytes(c);
      assert.ok(bound >= sampling, `${name}: sampling bound ${bound} < native ${sampling}`);
      process.stdout.write(`figure: ${name} sampling buffers native ${sampling} B, plan bound ${bound} B\n`);
    }
  } finally {
    native.destroy(ctx);
  }
});
