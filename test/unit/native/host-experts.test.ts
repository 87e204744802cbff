/**
 * The offloaded experts' runner without a GPU: what it asks the library to copy for a long prefill
 * slice (every part of both matrices, from host to the staging buffer, nothing past it) and the
 * matrices it hands the GPU kernels; the CPU/GPU token threshold and its environment setting.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HostExperts } from '../../../src/engine/backends/cuda/host-experts';
import type { NativeContext, NativeKlc, NativeWq } from '../../../src/engine/backends/cuda/loader';
import { isUserError } from '../../../src/common/errors';

const STAGING = 1n << 40n;

function fakeNative(copies: [bigint, bigint, number][], created: number[][]): NativeKlc {
  return {
    hostMoeCreate: (_c: NativeContext, threads: number, maxTokens: number, d: number, k: number) => {
      created.push([threads, maxTokens, d, k]);
      return 7n;
    },
    hostMoeThreads: () => 16,
    hostMoeFree: () => {},
    alloc: () => STAGING,
    free: () => {},
    copyToDeviceAsync: (_c: NativeContext, dst: bigint, src: bigint, bytes: number) => void copies.push([dst, src, bytes]),
  } as unknown as NativeKlc;
}

test('staging copies each part of gate|up and down once, packed without gaps, and returns them as device matrices', () => {
  const copies: [bigint, bigint, number][] = [];
  const created: number[][] = [];
  // INT4 g32 asymmetric gate|up [4 × 2 × 16, 64] (bf16 scales) and down [4 × 64, 16] (fp32 scales).
  const w13: NativeWq = { packed: 1000n, scales: 2000n, zeros: 3000n, bits: 4, N: 128, K: 64, group: 32, scalesF32: false, fp8: false };
  const w2: NativeWq = { packed: 4000n, scales: 5000n, zeros: 6000n, bits: 4, N: 256, K: 16, group: 16, scalesF32: true, fp8: false };
  // Bytes: w13 codes 128 × 64 / 2 = 4096, zeros ceil(128 / 8) × 2 × 4 = 128, scales 128 × 2 × 2 = 512;
  //        w2 codes 256 × 16 / 2 = 2048, zeros 32 × 1 × 4 = 128, scales 256 × 4 = 1024. Total 7936.
  const host = HostExperts.create(fakeNative(copies, created), {} as NativeContext, 64, 2, 7936);
  assert.deepEqual(created, [[0, 32, 64, 2]]);
  const [s13, s2] = host.stage(w13, w2);
  // Order: codes (4096, 2048), zero points (128, 128), fp32 scales (1024), bf16 scales (512).
  const at = (o: number) => STAGING + BigInt(o);
  assert.deepEqual(copies, [
    [at(0), 1000n, 4096],
    [at(6144 + 256 + 1024), 2000n, 512],
    [at(6144), 3000n, 128],
    [at(4096), 4000n, 2048],
    [at(6144 + 256), 5000n, 1024],
    [at(6144 + 128), 6000n, 128],
  ]);
  assert.deepEqual(s13, { ...w13, packed: at(0), scales: at(7424), zeros: at(6144) });
  assert.deepEqual(s2, { ...w2, packed: at(4096), scales: at(6400), zeros: at(6272) });
  // A staging buffer smaller than the layer is a planning bug, not a silent overrun.
  const small = HostExperts.create(fakeNative([], []), {} as NativeContext, 64, 2, 7935);
  assert.throws(() => small.stage(w13, w2), /exceed the 7935-byte staging buffer/);
});

test('up to KLC_OFFLOAD_CPU_TOKENS rows run on the CPU (default 32); a bad value is a user error naming it', () => {
  const created: number[][] = [];
  const dflt = HostExperts.create(fakeNative([], created), {} as NativeContext, 64, 2, 1);
  assert.equal(dflt.onCpu(32), true);
  assert.equal(dflt.onCpu(33), false);
  process.env.KLC_OFFLOAD_CPU_TOKENS = '4';
  process.env.KLC_OFFLOAD_THREADS = '6';
  try {
    const four = HostExperts.create(fakeNative([], created), {} as NativeContext, 64, 2, 1);
    assert.equal(four.onCpu(4), true);
    assert.equal(four.onCpu(5), false);
    assert.deepEqual(created[1], [6, 4, 64, 2]);
    process.env.KLC_OFFLOAD_CPU_TOKENS = 'many';
    assert.throws(() => HostExperts.create(fakeNative([], created), {} as NativeContext, 64, 2, 1), (e) => isUserError(e) && /KLC_OFFLOAD_CPU_TOKENS must be an integer of at least 1, got "many"/.test(e.message));
  } finally {
    delete process.env.KLC_OFFLOAD_CPU_TOKENS;
    delete process.env.KLC_OFFLOAD_THREADS;
  }
});
