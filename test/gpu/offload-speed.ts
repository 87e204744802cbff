// Device-only figures of expert offload on the 48B model's real shapes: dummy weights for
// assets/configs/kimi-linear-48b-a3b-instruct.json quantized to INT4 at load (on the GPU), a
// 128k-token context budget with 8 forks, loaded once with the GPU's memory and once under
// --gpu-memory 24GB, where the plan moves the routed experts of the last MoE layers to pinned host
// memory. For each: the plan, a 4096-token prefill (tokens/s; offloaded layers' experts staged to
// the GPU per slice) and decode TPOT (offloaded layers' experts on the CPU), and the logits'
// difference between the two loads (the same weights: only rounding order differs).
// Usage: node offload-speed.cjs [GPU_MEMORY_GB]   (run from the repository root)
import { join } from 'node:path';
import type { CudaBackend } from '../../src/engine/backends/cuda/backend';
import { loadModel, type Model } from '../../src/engine/model/model';
import type { MemoryBudget } from '../../src/engine/plan/memory-plan';
import { gb } from '../../src/common/sizes';
import { argmax } from '../../src/engine/sampler';
import { relError } from '../golden/golden-data';

const CONFIG = join(process.cwd(), 'assets', 'configs', 'kimi-linear-48b-a3b-instruct.json');
const CAP_GB = Number(process.argv[2] ?? '24');
const PROMPT = 4096;
const say = (line: string) => void process.stdout.write(`${line}\n`);

function prompt(T: number, vocab: number): Int32Array {
  let x = 12345;
  return Int32Array.from({ length: T }, () => {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    return x % vocab;
  });
}

interface Run {
  label: string;
  prefillMs: number;
  tpot: number;
  logits: Float32Array;
}

async function run(label: string, memory: MemoryBudget): Promise<Run> {
  const t = performance.now();
  const m: Model = await loadModel(CONFIG, { backend: 'cuda', dummy: { configFile: CONFIG, seed: 11 }, quantization: 'int4', memory, log: (l) => say(`  ${l}`) });
  try {
    const p = (m.backend as CudaBackend).plan;
    say(`${label}: loaded in ${((performance.now() - t) / 1000).toFixed(0)} s; plan ${p.quantization}, ${p.sliceTokens}-token slices, GPU ${gb(p.gpu.total)} of ${gb(p.usable)} usable, ` +
      `${p.offloadedLayers.length} layers' experts in host memory (${gb(p.host.experts)})`);
    const ids = prompt(PROMPT, m.config.vocabSize);
    await m.prefill(m.newState(), ids.subarray(0, 64));
    const s = m.newState();
    const t0 = performance.now();
    let logits = await m.prefill(s, ids);
    const prefillMs = performance.now() - t0;
    const first = logits;
    const steps: number[] = [];
    for (let i = 0; i < 32; i++) {
      const t1 = performance.now();
      logits = await m.decode(s, argmax(logits));
      steps.push(performance.now() - t1);
    }
    steps.sort((a, b) => a - b);
    const r = { label, prefillMs, tpot: steps[steps.length >> 1], logits: first };
    say(`figure: 48B int4 ${label}: ${p.offloadedLayers.length} of 26 MoE layers offloaded, prefill ${PROMPT} tokens ${prefillMs.toFixed(0)} ms ` +
      `(${((PROMPT / prefillMs) * 1000).toFixed(0)} tok/s), decode TPOT ${r.tpot.toFixed(2)} ms (median of 32)`);
    return r;
  } finally {
    await m.dispose();
  }
}

async function main(): Promise<void> {
  const budget: MemoryBudget = { contextTokens: 131_072, forks: 8 };
  const resident = await run('resident', budget);
  const capped = await run(`under --gpu-memory ${CAP_GB}GB`, { ...budget, gpuMemory: CAP_GB * 1e9 });
  say(`figure: 48B int4 last-position logits, offloaded vs resident: relative error ${relError(capped.logits, resident.logits).toExponential(2)}`);
  say(`figure: 48B int4 on ${CAP_GB} GB: TPOT ${capped.tpot.toFixed(2)} ms vs ${resident.tpot.toFixed(2)} ms resident (×${(capped.tpot / resident.tpot).toFixed(2)}), ` +
    `prefill ${((PROMPT / capped.prefillMs) * 1000).toFixed(0)} vs ${((PROMPT / resident.prefillMs) * 1000).toFixed(0)} tok/s`);
}

main().catch((e) => {
  process.stderr.write(`${e instanceof Error ? e.stack : String(e)}\n`);
  process.exit(1);
});
