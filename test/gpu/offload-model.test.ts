// Device-only: expert offload on the CUDA backend (issue 11 item 4). The golden tiny checkpoint
// (fp32, exact mode: run with KLC_CUDA_EXACT=1), INT4, INT8 and FP8 at load, loaded twice: every expert
// on the GPU, and under a --gpu-memory cap between "every MoE layer offloaded" and "all but one"
// (so the plan offloads layers 1–3). Logits are compared with the resident load and with the
// reference backend on the same dequantized weights:
//   - a 200-token prefill (more rows than KLC_OFFLOAD_CPU_TOKENS: each layer's experts staged to the GPU);
//   - 16 decode steps (one row: the experts computed on the CPU while the GPU runs the shared expert);
//   - the 200-token prefill again with KLC_OFFLOAD_CPU_TOKENS=256 (the CPU path with many rows per expert).
// Tolerance: 1e-4 of the logits' scale, as test/gpu/quant-model.test.ts. Also prints TPOT with and
// without offload (the tiny model: the fixed costs of the host round trip, not the 48B model's).
// Bundled and run by test/gpu/run-offload.sh; skipped (with the reason) where no GPU is usable.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join, resolve } from 'node:path';
import type { CudaBackend } from '../../src/engine/backends/cuda/backend';
import { deviceWeightBytes, type AtLoad } from '../../src/engine/backends/cuda/device-weights';
import { loadCudaBackend } from '../../src/engine/backends/cuda/loader';
import { Checkpoint } from '../../src/engine/model/checkpoint';
import { loadConfig } from '../../src/engine/model/config';
import { atLoadTargets } from '../../src/engine/model/quant/at-load';
import { presetScheme, SCHEME_OF } from '../../src/engine/model/quant/presets';
import { loadModel, type Model } from '../../src/engine/model/model';
import { USABLE_FRACTION, type MemoryBudget } from '../../src/engine/plan/memory-plan';
import { argmax } from '../../src/engine/sampler';
import { relError } from '../golden/golden-data';
import { deviceSkip } from './device';

const GOLDEN = resolve(process.env.KLC_GOLDEN_DIR ?? join(__dirname, '..', '..', 'shared', 'golden'));
const TINY_PUBLIC = join(GOLDEN, 'tiny-kimi-public');
const cuda = loadCudaBackend();
const skip = deviceSkip(cuda);
const TOLERANCE = 1e-4;
/** A fixed slice, so that the cap decides only how many layers are offloaded. */
const BUDGET = { contextTokens: 4096, forks: 0, sliceTokens: 512 } as MemoryBudget;

function report(line: string): void {
  process.stdout.write(`figure: ${line}\n`);
}

const prompt = Int32Array.from({ length: 200 }, (_, i) => (i * 7919 + 11) % 1000);

/** One MoE layer's routed experts in bytes under `q` at load, as the CUDA backend places them (exact mode: fp32 dense buffer). */
async function expertBytes(q: 'int4' | 'int8' | 'fp8'): Promise<number> {
  const cfg = await loadConfig(TINY_PUBLIC);
  const ckpt = await Checkpoint.open(TINY_PUBLIC, cfg);
  try {
    const atLoad: AtLoad = { scheme: presetScheme(SCHEME_OF[q]), targets: atLoadTargets(cfg) };
    return (await deviceWeightBytes(cfg, ckpt, atLoad, true)).weights.experts[1];
  } finally {
    await ckpt.close();
  }
}

function planOf(m: Model): CudaBackend['plan'] {
  return (m.backend as CudaBackend).plan;
}

/** Median milliseconds per decode step over `steps` greedy steps after a 5-token prefill. */
async function tpot(m: Model, steps = 32): Promise<number> {
  const s = m.newState();
  let logits = await m.prefill(s, prompt.subarray(0, 5));
  const times: number[] = [];
  for (let i = 0; i < steps; i++) {
    const t0 = performance.now();
    logits = await m.prefill(s, Int32Array.of(argmax(logits)));
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)];
}

async function decodeError(a: Model, b: Model): Promise<number> {
  const as = a.newState();
  const bs = b.newState();
  let x = await a.prefill(as, prompt.subarray(0, 5));
  let y = await b.prefill(bs, prompt.subarray(0, 5));
  let worst = 0;
  for (let step = 0; step < 16; step++) {
    worst = Math.max(worst, relError(x, y));
    const next = Int32Array.of(argmax(y));
    x = await a.prefill(as, next);
    y = await b.prefill(bs, next);
  }
  return worst;
}

