// Device-only: the decode steps of the 48B model (dummy weights for
// assets/configs/kimi-linear-48b-a3b-instruct.json) as the product runs them (decodeAndPick: sampling on the
// device, only ids back), for a profiler to break one step into its kernels (test/gpu/run-decode-profile.sh).
// One short prefill, then STEPS decode steps of one answer and STEPS of 8 answers together, so that the
// decode kernels are nearly all the kernels a profiler sees. Prints ms per step of each.
// Usage: node .device/decode-profile.cjs [STEPS] [--quantization int8|int4|fp8|none]   (from the repository root)
import { join } from 'node:path';
import { loadModel } from '../../src/engine/model/model';
import type { Quantization } from '../../src/common/quantization';
import type { SequenceState } from '../../src/engine/state/types';

const CONFIG = join(process.cwd(), 'assets', 'configs', 'kimi-linear-48b-a3b-instruct.json');
const PROMPT = 256;
const args = process.argv.slice(2);
const quantAt = args.indexOf('--quantization');
const quantization = (quantAt >= 0 ? args.splice(quantAt, 2)[1] : 'int8') as Quantization;
const steps = Number(args[0] ?? 200);
if (!Number.isSafeInteger(steps) || steps < 1) throw new Error(`STEPS must be a positive integer, got ${args[0]}`);

async function main(): Promise<void> {
  const m = await loadModel(CONFIG, {
    backend: 'cuda',
    dummy: { configFile: CONFIG, seed: 11 },
    quantization,
    memory: { contextTokens: 8192, forks: 8 },
    log: () => {},
  });
  try {
    const V = m.config.vocabSize;
    const prompt = Int32Array.from({ length: PROMPT }, (_, i) => (i * 7919 + 5) % V);
    const greedy = { temperature: 0, topP: 1, topK: 0, vocab: V, uniform: 0 };
    for (const B of [1, 8]) {
      const states: SequenceState[] = [];
      for (let b = 0; b < B; b++) {
        const s = m.newState();
        await m.prefill(s, prompt, { logits: 'none' });
        states.push(s);
      }
      let ids: Int32Array = Int32Array.from({ length: B }, (_, b) => 11 + b);
      const picks = Array.from({ length: B }, () => greedy);
      // Two steps first: the second records the CUDA graph the others replay.
      for (let i = 0; i < 2; i++) ids = await m.decodeAndPick(states, ids, picks);
      const t = performance.now();
      for (let i = 0; i < steps; i++) ids = await m.decodeAndPick(states, ids, picks);
      process.stdout.write(`decode, ${B} answer${B === 1 ? '' : 's'} together (${quantization}): ${((performance.now() - t) / steps).toFixed(3)} ms per step over ${steps} steps\n`);
    }
  } finally {
    await m.dispose();
  }
}

main().catch((e) => {
  process.stderr.write(`${e instanceof Error ? e.stack : String(e)}\n`);
  process.exit(1);
});
