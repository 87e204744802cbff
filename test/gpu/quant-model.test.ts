// Device-only: INT4, INT8 and FP8 E4M3 weights on the CUDA backend against the reference backend
// running the same weights dequantized (the executable spec), on the golden tiny checkpoint (fp32,
// exact mode: run with KLC_CUDA_EXACT=1): quantized at load (--quantization int4|int8|fp8) and
// stored as a compressed-tensors checkpoint (klc quantize w4a16-g128 / w8a16 / fp8-dynamic, the
// last float-quantized: E4M3 bytes uploaded as they are, 1 byte per weight). Covers both paths of every
// quantized linear and of the routed experts: a 200-token prefill (dequantize + GEMM, experts
// dequantized for klc_moe_experts) and decode steps (klc_wq_gemv, the small-batch MoE on codes).
// Dummy weights quantized at load are quantized on the GPU; the reference quantizes the same values
// on the host, so the two agree only if the codes and scales are the same.
// Tolerance: 1e-4 of the logits' scale (the GPU sums in another order; the weights are the same numbers).
// Bundled and run by test/gpu/run-quant.sh; skipped (with the reason) where no GPU is usable.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { loadCudaBackend } from '../../src/engine/backends/cuda/loader';
import { loadModel, type LoadOptions, type Model } from '../../src/engine/model/model';
import { quantizeCheckpoint } from '../../src/engine/model/quant/write-checkpoint';
import { argmax } from '../../src/engine/sampler';
import { relError } from '../golden/golden-data';
import { deviceSkip } from './device';

const GOLDEN = resolve(process.env.KLC_GOLDEN_DIR ?? join(__dirname, '..', '..', 'shared', 'golden'));
const TINY_PUBLIC = join(GOLDEN, 'tiny-kimi-public');
const cuda = loadCudaBackend();
const skip = deviceSkip(cuda);
const TOLERANCE = 1e-4;

function report(line: string): void {
  process.stdout.write(`figure: ${line}\n`);
}

const prompt = Int32Array.from({ length: 200 }, (_, i) => (i * 7919 + 11) % 1000);

/** Prefill logits of every position, then 16 greedy decode steps (the reference's tokens fed to both). */
async function compare(label: string, dir: string, opts: LoadOptions): Promise<void> {
  const gpu = await loadModel(dir, { ...opts, backend: 'cuda' });
  const ref = await loadModel(dir, { ...opts, backend: 'reference' });
  try {
    assert.equal(gpu.backend.name, 'cuda');
    assert.equal(gpu.weights, ref.weights, 'both backends load the same quantization');
    assert.notEqual(gpu.weights, 'none');
    const all = await gpu.prefill(gpu.newState(), prompt, { logits: 'all' });
    const want = await ref.prefill(ref.newState(), prompt, { logits: 'all' });
    const e = relError(all, want);
    report(`${label} (${gpu.weights}): 200-token prefill logits relative error ${e.toExponential(2)}`);
    assert.ok(e < TOLERANCE, `${label} prefill: ${e} ≥ ${TOLERANCE}`);
    await decode(label, gpu, ref);
  } finally {
    await gpu.dispose();
    await ref.dispose();
  }
}

async function decode(label: string, gpu: Model, ref: Model): Promise<void> {
  const gs = gpu.newState();
  const rs = ref.newState();
  let g = await gpu.prefill(gs, prompt.subarray(0, 5));
  let r = await ref.prefill(rs, prompt.subarray(0, 5));
  let worst = 0;
  for (let step = 0; step < 16; step++) {
    worst = Math.max(worst, relError(g, r));
    const next = Int32Array.of(argmax(r));
    g = await gpu.prefill(gs, next);
    r = await ref.prefill(rs, next);
  }
  report(`${label}: 16 decode steps, worst logits relative error ${worst.toExponential(2)}`);
  assert.ok(worst < TOLERANCE, `${label} decode: ${worst} ≥ ${TOLERANCE}`);
}

test('INT4, INT8 and FP8 quantized at load: CUDA logits equal the reference\'s on the dequantized weights', { skip }, async () => {
  await compare('int4 at load', TINY_PUBLIC, { quantization: 'int4' });
  await compare('int8 at load', TINY_PUBLIC, { quantization: 'int8' });
  await compare('fp8 at load', TINY_PUBLIC, { quantization: 'fp8' });
});

test('dummy weights quantized at load are quantized on the GPU (klc_wq_quantize_bf16) into the codes the host quantizer gives the reference', { skip }, async () => {
  const dummy = { configFile: join(TINY_PUBLIC, 'config.json'), seed: 11 };
  await compare('dummy int4 at load', TINY_PUBLIC, { quantization: 'int4', dummy });
  await compare('dummy int8 at load', TINY_PUBLIC, { quantization: 'int8', dummy });
  await compare('dummy fp8 at load', TINY_PUBLIC, { quantization: 'fp8', dummy });
});

test('stored compressed-tensors checkpoints (w4a16-g128, w8a16, fp8-dynamic) run quantized on CUDA and equal the reference', { skip }, async () => {
  for (const scheme of ['w4a16-g128', 'w8a16', 'fp8-dynamic'] as const) {
    const out = mkdtempSync(join(tmpdir(), `klc-quant-${scheme}-`));
    try {
      await quantizeCheckpoint(TINY_PUBLIC, join(out, 'model'), scheme, () => {});
      await compare(`stored ${scheme}`, join(out, 'model'), {});
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  }
});