for (const q of ['int4', 'int8', 'fp8'] as const) {
  test(`${q} at load with routed experts offloaded: CUDA logits equal the resident load's and the reference's`, { skip }, async () => {
    const lines: string[] = [];
    const log = (l: string) => lines.push(l);
    const resident = await loadModel(TINY_PUBLIC, { backend: 'cuda', quantization: q, memory: BUDGET, log });
    const ref = await loadModel(TINY_PUBLIC, { backend: 'reference', quantization: q, log });
    let offloaded: Model | null = null;
    let cpuPrefill: Model | null = null;
    try {
      const r = planOf(resident);
      assert.deepEqual(r.offloadedLayers, []);
      // n ≥ 1 offloaded layers need total − (n − 1) × L (the staging buffer holds one layer's L):
      // a cap of total − 1.5 L fits only n = 3, every MoE layer of the tiny model.
      const L = await expertBytes(q);
      const gpuMemory = (r.gpu.total - 1.5 * L) / USABLE_FRACTION;
      offloaded = await loadModel(TINY_PUBLIC, { backend: 'cuda', quantization: q, memory: { ...BUDGET, gpuMemory }, log });
      const o = planOf(offloaded);
      assert.deepEqual(o.offloadedLayers, [1, 2, 3]);
      assert.equal(o.host.experts, 3 * L);
      const said = lines.find((l) => l.includes('pinned host memory'));
      assert.ok(said, `the load says where the experts are: ${lines.join(' | ')}`);
      report(`${q}: ${said}`);

      const want = await ref.prefill(ref.newState(), prompt, { logits: 'all' });
      const base = await resident.prefill(resident.newState(), prompt, { logits: 'all' });
      const staged = await offloaded.prefill(offloaded.newState(), prompt, { logits: 'all' });
      const eStagedRes = relError(staged, base);
      const eStagedRef = relError(staged, want);
      report(`${q} offloaded, 200-token prefill staged to the GPU: logits relative error ${eStagedRes.toExponential(2)} vs resident, ${eStagedRef.toExponential(2)} vs reference`);
      assert.ok(eStagedRes < TOLERANCE && eStagedRef < TOLERANCE, `${q} staged prefill: ${eStagedRes}, ${eStagedRef} ≥ ${TOLERANCE}`);

      const eDecRef = await decodeError(offloaded, ref);
      const eDecRes = await decodeError(offloaded, resident);
      report(`${q} offloaded, 16 decode steps on the CPU experts: worst logits relative error ${eDecRes.toExponential(2)} vs resident, ${eDecRef.toExponential(2)} vs reference`);
      assert.ok(eDecRes < TOLERANCE && eDecRef < TOLERANCE, `${q} offloaded decode: ${eDecRes}, ${eDecRef} ≥ ${TOLERANCE}`);

      process.env.KLC_OFFLOAD_CPU_TOKENS = '256';
      try {
        cpuPrefill = await loadModel(TINY_PUBLIC, { backend: 'cuda', quantization: q, memory: { ...BUDGET, gpuMemory }, log });
      } finally {
        delete process.env.KLC_OFFLOAD_CPU_TOKENS;
      }
      const onCpu = await cpuPrefill.prefill(cpuPrefill.newState(), prompt, { logits: 'all' });
      const eCpu = relError(onCpu, want);
      report(`${q} offloaded, 200-token prefill on the CPU experts (KLC_OFFLOAD_CPU_TOKENS=256): logits relative error ${eCpu.toExponential(2)} vs reference`);
      assert.ok(eCpu < TOLERANCE, `${q} CPU prefill: ${eCpu} ≥ ${TOLERANCE}`);

      const tRes = await tpot(resident);
      const tOff = await tpot(offloaded);
      report(`${q} tiny model TPOT: ${tRes.toFixed(3)} ms resident, ${tOff.toFixed(3)} ms with 3 of 3 MoE layers offloaded`);
    } finally {
      await resident.dispose();
      await ref.dispose();
      await offloaded?.dispose();
      await cpuPrefill?.dispose();
    }
  });
}

test('bf16 experts are not offloaded: an explicit unquantized load on a small cap is refused with the plan\'s advice, not run half on the CPU', { skip }, async () => {
  const r = await loadModel(TINY_PUBLIC, { backend: 'cuda', memory: BUDGET, log: () => {} });
  const total = planOf(r).gpu.total;
  await r.dispose();
  await assert.rejects(loadModel(TINY_PUBLIC, { backend: 'cuda', memory: { ...BUDGET, gpuMemory: (total * 0.9) / USABLE_FRACTION }, log: () => {} }), /does not fit/);
});
