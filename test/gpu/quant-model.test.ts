// Device-only: INT4, INT8 and FP8 E4M3 weights on the CUDA backend against the reference backend
// running the same weights dequantized (the executable spec), on the golden tiny checkpoint (fp32,
// exact mode: run with KLC_CUDA_EXACT=1): quantized at load (--quantization int4|int8|fp8) and
// stored as a compressed-tensors checkpoint (klc quantize w4a16-g128 / w8a16 / fp8-dynamic, the
// last float-quantized: E4M3 bytes uploaded as they are, 1 byte per weight). Covers both paths of every
// quantized linear and of the routed experts: a 200-token prefill (dequantize + GEMM, experts
// dequantized for klc_moe_experts) and decode steps (klc_wq_gemv, the small-batch MoE on codes).
// Dummy weights, and a bf16 checkpoint's stored bytes, quantized at load are quantized on the GPU; the
// reference quantizes the same values on the host, so the two agree only if the codes and scales are
// the same. GPTQ and AWQ checkpoints (the unit tests' independent writer) go through the same kernels.
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
import { awqConfig, gptqConfig, writeInputMajorGolden, type InputMajorSpec } from '../unit/engine/quant/gptq-writer';

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

test('a bf16 checkpoint quantized at load: its stored bytes quantized on the GPU (klc_wq_quantize_bf16) give the reference\'s codes', { skip }, async () => {
  const tiny = resolve(process.env.KLC_TINY_MODEL ?? join('assets', 'tiny-model'));
  await compare('bf16 checkpoint, int4 at load', tiny, { quantization: 'int4' });
  await compare('bf16 checkpoint, int8 at load', tiny, { quantization: 'int8' });
  await compare('bf16 checkpoint, fp8 at load', tiny, { quantization: 'fp8' });
});

test('GPTQ and AWQ checkpoints (the test writer\'s) run quantized on CUDA and equal the reference', { skip }, async () => {
  const layers = (spec: InputMajorSpec) => (m: string) => (m === 'lm_head' ? null : spec);
  for (const [label, spec, config] of [
    ['GPTQ v1 INT4 g32 sym', { kind: 'gptq', bits: 4, group: 32, symmetric: true, v2: false }, gptqConfig(4, 32, true, false, 'gptq')],
    ['GPTQ v1 INT4 g64 asym', { kind: 'gptq', bits: 4, group: 64, symmetric: false, v2: false }, gptqConfig(4, 64, false, false, 'gptq')],
    ['GPTQ v2 INT8 per channel', { kind: 'gptq', bits: 8, group: -1, symmetric: true, v2: true }, gptqConfig(8, -1, true, false, 'gptq_v2')],
    ['AWQ INT4 g32', { kind: 'awq', group: 32, zeroPoint: true }, awqConfig(32, true)],
  ] as const) {
    const { quantized, dequantized } = await writeInputMajorGolden(layers(spec), config, undefined, TINY_PUBLIC);
    try {
      await compare(`stored ${label}`, quantized, {});
    } finally {
      rmSync(quantized, { recursive: true, force: true });
      rmSync(dequantized, { recursive: true, force: true });
    }
  }
});
