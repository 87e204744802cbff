/**
 * `npm run bench:cpu-experts`: the offloaded experts' CPU kernels (native/src/cpu_experts.cpp) at
 * the 48B model's MoE shapes (d 2304, I 1024, 256 experts, top-8): milliseconds per layer call and
 * the GB/s of expert weights read (the chosen experts' codes and scales), for decode (1 token) and a
 * few batched tokens, INT4 g32 and INT8 g128. Each call routes to fresh random
 * experts, so the weights come from memory as in decode. Prints one JSON line per shape.
 *
 *   npm run bench:cpu-experts [-- --threads N --iters N]
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { buildCpuDriver } from '../unit/native/cpu-driver';

const { values } = parseArgs({ options: { threads: { type: 'string' }, iters: { type: 'string', default: '40' } } });
const threads = values.threads ?? String(cpus().length);
const dir = mkdtempSync(join(tmpdir(), 'klc-cpu-bench-'));
try {
  const driver = buildCpuDriver(dir);
  const shapes: [number, number, number][] = [
    [1, 4, 32],
    [1, 8, 128],
    [4, 4, 32],
    [16, 4, 32],
  ];
  for (const [T, bits, group] of shapes) {
    const r = spawnSync(driver, ['bench', String(T), '2304', '1024', '256', '8', String(bits), String(group), threads, values.iters as string], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`bench failed: ${r.stderr}`);
    process.stdout.write(r.stdout);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
