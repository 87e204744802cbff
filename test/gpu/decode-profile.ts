// Device-only: the decode steps of the 48B model (dummy weights for
// assets/configs/kimi-linear-48b-a3b-instruct.json) as the product runs them (decodeAndPick: sampling on the
// device, only ids back), for a profiler to break one step into its kernels (test/gpu/run-decode-profile.sh).
// One prefill (256 tokens, or --context N in 8,192-token slices), then STEPS decode steps of one answer
// and STEPS of 8 answers together (forks of the prefilled state, as the product's answers are), so that
// with the default prompt the decode kernels are nearly all the kernels a profiler sees. Prints ms per
// step of each.
// --batches 8 runs only the 8 answers (for a profiler that should see only those).
// Usage: node .device/decode-profile.cjs [STEPS] [--quantization int8|int4|fp8|none] [--context N] [--batches 1,8]   (from the repository root)
import { join } from 'node:path';
import { loadModel } from '../../src/engine/model/model';
import type { Quantization } from '../../src/common/quantization';
import type { SequenceState } from '../../src/engine/state/types';

const CONFIG = join(process.cwd(), 'assets', 'configs', 'kimi-linear-48b-a3b-instruct.json');
const SLICE = 8192;
const args = process.argv.slice(2);
const quantAt = args.indexOf('--quantization');
const quantization = (quantAt >= 0 ? args.splice(quantAt, 2)[1] : 'int8') as Quantization;
const contextAt = args.indexOf('--context');
const context = contextAt >= 0 ? Number(args.splice(contextAt, 2)[1]) : 256;
if (!Number.isSafeInteger(context) || context < 1) throw new Error(`--context must be a positive integer, got ${context}`);
const batchesAt = args.indexOf('--batches');
const batches = (batchesAt >= 0 ? args.splice(batchesAt, 2)[1] : '1,8').split(',').map(Number);
if (batches.some((b) => !Number.isSafeInteger(b) || b < 1 || b > 64)) throw new Error(`--batches must list batch sizes 1..64, got ${batches.join(',')}`);
const steps = Number(args[0] ?? 200);
if (!Number.isSafeInteger(steps) || steps < 1) throw new Error(`STEPS must be a positive integer, got ${args[0]}`);

async function main(): Promise<void> {
  const m = await loadModel(CONFIG, {
    backend: 'cuda',
    dummy: { configFile: CONFIG, seed: 11 },
    quantization,
    memory: { contextTokens: Math.max(8192, context + 2 * steps + 16), forks: 8 },
    log: () => {},
  });
  try {
    const V = m.config.vocabSize;
    const prompt = Int32Array.from({ length: context }, (_, i) => (i * 7919 + 5) % V);
    const greedy = { temperature: 0, topP: 1, topK: 0, vocab: V, uniform: 0 };
    const base = m.newState();
    for (let i = 0; i < context; i += SLICE) await m.prefill(base, prompt.subarray(i, i + SLICE), { logits: 'none' });
    for (const B of batches) {
      const states: SequenceState[] = Array.from({ length: B }, () => m.forkState(base));
      let ids: Int32Array = Int32Array.from({ length: B }, (_, b) => 11 + b);
      const picks = Array.from({ length: B }, () => greedy);
      // Two steps first: the second records the CUDA graph the others replay.
      for (let i = 0; i < 2; i++) ids = await m.decodeAndPick(states, ids, picks);
      const t = performance.now();
      for (let i = 0; i < steps; i++) ids = await m.decodeAndPick(states, ids, picks);
      process.stdout.write(`decode, ${B} answer${B === 1 ? '' : 's'} together (${quantization}, ${context}-token context): ${((performance.now() - t) / steps).toFixed(3)} ms per step over ${steps} steps\n`);
      for (const s of states) m.releaseState(s);
    }
  } finally {
    await m.dispose();
  }
}

main().catch((e) => {
  process.stderr.write(`${e instanceof Error ? e.stack : String(e)}\n`);
  process.exit(1);
});
