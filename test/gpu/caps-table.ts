// Device-only table for "every GPU from 24 GB" (issue 11): the 48B model (dummy weights for
// assets/configs/kimi-linear-48b-a3b-instruct.json, bf16 generated on the GPU and quantized there
// when the plan says so) loaded under each --gpu-memory cap with quantization auto, for a 128k and
// a 1M context with 8 forks. For each: the plan's scheme and placement (layers whose routed experts
// live in host memory), then, on a state already holding context − 4,160 tokens of MLA rows, one
// 4,096-token prefill slice (the ingest's rate at that depth) and the decode TPOT (median of 16)
// after it. The deep state's rows are synthetic (streamed in as a restore does): attention reads
// every row whatever its values, so the times are those of a real state of that length.
// Usage: node caps-table.cjs [CAPS_GB] [CONTEXTS] [--json FILE]   (run from the repository root)
//   e.g. node .device/caps-table.cjs 24,32,48,80,141 131072,1048576 --json out.json
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { CudaBackend } from '../../src/engine/backends/cuda/backend';
import { loadModel, type Model } from '../../src/engine/model/model';
import { gb } from '../../src/common/sizes';
import { argmax } from '../../src/engine/sampler';
import type { MlaLayerState, SequenceState } from '../../src/engine/state/types';

const CONFIG = join(process.cwd(), 'assets', 'configs', 'kimi-linear-48b-a3b-instruct.json');
const SLICE = 4096;
const DECODE_STEPS = 16;
const args = process.argv.slice(2);
const jsonAt = args.indexOf('--json');
const jsonFile = jsonAt >= 0 ? args.splice(jsonAt, 2)[1] : undefined;
const caps = (args[0] ?? '24,32,48,80,141').split(',').map(Number);
const contexts = (args[1] ?? '131072,1048576').split(',').map(Number);
const say = (line: string) => void process.stdout.write(`${line}\n`);

function tokens(T: number, vocab: number, seed: number): Int32Array {
  let x = seed;
  return Int32Array.from({ length: T }, () => {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    return x % vocab;
  });
}

/** A state of `depth` tokens: every MLA layer's cache filled with the same deterministic rows of unit scale. */
function deepState(m: Model, depth: number): SequenceState {
  const s = m.newState();
  const width = m.config.mla.kvLoraRank + m.config.mla.qkRopeHeadDim;
  const chunk = Math.min(depth, 32768);
  const rows = new Float32Array(chunk * width);
  for (let i = 0; i < rows.length; i++) rows[i] = Math.sin(i * 0.7071) * 1.5;
  for (const ls of s.layers) {
    if (ls.kind !== 'mla') continue;
    for (let n = 0; n < depth; n += chunk) m.appendLatentRows(ls as MlaLayerState, rows, Math.min(chunk, depth - n));
  }
  s.length = depth;
  return s;
}

type Row = Record<string, string | number | boolean>;

async function measure(capGb: number, context: number): Promise<Row> {
  const row: Row = { capGb, context };
  const t = performance.now();
  let m: Model;
  try {
    m = await loadModel(CONFIG, {
      backend: 'cuda',
      dummy: { configFile: CONFIG, seed: 11 },
      quantization: 'auto',
      memory: { contextTokens: context, forks: 8, gpuMemory: capGb * 1e9 },
      log: () => {},
    });
  } catch (e) {
    row.fits = false;
    row.refusal = e instanceof Error ? e.message : String(e);
    say(`cap ${capGb} GB, context ${context}: refused: ${row.refusal}`);
    return row;
  }
  try {
    const cuda = m.backend as CudaBackend;
    const p = cuda.plan;
    Object.assign(row, {
      fits: true,
      loadSeconds: (performance.now() - t) / 1000,
      quantization: p.quantization,
      offloadedLayers: p.offloadedLayers.length,
      planGpuBytes: p.gpu.total,
      hostExpertBytes: p.host.experts,
      sliceTokens: p.sliceTokens,
    });
    const depth = context - SLICE - 64;
    const s = deepState(m, depth);
    cuda.synchronize();
    const ids = tokens(SLICE, m.config.vocabSize, capGb * 7 + context);
    const t0 = performance.now();
    let logits = await m.prefill(s, ids, { slice: p.sliceTokens });
    cuda.synchronize();
    row.prefillTokensPerSecond = (SLICE / (performance.now() - t0)) * 1000;
    const steps: number[] = [];
    for (let i = 0; i < DECODE_STEPS; i++) {
      const t1 = performance.now();
      logits = await m.decode(s, argmax(logits));
      steps.push(performance.now() - t1);
    }
    steps.sort((a, b) => a - b);
    row.tpotMs = steps[steps.length >> 1];
    // With experts offloaded the step runs on the host's cores too, and two runs of a row have differed
    // by 40% (round g): the spread within the run says whether this one was steady.
    row.tpotMinMs = steps[0];
    row.tpotMaxMs = steps[steps.length - 1];
    const mem = cuda.memoryInfo();
    row.gpuUsedBytes = mem.total - mem.free;
    m.releaseState(s);
    say(
      `figure: cap ${capGb} GB, context ${context}: ${p.quantization}, ${p.offloadedLayers.length} of 26 MoE layers' experts in host memory (${gb(p.host.experts)}), ` +
        `plan ${gb(p.gpu.total)} on the GPU; loaded in ${(row.loadSeconds as number).toFixed(0)} s; ${SLICE}-token slice at depth ${depth}: ` +
        `${(row.prefillTokensPerSecond as number).toFixed(0)} tok/s; TPOT ${(row.tpotMs as number).toFixed(2)} ms ` +
        `(median of ${DECODE_STEPS}; ${(row.tpotMinMs as number).toFixed(2)} to ${(row.tpotMaxMs as number).toFixed(2)})`,
    );
    return row;
  } finally {
    await m.dispose();
  }
}

async function main(): Promise<void> {
  const rows: Row[] = [];
  for (const context of contexts)
    for (const cap of caps) {
      rows.push(await measure(cap, context));
      if (jsonFile) writeFileSync(jsonFile, JSON.stringify(rows, null, 2) + '\n');
    }
}

main().catch((e) => {
  process.stderr.write(`${e instanceof Error ? e.stack : String(e)}\n`);
  process.exit(1);
});
