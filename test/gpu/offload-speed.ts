// Device-only figures of expert offload at the real 48B widths, on a synthetic checkpoint with few
// layers (test/gpu/make_synthetic.py: layer 0 dense, the rest MoE with 256 experts of 1024, d 2304),
// INT4 at load: a 4096-token prefill and decode TPOT with every expert on the GPU, then under a
// --gpu-memory cap that offloads every MoE layer, and the difference per offloaded layer. The 48B
// model's plan on a 24 GB card (how many layers it offloads, src/engine/plan) turns that into an
// estimate of what offload adds to the full model's TPOT and prefill there.
// Usage: node offload-speed.cjs MODEL_DIR
import type { CudaBackend } from '../../src/engine/backends/cuda/backend';
import { deviceWeightBytes } from '../../src/engine/backends/cuda/device-weights';
import { Checkpoint } from '../../src/engine/model/checkpoint';
import { loadConfig, loadConfigFile } from '../../src/engine/model/config';
import { atLoadTargets } from '../../src/engine/model/quant/at-load';
import { presetScheme } from '../../src/engine/model/quant/presets';
import { loadModel, type Model } from '../../src/engine/model/model';
import { planMemory, USABLE_FRACTION, type MemoryBudget } from '../../src/engine/plan/memory-plan';
import { argmax } from '../../src/engine/sampler';
import { relError } from '../golden/golden-data';
import { join } from 'node:path';

const dir = process.argv[2];
if (!dir) throw new Error('usage: node offload-speed.cjs MODEL_DIR');
const SLICE = 4096;
const BUDGET = { contextTokens: 8192, forks: 0, sliceTokens: SLICE } as MemoryBudget;
const say = (line: string) => void process.stdout.write(`${line}\n`);

function prompt(T: number, vocab: number): Int32Array {
  let x = 12345;
  return Int32Array.from({ length: T }, () => {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    return x % vocab;
  });
}

async function measure(m: Model, ids: Int32Array): Promise<{ prefillMs: number; tpot: number; logits: Float32Array }> {
  // Warm-up: the first call grows the workspace and loads kernels.
  await m.prefill(m.newState(), ids.subarray(0, 64));
  const s = m.newState();
  const t0 = performance.now();
  let logits = await m.prefill(s, ids);
  const prefillMs = performance.now() - t0;
  const first = logits;
  const times: number[] = [];
  for (let i = 0; i < 32; i++) {
    const t = performance.now();
    logits = await m.prefill(s, Int32Array.of(argmax(logits)));
    times.push(performance.now() - t);
  }
  times.sort((a, b) => a - b);
  return { prefillMs, tpot: times[times.length >> 1], logits: first };
}

async function main(): Promise<void> {
  const cfg = await loadConfig(dir);
  const moeLayers = cfg.layers.filter((l) => l.ffn === 'moe').length;
  const ckpt = await Checkpoint.open(dir, cfg);
  const L = (await deviceWeightBytes(cfg, ckpt, { scheme: presetScheme('w4a16-g128'), targets: atLoadTargets(cfg) }, false)).weights.experts[1];
  await ckpt.close();
  const ids = prompt(SLICE, cfg.vocabSize);
  const lines: string[] = [];
  const log = (l: string) => {
    lines.push(l);
    say(l);
  };

  let t = performance.now();
  const resident = await loadModel(dir, { backend: 'cuda', quantization: 'int4', memory: BUDGET, log });
  say(`loaded resident in ${((performance.now() - t) / 1000).toFixed(0)} s`);
  const total = (resident.backend as CudaBackend).plan.gpu.total;
  const res = await measure(resident, ids);
  await resident.dispose();

  // n ≥ 1 offloaded layers need total − (n − 1) × L: half a layer below the last fits only every MoE layer.
  const gpuMemory = (total - (moeLayers - 1.5) * L) / USABLE_FRACTION;
  t = performance.now();
  const offloaded = await loadModel(dir, { backend: 'cuda', quantization: 'int4', memory: { ...BUDGET, gpuMemory }, log });
  say(`loaded offloaded in ${((performance.now() - t) / 1000).toFixed(0)} s`);
  const layers = (offloaded.backend as CudaBackend).plan.offloadedLayers;
  if (layers.length !== moeLayers) throw new Error(`expected every MoE layer offloaded under ${gpuMemory} bytes, got ${layers.join(', ')}`);
  const off = await measure(offloaded, ids);
  await offloaded.dispose();

  const perDecode = (off.tpot - res.tpot) / moeLayers;
  const perSlice = (off.prefillMs - res.prefillMs) / moeLayers;
  say(`figure: ${cfg.numLayers}-layer synthetic at 48B widths, int4: resident prefill ${SLICE} tokens ${res.prefillMs.toFixed(0)} ms (${((SLICE / res.prefillMs) * 1000).toFixed(0)} tok/s), TPOT ${res.tpot.toFixed(2)} ms`);
  say(`figure: the same with ${moeLayers} of ${moeLayers} MoE layers' experts in host memory: prefill ${off.prefillMs.toFixed(0)} ms (${((SLICE / off.prefillMs) * 1000).toFixed(0)} tok/s), TPOT ${off.tpot.toFixed(2)} ms`);
  say(`figure: per offloaded layer: decode +${perDecode.toFixed(2)} ms (CPU experts), ${SLICE}-token prefill slice +${perSlice.toFixed(1)} ms (experts staged to the GPU, ${(L / 1e9).toFixed(3)} GB)`);
  say(`figure: prefill logits resident vs offloaded: relative error ${relError(off.logits, res.logits).toExponential(2)}`);
  const published = await loadConfigFile(join(process.cwd(), 'assets', 'configs', 'kimi-linear-48b-a3b-instruct.json'));
  for (const [tokens, gb] of [[131_072, 24], [131_072, 32], [1_048_576, 32], [1_048_576, 48]] as const) {
    const p = planMemory(published, { contextTokens: tokens, forks: 8, quantization: 'auto', gpuMemory: gb * 1e9 });
    const n = p.offloadedLayers.length;
    say(`figure: 48B at ${tokens} tokens on ${gb} GB: ${p.fits ? 'fits' : 'does not fit'} at ${p.quantization}, ${n} layers offloaded → offload adds about ${(n * perDecode).toFixed(1)} ms per token and ${((n * perSlice) / 1000).toFixed(2)} s per ${SLICE}-token prefill slice`);
  }
}

main().catch((e) => {
  process.stderr.write(`${e instanceof Error ? e.stack : String(e)}\n`);
  process.exit(1);
});
