// Builds native/build/klc_native.node (Node-API addon) and native/build/libklc_native.so (the
// plain C API, for test drivers) with nvcc. The CUDA runtime is linked statically, so the
// outputs need only the NVIDIA driver at run time, and load (reporting "no driver") without it.
// Usage: node tools/build-native.mjs [--archs 80,86,89,90] [--jobs N]
// Env: CUDA_HOME or NVCC (compiler), KLC_NODE_INCLUDE (folder with node_api.h).
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { cpus, homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const src = join(root, 'native', 'src');
const out = join(root, 'native', 'build');
const argv = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = argv.indexOf(name);
  return i >= 0 && argv[i + 1] ? argv[i + 1] : dflt;
};
const archs = opt('--archs', '80,86,89,90').split(',').map((s) => s.trim()).filter(Boolean);
const jobs = Number(opt('--jobs', String(Math.max(1, cpus().length))));

function fail(msg) {
  console.error(`build:native: ${msg}`);
  process.exit(1);
}

function findNvcc() {
  if (process.env.NVCC) return process.env.NVCC;
  for (const home of [process.env.CUDA_HOME, process.env.CUDA_PATH, '/usr/local/cuda']) {
    if (home && existsSync(join(home, 'bin', 'nvcc'))) return join(home, 'bin', 'nvcc');
  }
  for (const dir of (process.env.PATH ?? '').split(':')) {
    if (dir && existsSync(join(dir, 'nvcc'))) return join(dir, 'nvcc');
  }
  return fail('nvcc not found: install the CUDA toolkit (12.8 or newer) or set CUDA_HOME / NVCC.');
}

function findNodeInclude() {
  const candidates = [
    process.env.KLC_NODE_INCLUDE,
    process.env.npm_config_nodedir && join(process.env.npm_config_nodedir, 'include', 'node'),
    join(dirname(process.execPath), '..', 'include', 'node'),
    join(homedir(), '.cache', 'node-gyp', process.versions.node, 'include', 'node'),
    '/usr/include/node',
    '/usr/local/include/node',
  ];
  const hit = candidates.find((d) => d && existsSync(join(d, 'node_api.h')));
  return hit ?? fail('node_api.h not found: set KLC_NODE_INCLUDE to a folder holding the Node headers.');
}

function run(cmd, args) {
  return new Promise((ok, bad) => {
    const p = spawn(cmd, args, { stdio: 'inherit' });
    p.on('error', bad);
    p.on('exit', (code) => (code === 0 ? ok() : bad(new Error(`${cmd} exited with ${code}`))));
  });
}

const nvcc = findNvcc();
const nodeInclude = findNodeInclude();
const gencode = archs.flatMap((a) => ['-gencode', `arch=compute_${a},code=sm_${a}`]);
const newest = archs[archs.length - 1];
gencode.push('-gencode', `arch=compute_${newest},code=compute_${newest}`);
// The Hopper kernels (mla_wgmma.cu, moe_wgmma.cu) use wgmma, which exists only in the arch-specific sm_90a
// target: with 90 in the list those units are built for sm_90a alone (no PTX, so no other GPU loads them
// and the portable kernels serve there); without 90 they build their fallbacks.
const hopper = archs.includes('90');
const archList = [...archs.map((a) => `sm_${a}`), `compute_${newest}`, ...(hopper ? ['sm_90a (MLA prefill, MoE)'] : [])].join(' ');
const hopperUnits = { 'mla_wgmma.cu': 'KLC_MLA_WGMMA', 'moe_wgmma.cu': 'KLC_MOE_WGMMA' };
const unitArch = (u) => (hopperUnits[u] && hopper ? ['-gencode', 'arch=compute_90a,code=sm_90a', `-D${hopperUnits[u]}=1`] : gencode);
const common = ['-O3', '-std=c++17', '-Xcompiler', '-fPIC,-fvisibility=hidden', `-I${join(root, 'native', 'include')}`,
  `-DKLC_BUILD_ARCHS="${archList}"`];

mkdirSync(out, { recursive: true });
const tmp = join(out, `.tmp-${process.pid}`);
mkdirSync(tmp, { recursive: true });
const started = Date.now();
try {
  const units = ['context.cu', 'kda.cu', 'kda_recurrent.cu', 'elementwise.cu', 'norm.cu', 'linear.cu', 'conv.cu', 'mla.cu', 'moe.cu', 'cublas.cu', 'tc_ops.cu', 'mla_flash.cu', 'mla_wgmma.cu', 'batch_decode.cu', 'mla_decode_bf16.cu', 'sample.cu', 'moe_small.cu', 'gemv.cu', 'dummy.cu', 'vbuf.cu', 'graph.cu', 'wq_gemv.cu', 'wq_dequant.cu', 'wq_quantize.cu', 'moe_small_wq.cu', 'moe_wq_gemm.cu', 'moe_wgmma.cu', 'host_moe.cu', 'cpu_experts.cpp'];
  // cpu_experts.cpp is host C++ (the offloaded experts' CPU kernels), compiled by nvcc's host compiler.
  const object = (u) => join(tmp, u.replace(/\.(cu|cpp)$/, '.o'));
  const threadsPerUnit = Math.max(1, Math.floor(jobs / units.length));
  await Promise.all(units.map((u) => run(nvcc, [...common, ...unitArch(u), '--threads', String(threadsPerUnit), '-c',
    join(src, u), '-o', object(u)])));
  await run(nvcc, ['-O2', '-Xcompiler', '-fPIC,-fvisibility=hidden', '-x', 'c', `-I${nodeInclude}`,
    `-I${join(root, 'native', 'include')}`, '-DNODE_GYP_MODULE_NAME=klc_native', '-c', join(src, 'binding.c'),
    '-o', join(tmp, 'binding.o')]);
  const objs = units.map(object);
  // cuBLAS is opened with dlopen at run time (native/src/cublas.cu), never linked.
  const link = (outFile, extra) => run(nvcc, ['-shared', ...gencode, '-cudart', 'static', '-o', outFile, ...objs, ...extra, '-ldl', '-lpthread']);
  await link(join(tmp, 'libklc_native.so'), []);
  await link(join(tmp, 'klc_native.node'), [join(tmp, 'binding.o')]);
  // Replace the outputs only once both linked, so a failed build leaves the last good one.
  renameSync(join(tmp, 'libklc_native.so'), join(out, 'libklc_native.so'));
  renameSync(join(tmp, 'klc_native.node'), join(out, 'klc_native.node'));
  console.log(`build:native: ${join(out, 'klc_native.node')} (${archList}) in ${((Date.now() - started) / 1000).toFixed(0)} s`);
} catch (e) {
  fail(`${e.message}`);
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
