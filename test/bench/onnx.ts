/**
 * `npm run bench:onnx`: prefill and decode tokens/s of the onnx backend against the reference
 * backend, measured in the same run on the bundled tiny checkpoint and on the ≈178M-parameter
 * synthetic checkpoint (generated into .cache/ on first use), plus peak resident memory against
 * the fp32 size of the weights. Each (checkpoint, backend) runs in its own process so that its
 * peak RSS is its own. Rates are given per wall-clock second and per CPU-second; the latter stays
 * comparable when other work shares the cores (the onnx backend uses every core, the reference
 * one). Prints figures; never fails on time.
 *
 *   npm run bench:onnx [-- --prefill N --decode N --ref-prefill N]
 */
import { spawnSync } from 'node:child_process';
import { availableParallelism, cpus } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { loadModel } from '../../src/engine/model/model';
import { Checkpoint } from '../../src/engine/model/checkpoint';
import { loadConfig } from '../../src/engine/model/config';
import { makeSyntheticCheckpoint, SYNTHETIC_DIR } from '../../tools/make-synthetic-checkpoint';

const root = resolve(__dirname, '..', '..');

interface Figures {
  backend: string;
  device: string;
  loadSeconds: number;
  prefillTokens: number;
  prefillPerSecond: number;
  /** Tokens per second of CPU time (all threads): comparable even while other work loads the machine. */
  prefillPerCpuSecond: number;
  decodeTokens: number;
  decodePerSecond: number;
  decodePerCpuSecond: number;
  peakRssBytes: number;
}

/** Token ids spread over the vocabulary without special ids, the same for every backend. */
function ids(n: number, vocab: number): Int32Array {
  return Int32Array.from({ length: n }, (_, i) => (i * 7919 + 13) % Math.min(vocab, 3000));
}

async function child(dir: string, backend: 'onnx' | 'reference', prefill: number, decode: number): Promise<void> {
  const t0 = performance.now();
  const lines: string[] = [];
  const model = await loadModel(dir, { backend, log: (l) => lines.push(l) });
  const loadSeconds = (performance.now() - t0) / 1000;
  const V = model.config.vocabSize;
  // Warm up: sessions plan their memory on the first run of each shape class.
  const warm = model.newState();
  await model.prefill(warm, ids(16, V));
  await model.decode(warm, 5);

  const cpuSeconds = (since: NodeJS.CpuUsage) => {
    const u = process.cpuUsage(since);
    return (u.user + u.system) / 1e6;
  };
  const state = model.newState();
  const p0 = performance.now();
  const pc = process.cpuUsage();
  let logits = await model.prefill(state, ids(prefill, V));
  const prefillSeconds = (performance.now() - p0) / 1000;
  const prefillCpu = cpuSeconds(pc);
  const d0 = performance.now();
  const dc = process.cpuUsage();
  for (let s = 0; s < decode; s++) {
    let best = 0;
    for (let v = 1; v < V; v++) if (logits[v] > logits[best]) best = v;
    logits = await model.decode(state, best);
  }
  const decodeSeconds = (performance.now() - d0) / 1000;
  const decodeCpu = cpuSeconds(dc);
  const figures: Figures = {
    backend: model.backend.name,
    device: model.backend.device,
    loadSeconds,
    prefillTokens: prefill,
    prefillPerSecond: prefill / prefillSeconds,
    prefillPerCpuSecond: prefill / prefillCpu,
    decodeTokens: decode,
    decodePerSecond: decode / decodeSeconds,
    decodePerCpuSecond: decode / decodeCpu,
    peakRssBytes: process.resourceUsage().maxRSS * 1024,
  };
  await model.dispose();
  process.stdout.write(`${JSON.stringify({ figures, log: lines })}\n`);
}

function run(dir: string, backend: string, prefill: number, decode: number): { figures: Figures; log: string[] } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', __filename, '--child', dir, backend, String(prefill), String(decode)], {
    cwd: root,
    encoding: 'utf8',
    maxBuffer: 1 << 24,
  });
  if (r.status !== 0) throw new Error(`bench child (${backend} on ${dir}) failed:\n${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop() as string);
}

const mb = (b: number) => `${(b / 2 ** 20).toFixed(0)} MiB`;
const rates = (f: Figures) =>
  `prefill ${f.prefillTokens} tokens at ${f.prefillPerSecond.toFixed(1)} tokens/s (${f.prefillPerCpuSecond.toFixed(1)} per CPU-s), decode ${f.decodeTokens} at ${f.decodePerSecond.toFixed(1)} tokens/s (${f.decodePerCpuSecond.toFixed(1)} per CPU-s)`;

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: process.argv.slice(2),
    options: { prefill: { type: 'string' }, decode: { type: 'string' }, 'ref-prefill': { type: 'string' }, child: { type: 'boolean' } },
    allowPositionals: true,
  });
  if (values.child) {
    const [dir, backend, prefill, decode] = process.argv.slice(process.argv.indexOf('--child') + 1);
    await child(dir, backend as 'onnx' | 'reference', Number(prefill), Number(decode));
    return;
  }
  const prefill = Number(values.prefill ?? 1024);
  const decode = Number(values.decode ?? 32);
  // The reference needs minutes for a long prefill of the larger model; its per-token cost at
  // these lengths is dominated by the weights, so a shorter prefill gives its rate.
  const refPrefill = Number(values['ref-prefill'] ?? 256);

  const made = await makeSyntheticCheckpoint();
  if (made > 0) process.stdout.write(`generated ${SYNTHETIC_DIR} (${made.toLocaleString('en-US')} parameters)\n`);
  process.stdout.write(`machine: ${cpus()[0]?.model ?? 'unknown CPU'}, ${availableParallelism()} threads\n`);

  for (const [label, dir] of [
    ['tiny (assets/tiny-model)', join(root, 'assets', 'tiny-model')],
    ['synthetic (.cache/synthetic-kimi-178m)', SYNTHETIC_DIR],
  ] as const) {
    const config = await loadConfig(dir);
    const ckpt = await Checkpoint.open(dir, config);
    const params = ckpt.parameters;
    await ckpt.close();
    const onnx = run(dir, 'onnx', prefill, decode);
    const ref = run(dir, 'reference', Math.min(prefill, refPrefill), Math.min(decode, 8));
    const o = onnx.figures;
    const r = ref.figures;
    process.stdout.write(
      [
        ``,
        `${label}: ${params.toLocaleString('en-US')} parameters, ${mb(params * 4)} as fp32`,
        `  ${onnx.log.join('\n  ')}`,
        `  onnx      load ${o.loadSeconds.toFixed(1)} s, ${rates(o)}, peak RSS ${mb(o.peakRssBytes)} (${(o.peakRssBytes / (params * 4)).toFixed(2)}× the fp32 weights)`,
        `  reference load ${r.loadSeconds.toFixed(1)} s, ${rates(r)}, peak RSS ${mb(r.peakRssBytes)}`,
        `  onnx / reference, wall clock: prefill ${(o.prefillPerSecond / r.prefillPerSecond).toFixed(1)}×, decode ${(o.decodePerSecond / r.decodePerSecond).toFixed(1)}×`,
        `  onnx / reference, per CPU-second: prefill ${(o.prefillPerCpuSecond / r.prefillPerCpuSecond).toFixed(1)}×, decode ${(o.decodePerCpuSecond / r.decodePerCpuSecond).toFixed(1)}×`,
        ``,
      ].join('\n'),
    );
  }
}

main().catch((e) => {
  process.stderr.write(`${e instanceof Error ? e.stack : String(e)}\n`);
  process.exit(1);
});
