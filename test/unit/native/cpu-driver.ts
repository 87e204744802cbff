/**
 * Builds test/unit/native/cpu-experts-driver.cpp with native/src/cpu_experts.cpp into a plain
 * executable (host C++ only: no CUDA, no Node-API), for the CPU experts' unit test and benchmark.
 * CXX names the compiler (default g++, which the CUDA build needs anyway). Built without -march,
 * as the native library is, so the AVX2 path is the one chosen at run time.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

const ROOT = join(__dirname, '..', '..', '..');

export function buildCpuDriver(outDir: string): string {
  const out = join(outDir, 'cpu-experts-driver');
  const cxx = process.env.CXX ?? 'g++';
  const args = ['-O3', '-std=c++17', '-pthread', '-Wall', '-Wextra', '-Werror', `-I${join(ROOT, 'native', 'include')}`,
    join(ROOT, 'native', 'src', 'cpu_experts.cpp'), join(__dirname, 'cpu-experts-driver.cpp'), '-o', out];
  const r = spawnSync(cxx, args, { encoding: 'utf8' });
  if (r.error) throw new Error(`cannot run the C++ compiler ${cxx} (set CXX): ${r.error.message}`);
  if (r.status !== 0) throw new Error(`${cxx} failed building the CPU experts driver:\n${r.stderr}`);
  return out;
}
