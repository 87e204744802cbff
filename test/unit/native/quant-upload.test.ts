/**
 * How the CUDA backend lays quantized weights out in device memory, checked without a GPU: the
 * upload runs against host memory standing in for the device's (alloc and upload only), and the
 * bytes are decoded here from the klc_wq layout of klc_native.h (codes 32/bits per int32, lowest
 * column lowest; FP8 E4M3 bytes four per int32, lowest column lowest, decoded from the format's
 * definition; scales per row and group; zero points packed down the columns) and compared with
 * the weights the reference backend computes with. Also: the bytes the plan counts are the bytes
 * uploaded, and weights the kernels cannot take are uploaded dense.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { deviceWeightBytes, isQuant, uploadWeights, type AtLoad, type Mat } from '../../../src/engine/backends/cuda/device-weights';
import { stagingLayout } from '../../../src/engine/backends/cuda/host-experts';
import { cudaPlan } from '../../../src/engine/backends/cuda/load-plan';
import { isUserError } from '../../../src/common/errors';
import { USABLE_FRACTION } from '../../../src/engine/plan/memory-plan';
import type { DevicePtr, NativeContext, NativeKlc, NativeWq } from '../../../src/engine/backends/cuda/loader';
import { Checkpoint } from '../../../src/engine/model/checkpoint';
import { loadConfig, loadConfigFile, type KimiConfig } from '../../../src/engine/model/config';
import { DummyWeights } from '../../../src/engine/model/dummy-weights';
import { atLoadTargets, quantizeAtLoad } from '../../../src/engine/model/quant/at-load';
import { presetScheme, SCHEME_OF } from '../../../src/engine/model/quant/presets';
import { kdaNames, mlaNames, moeNames, mlpNames } from '../../../src/engine/model/weight-names';
import type { WeightSource } from '../../../src/engine/model/weight-source';
import { quantize } from '../../../src/engine/model/quant/matrix';
import { pack } from '../../../src/engine/model/quant/pack';
import { rounderFor } from '../../../src/engine/model/quant/round';
import type { WeightArgs } from '../../../src/engine/model/quant/scheme';
import { configGroup, GOLDEN, quantizationConfig, writeQuantizedGolden, type Written } from '../engine/quant/ct-writer';
import { awqConfig, gptqConfig, writeInputMajorGolden, type InputMajorSpec } from '../engine/quant/gptq-writer';

/**
 * Host memory addressed like device memory: what alloc and upload did, nothing else; and apart
 * from it what hostAlloc and hostWrite did (pinned host memory for offloaded experts).
 */
class HostMemory {
  private readonly blocks = new Map<bigint, Buffer>();
  private readonly pinned = new Set<bigint>();
  private next = 1n << 32n;
  allocated = 0;
  hostAllocated = 0;

  private place(bytes: number): bigint {
    const p = this.next;
    this.blocks.set(p, Buffer.alloc(bytes));
    this.next += BigInt(Math.ceil(bytes / 256) * 256 + 256);
    return p;
  }

  private write(dst: bigint, src: ArrayBufferView, host: boolean): void {
    const [base, buf] = this.block(dst);
    assert.equal(this.pinned.has(base), host, host ? 'hostWrite into device memory' : 'upload into host memory');
    const off = Number(dst - base);
    assert.ok(off + src.byteLength <= buf.length, 'write past the end of its allocation');
    Buffer.from(src.buffer, src.byteOffset, src.byteLength).copy(buf, off);
  }

  readonly native = {
    alloc: (_ctx: NativeContext, bytes: number): DevicePtr => {
      this.allocated += bytes;
      return this.place(bytes);
    },
    free: (_ctx: NativeContext, p: DevicePtr) => {
      this.allocated -= this.blocks.get(p)?.length ?? 0;
      this.blocks.delete(p);
    },
    upload: (_ctx: NativeContext, dst: DevicePtr, src: ArrayBufferView) => this.write(dst, src, false),
    hostAlloc: (_ctx: NativeContext, bytes: number): bigint => {
      this.hostAllocated += bytes;
      const p = this.place(bytes);
      this.pinned.add(p);
      return p;
    },
    hostWrite: (dst: bigint, src: ArrayBufferView) => this.write(dst, src, true),
    // Stands in for klc_wq_quantize_bf16 by its contract (the host quantizer's codes and scales from
    // the bf16 matrix at w); that the kernel keeps it is checked on a GPU (test/gpu/quant-model.test.ts).
    wqQuantizeBf16: (_ctx: NativeContext, w: DevicePtr, N: number, K: number, bits: number, group: number, fp8: number, packed: DevicePtr, scales: DevicePtr, scalesF32: number) => {
      this.deviceQuantized += 1;
      const [base, buf] = this.block(w);
      const off = Number(w - base);
      const values = Float32Array.from({ length: N * K }, (_, i) => new Float32Array(new Uint32Array([buf.readUInt16LE(off + 2 * i) << 16]).buffer)[0]);
      const args: WeightArgs = fp8
        ? { numBits: 8, type: 'float', symmetric: true, strategy: 'channel', groupSize: null, blockStructure: null }
        : { numBits: bits, type: 'int', symmetric: true, strategy: group === K ? 'channel' : 'group', groupSize: group === K ? null : group, blockStructure: null };
      const m = quantize(values, N, K, args, rounderFor(scalesF32 ? 'F32' : 'BF16'));
      this.write(packed, fp8 ? m.codes : pack(m.codes as Int8Array, N, K, bits, 1), this.isHost(packed));
      const s = scalesF32 ? m.scale : Uint16Array.from(m.scale, (x) => new Uint32Array(new Float32Array([x]).buffer)[0] >>> 16);
      this.write(scales, s, false);
    },
  } as unknown as NativeKlc;

  /** Calls of wqQuantizeBf16. */
  deviceQuantized = 0;

  /** n bytes at p. */
  bytes(p: DevicePtr, n: number): Buffer {
    const [base, buf] = this.block(p);
    const off = Number(p - base);
    return Buffer.from(buf.subarray(off, off + n));
  }

  isHost(p: bigint): boolean {
    return this.pinned.has(this.block(p)[0]);
  }

  private block(p: DevicePtr): [bigint, Buffer] {
    for (const [base, buf] of this.blocks) if (p >= base && p < base + BigInt(buf.length)) return [base, buf];
    throw new Error(`no allocation holds ${p}`);
  }

  int32(p: DevicePtr, n: number): Int32Array {
    const [base, buf] = this.block(p);
    const off = Number(p - base);
    return new Int32Array(buf.buffer.slice(buf.byteOffset + off, buf.byteOffset + off + 4 * n));
  }

  /** n scales as numbers: fp32, or bf16 as the top half of an fp32. */
  scales(p: DevicePtr, n: number, f32: boolean): number[] {
    const [base, buf] = this.block(p);
    const off = Number(p - base);
    return Array.from({ length: n }, (_, i) => (f32 ? buf.readFloatLE(off + 4 * i) : new Float32Array(new Uint32Array([buf.readUInt16LE(off + 2 * i) << 16]).buffer)[0]));
  }
}

/** An E4M3 byte's value: sign, exponent bias 7, 3 mantissa bits, exponent 0 subnormal (no NaN bytes are written). */
function e4m3(byte: number): number {
  const e = (byte >> 3) & 15;
  const magnitude = e === 0 ? (byte & 7) / 512 : (1 + (byte & 7) / 8) * 2 ** (e - 7);
  return byte & 0x80 ? -magnitude : magnitude;
}

/** The weights [N, K] a klc_wq in host memory stands for, decoded from klc_native.h's description. */
function decode(mem: HostMemory, w: NativeWq): Float64Array {
  const perWord = 32 / w.bits;
  const groups = w.K / w.group;
  const words = mem.int32(w.packed, (w.N * w.K) / perWord);
  const scales = mem.scales(w.scales, w.N * groups, w.scalesF32);
  const zeros = w.zeros ? mem.int32(w.zeros, Math.ceil(w.N / perWord) * groups) : null;
  const offset = 2 ** (w.bits - 1);
  const field = (word: number, k: number) => Number((BigInt(word >>> 0) >> BigInt(w.bits * k)) & BigInt(2 ** w.bits - 1));
  const out = new Float64Array(w.N * w.K);
  for (let r = 0; r < w.N; r++) {
    for (let c = 0; c < w.K; c++) {
      const g = Math.floor(c / w.group);
      const code = field(words[(r * w.K + c - (c % perWord)) / perWord], c % perWord);
      if (w.fp8) {
        out[r * w.K + c] = e4m3(code) * scales[r * groups + g];
        continue;
      }
      const q = code - offset;
      const z = zeros ? field(zeros[Math.floor(r / perWord) * groups + g], r % perWord) - offset : 0;
      out[r * w.K + c] = (q - z) * scales[r * groups + g];
    }
  }
  return out;
}

/** The rows of `names` stacked, as the reference backend reads them from `source`. */
async function stacked(source: WeightSource, names: string[]): Promise<Float32Array> {
  const parts = await Promise.all(names.map((n) => source.tensor(n)));
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

function quant(m: Mat): NativeWq {
  assert.ok(isQuant(m), 'expected a quantized matrix');
  return m.quant;
}

function assertSame(got: Float64Array, want: Float32Array, what: string): void {
  assert.equal(got.length, want.length, what);
  for (let i = 0; i < want.length; i++) if (Math.fround(got[i]) !== want[i]) assert.fail(`${what}[${i}]: device ${got[i]}, reference ${want[i]}`);
}

/** Checks every kind of matrix of the golden model: attention, dense MLP, shared and routed experts. */
async function checkLayout(mem: HostMemory, weights: Awaited<ReturnType<typeof uploadWeights>>['weights'], reference: WeightSource, cfg: KimiConfig, bits: 4 | 8 | 'fp8'): Promise<void> {
  const kdaLayer = cfg.layers.findIndex((l) => l.attention === 'kda');
  const mlaLayer = cfg.layers.findIndex((l) => l.attention === 'mla');
  const denseLayer = cfg.layers.findIndex((l) => l.ffn === 'dense');
  const moeLayer = cfg.layers.findIndex((l) => l.ffn === 'moe');
  const k = kdaNames(kdaLayer);
  const kda = weights.layers[kdaLayer].kda!;
  const moe = weights.layers[moeLayer].moe!;
  const m = moeNames(cfg, moeLayer);
  const cases: [string, Mat, string[]][] = [
    ['KDA q|k|v', kda.wqkv, [k.qProj, k.kProj, k.vProj]],
    ['KDA f_b_proj', kda.fB, [k.fB]],
    ['KDA o_proj', kda.oProj, [k.oProj]],
    ['MLA q_proj', weights.layers[mlaLayer].mla!.qProj, [mlaNames(mlaLayer).qProj]],
    ['dense MLP gate|up', weights.layers[denseLayer].mlp!.w13, [mlpNames(cfg, denseLayer).gate, mlpNames(cfg, denseLayer).up]],
    ['shared expert down', moe.shared!.down, [m.shared!.down]],
    ['routed experts gate|up', moe.w13, m.experts.flatMap((e) => [e.gate, e.up])],
    ['routed experts down', moe.w2, m.experts.map((e) => e.down)],
  ];
  for (const [what, mat, names] of cases) {
    const w = quant(mat);
    assert.deepEqual([w.bits, w.fp8], bits === 'fp8' ? [8, true] : [bits, false], what);
    assertSame(decode(mem, w), await stacked(reference, names), what);
  }
}

/** The written checkpoint and its dequantized twin, opened for `body`, then closed and removed. */
async function withWritten(written: Promise<Written>, cfg: KimiConfig, body: (ckpt: Checkpoint, reference: Checkpoint) => Promise<void>): Promise<void> {
  const { quantized, dequantized } = await written;
  try {
    const ckpt = await Checkpoint.open(quantized, cfg);
    const reference = await Checkpoint.open(dequantized, cfg);
    try {
      await body(ckpt, reference);
    } finally {
      await ckpt.close();
      await reference.close();
    }
  } finally {
    rmSync(quantized, { recursive: true, force: true });
    rmSync(dequantized, { recursive: true, force: true });
  }
}

/**
 * The golden checkpoint, the reference backend's weights quantized at load to `q` from it, and the
 * uploader's AtLoad for the same scheme; both checkpoints closed after `body`.
 */
async function withGoldenAtLoad(
  q: 'int4' | 'fp8',
  body: (g: { cfg: KimiConfig; ckpt: Checkpoint; reference: WeightSource; atLoad: AtLoad }) => Promise<void>,
): Promise<void> {
  const cfg = await loadConfig(GOLDEN);
  const ckpt = await Checkpoint.open(GOLDEN, cfg);
  const reference = await quantizeAtLoad(await Checkpoint.open(GOLDEN, cfg), cfg, q);
  try {
    await body({ cfg, ckpt, reference, atLoad: { scheme: presetScheme(SCHEME_OF[q]), targets: atLoadTargets(cfg) } });
  } finally {
    await ckpt.close();
    await reference.close();
  }
}

test('int4 at load: the packed codes and scales on the device are the reference backend\'s weights, and the plan counts the bytes uploaded', async () => {
  await withGoldenAtLoad('int4', async ({ cfg, ckpt, reference, atLoad }) => {
    const mem = new HostMemory();
    const { weights } = await uploadWeights(mem.native, {} as NativeContext, cfg, ckpt, atLoad);
    await checkLayout(mem, weights, reference, cfg, 4);
    assert.ok(!isQuant(weights.layers[cfg.layers.findIndex((l) => l.attention === 'kda')].kda!.bProj), 'b_proj stays in full precision');
    // fp32 checkpoint: fp32 scales; a group of 128 over 64 inputs is one scale per row.
    const down = quant(weights.layers[cfg.layers.findIndex((l) => l.ffn === 'moe')].moe!.w2);
    assert.deepEqual([down.scalesF32, down.group, down.K, down.zeros], [true, cfg.moe.intermediateSize, cfg.moe.intermediateSize, null]);
    const planned = await deviceWeightBytes(cfg, ckpt, atLoad, true);
    assert.equal(planned.weights.resident + planned.weights.experts.reduce((a, b) => a + b, 0), mem.allocated);
    const plain = await deviceWeightBytes(cfg, ckpt, null, true);
    assert.ok(planned.weights.experts[1] * 5 < plain.weights.experts[1], 'int4 experts take under a fifth of fp32 ones');
    assert.equal(plain.dense, 0, 'no dequantization buffer without quantized weights');
    // The buffer holds one layer's experts dequantized to fp32: [E, 2I, d] and [E, d, I].
    const { numExperts: E, intermediateSize: I } = cfg.moe;
    assert.equal(planned.dense, E * 3 * I * cfg.hiddenSize * 4);
  });
});

test('a bf16 checkpoint: dense matrices upload their stored bytes; int4 and fp8 at load are quantized from them on the device, into the reference backend\'s weights', async () => {
  const tiny = join(__dirname, '..', '..', '..', 'assets', 'tiny-model');
  const cfg = await loadConfig(tiny);
  for (const q of ['int4', 'fp8'] as const) {
    const ckpt = await Checkpoint.open(tiny, cfg);
    const reference = await quantizeAtLoad(await Checkpoint.open(tiny, cfg), cfg, q);
    try {
      const mem = new HostMemory();
      const atLoad: AtLoad = { scheme: presetScheme(SCHEME_OF[q]), targets: atLoadTargets(cfg) };
      const { weights } = await uploadWeights(mem.native, {} as NativeContext, cfg, ckpt, atLoad);
      await checkLayout(mem, weights, reference, cfg, q === 'int4' ? 4 : 'fp8');
      assert.equal(mem.deviceQuantized, atLoad.targets.size, `${q}: every weight quantized at load is quantized on the device`);
      const kda = cfg.layers.findIndex((l) => l.attention === 'kda');
      const bProj = weights.layers[kda].kda!.bProj;
      assert.ok(!isQuant(bProj) && !bProj.f32, 'b_proj stays bf16');
      const name = kdaNames(kda).bProj;
      assert.deepEqual(mem.bytes(bProj.ptr, ckpt.info(name).shape[0] * ckpt.info(name).shape[1] * 2), await ckpt.readStored(name), 'b_proj\'s device bytes are its stored bytes');
      const planned = await deviceWeightBytes(cfg, ckpt, atLoad, false);
      assert.equal(planned.weights.resident + planned.weights.experts.reduce((a, b) => a + b, 0), mem.allocated, `${q}: bytes (the staging buffer freed)`);
    } finally {
      await ckpt.close();
      await reference.close();
    }
  }
});

test('on tensor cores the 48B model\'s quantized experts are dequantized 32 at a time: the buffer holds 32 experts in bf16, not 256', async () => {
  const cfg = await loadConfigFile(join(__dirname, '..', '..', '..', 'assets', 'configs', 'kimi-linear-48b-a3b-instruct.json'));
  const ckpt = new DummyWeights(cfg, 0, 'kimi-linear-48b-a3b-instruct.json');
  const atLoad: AtLoad = { scheme: presetScheme(SCHEME_OF.int4), targets: atLoadTargets(cfg) };
  // 32 experts: W13 32·2·1024·2304·2 B = 301,989,888 (a multiple of 256), W2 32·2304·1024·2 B = 150,994,944.
  assert.equal((await deviceWeightBytes(cfg, ckpt, atLoad, false)).dense, 452_984_832);
  // Exact mode keeps all 256 in fp32: 256·3·1024·2304·4 B.
  assert.equal((await deviceWeightBytes(cfg, ckpt, atLoad, true)).dense, 7_247_757_312);
});

test('fp8 at load: one E4M3 byte per weight and one scale per row on the device, the reference backend\'s weights; the plan counts the bytes uploaded', async () => {
  await withGoldenAtLoad('fp8', async ({ cfg, ckpt, reference, atLoad }) => {
    const mem = new HostMemory();
    const { weights } = await uploadWeights(mem.native, {} as NativeContext, cfg, ckpt, atLoad);
    await checkLayout(mem, weights, reference, cfg, 'fp8');
    // fp32 checkpoint: fp32 scales, one per row, no zero points.
    const down = quant(weights.layers[cfg.layers.findIndex((l) => l.ffn === 'moe')].moe!.w2);
    assert.deepEqual([down.scalesF32, down.group, down.K, down.zeros], [true, cfg.moe.intermediateSize, cfg.moe.intermediateSize, null]);
    const planned = await deviceWeightBytes(cfg, ckpt, atLoad, true);
    assert.equal(planned.weights.resident + planned.weights.experts.reduce((a, b) => a + b, 0), mem.allocated);
    // One MoE layer's experts: gate|up [8 × 2 × 64, 128]: 131,072 bytes + 1024 fp32 scales 4,096 = 135,168;
    //   down [8 × 128, 64]: 65,536 + 4,096 = 69,632; together 204,800.
    assert.deepEqual(planned.weights.experts, [0, 204_800, 204_800, 204_800]);
    assert.equal(planned.quantExperts, true);
  });
});

test('a stored FP8 checkpoint (float-quantized) is uploaded as its E4M3 bytes: per-channel scales as stored, a per-tensor scale repeated per row', async () => {
  const cfg = await loadConfig(GOLDEN);
  for (const [perTensor, strategy] of [
    [false, 'channel'],
    [true, 'tensor'],
  ] as const) {
    const written = writeQuantizedGolden(
      (module) => (module === 'lm_head' ? null : { kind: 'fp8', perTensor }),
      quantizationConfig({ group_0: configGroup(['Linear'], { num_bits: 8, type: 'float', symmetric: true, strategy, group_size: null }, 'float-quantized') }, 'float-quantized', ['lm_head']),
    );
    await withWritten(written, cfg, async (ckpt, reference) => {
      const mem = new HostMemory();
      const { weights } = await uploadWeights(mem.native, {} as NativeContext, cfg, ckpt);
      await checkLayout(mem, weights, reference, cfg, 'fp8');
      const w13 = quant(weights.layers[1].moe!.w13);
      // The writer stores bf16 scales: they stay bf16, one per row of the stacked experts.
      assert.deepEqual([w13.scalesF32, w13.group, w13.zeros], [false, cfg.hiddenSize, null], strategy);
      const planned = await deviceWeightBytes(cfg, ckpt, null, true);
      assert.equal(planned.weights.resident + planned.weights.experts.reduce((a, b) => a + b, 0), mem.allocated, `${strategy} bytes`);
      // gate|up [1024, 128]: 131,072 + 1024 bf16 scales 2,048; down [1024, 64]: 65,536 + 2,048: 200,704 per MoE layer.
      assert.deepEqual(planned.weights.experts, [0, 200_704, 200_704, 200_704], strategy);
    });
  }
});

test('a stored compressed-tensors checkpoint keeps its own layout: INT4 group 32 and INT8 per channel with zero points', async () => {
  const cfg = await loadConfig(GOLDEN);
  for (const [bits, group, strategy] of [
    [4, 32, 'group'],
    [8, -1, 'channel'],
  ] as const) {
    const written = writeQuantizedGolden(
      (module) => (module === 'lm_head' ? null : { kind: 'int', bits, symmetric: false, group }),
      quantizationConfig({ group_0: configGroup(['Linear'], { num_bits: bits, type: 'int', symmetric: false, strategy, group_size: group === -1 ? null : group }, 'pack-quantized') }, 'pack-quantized', ['lm_head']),
    );
    await withWritten(written, cfg, async (ckpt, reference) => {
      const mem = new HostMemory();
      const { weights } = await uploadWeights(mem.native, {} as NativeContext, cfg, ckpt);
      await checkLayout(mem, weights, reference, cfg, bits);
      const planned = await deviceWeightBytes(cfg, ckpt, null, true);
      assert.equal(planned.weights.resident + planned.weights.experts.reduce((a, b) => a + b, 0), mem.allocated, `${bits}-bit bytes`);
      assert.ok(quant(weights.layers[1].moe!.w13).zeros !== null, 'zero points uploaded');
    });
  }
});

test('GPTQ and AWQ checkpoints go to the device in the same layout as compressed-tensors ones: the reference backend\'s weights, the bytes the plan counts', async () => {
  const cfg = await loadConfig(GOLDEN);
  const notHead = (spec: InputMajorSpec) => (m: string) => (m === 'lm_head' ? null : spec);
  for (const [what, bits, spec, config] of [
    ['GPTQ v1 INT4 group 32 symmetric', 4, { kind: 'gptq', bits: 4, group: 32, symmetric: true, v2: false }, gptqConfig(4, 32, true, false, 'gptq')],
    ['GPTQ v1 INT4 group 64 asymmetric', 4, { kind: 'gptq', bits: 4, group: 64, symmetric: false, v2: false }, gptqConfig(4, 64, false, false, 'gptq')],
    ['GPTQ v2 INT8 per channel asymmetric', 8, { kind: 'gptq', bits: 8, group: -1, symmetric: false, v2: true }, gptqConfig(8, -1, false, false, 'gptq_v2')],
    ['AWQ INT4 group 32', 4, { kind: 'awq', group: 32, zeroPoint: true }, awqConfig(32, true)],
  ] as const) {
    const written = writeInputMajorGolden(notHead(spec), config);
    await withWritten(written, cfg, async (ckpt, reference) => {
      const mem = new HostMemory();
      const { weights } = await uploadWeights(mem.native, {} as NativeContext, cfg, ckpt);
      await checkLayout(mem, weights, reference, cfg, bits);
      const planned = await deviceWeightBytes(cfg, ckpt, null, true);
      assert.equal(planned.weights.resident + planned.weights.experts.reduce((a, b) => a + b, 0), mem.allocated, `${what}: bytes`);
      assert.equal(quant(weights.layers[1].moe!.w13).scalesF32, true, `${what}: fp16 scales are kept exact as fp32`);
      assert.equal(quant(weights.layers[1].moe!.w13).zeros !== null, 'zeroPoint' in spec ? spec.zeroPoint : !spec.symmetric, `${what}: zero points`);
    });
  }
});

test('GPTQ act-order weights (desc_act) are uploaded dense with their dequantized values, as other layouts the kernels do not read', async () => {
  const cfg = await loadConfig(GOLDEN);
  const written = writeInputMajorGolden((m) => (m === 'lm_head' ? null : { kind: 'gptq', bits: 4, group: 32, symmetric: true, v2: false, actorder: true }), gptqConfig(4, 32, true, true, 'gptq'));
  await withWritten(written, cfg, async (ckpt, reference) => {
    const mem = new HostMemory();
    const { weights } = await uploadWeights(mem.native, {} as NativeContext, cfg, ckpt);
    const kdaLayer = cfg.layers.findIndex((l) => l.attention === 'kda');
    const k = kdaNames(kdaLayer);
    const kda = weights.layers[kdaLayer].kda!;
    assert.ok(!isQuant(kda.wqkv) && kda.wqkv.f32, 'dense fp32, as the fp32 checkpoint\'s other matrices');
    const values = new Float32Array(mem.int32(kda.wqkv.ptr, 3 * cfg.kda.numHeads * cfg.kda.headDim * cfg.hiddenSize).buffer);
    assert.deepEqual(values, await stacked(reference, [k.qProj, k.kProj, k.vProj]));
    const moe = weights.layers[cfg.layers.findIndex((l) => l.ffn === 'moe')].moe!;
    assert.ok(!isQuant(moe.w13) && !isQuant(moe.w2), 'routed experts dense');
    const planned = await deviceWeightBytes(cfg, ckpt, null, true);
    assert.equal(planned.weights.resident + planned.weights.experts.reduce((a, b) => a + b, 0), mem.allocated);
  });
  // Act-order weights whose config does not say so cannot go where the plan put them.
  const undeclared = writeInputMajorGolden((m) => (m === 'lm_head' ? null : { kind: 'gptq', bits: 4, group: 32, symmetric: true, v2: false, actorder: true }), gptqConfig(4, 32, true, false, 'gptq'));
  await withWritten(undeclared, cfg, async (ckpt) => {
    await assert.rejects(uploadWeights(new HostMemory().native, {} as NativeContext, cfg, ckpt), (e: Error) => isUserError(e) && /stores a g_idx in activation order, which its quantization config does not declare/.test(e.message));
  });
});

test('weights the kernels do not take are uploaded dense with their dequantized values', async () => {
  const cfg = await loadConfig(GOLDEN);
  // Groups of 16 do not fill the INT4 kernels' 32-code loads.
  const written = writeQuantizedGolden(
    (module) => (module === 'lm_head' ? null : { kind: 'int', bits: 4, symmetric: true, group: 16 }),
    quantizationConfig({ group_0: configGroup(['Linear'], { num_bits: 4, type: 'int', symmetric: true, strategy: 'group', group_size: 16 }, 'pack-quantized') }, 'pack-quantized', ['lm_head']),
  );
  await withWritten(written, cfg, async (ckpt, reference) => {
    const mem = new HostMemory();
    const { weights } = await uploadWeights(mem.native, {} as NativeContext, cfg, ckpt);
    const k = kdaNames(cfg.layers.findIndex((l) => l.attention === 'kda'));
    const kda = weights.layers[cfg.layers.findIndex((l) => l.attention === 'kda')].kda!;
    assert.ok(!isQuant(kda.wqkv) && kda.wqkv.f32, 'dense fp32, as the fp32 checkpoint\'s other matrices');
    const values = new Float32Array(mem.int32(kda.wqkv.ptr, 3 * cfg.kda.numHeads * cfg.kda.headDim * cfg.hiddenSize).buffer);
    const want = await stacked(reference, [k.qProj, k.kProj, k.vProj]);
    let worst = 0;
    for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(values[i] - want[i]) / Math.max(Math.abs(want[i]), 1e-30));
    assert.ok(worst < 1e-6, `dense upload of the dequantized weights: worst relative difference ${worst}`);
    const planned = await deviceWeightBytes(cfg, ckpt, null, true);
    assert.equal(planned.weights.resident + planned.weights.experts.reduce((a, b) => a + b, 0), mem.allocated);
    assert.equal(planned.dense, 0);
  });
});

test('offloaded experts: the plan\'s host layers are the ones placed in pinned host memory, and the plan\'s bytes are the bytes placed', async () => {
  await withGoldenAtLoad('int4', async ({ cfg, ckpt, reference, atLoad }) => {
    const planned = await deviceWeightBytes(cfg, ckpt, atLoad, true);
    // One MoE layer's experts at int4 with fp32 scales (fp32 checkpoint), one group per row:
    //   gate|up [8 × 2 × 64, 128]: 1024 × 128 / 2 = 65,536 + 1024 × 4 = 4,096 → 69,632;
    //   down [8 × 128, 64]: 1024 × 64 / 2 = 32,768 + 4,096 → 36,864; together 106,496.
    assert.deepEqual(planned.weights.experts, [0, 106_496, 106_496, 106_496]);
    assert.equal(planned.quantExperts, true);
    const facts = { free: 1e12, matrixBytes: 4, tensorCores: false, sampleScratch: 0, dir: GOLDEN, schemes: ['none', 'int8', 'int4'] as const, weights: () => ({ bytes: planned.weights, dense: planned.dense }) };
    const budget = { quantization: 'int4' as const, contextTokens: 4096, forks: 0, sliceTokens: 512 };
    const resident = cudaPlan(cfg, budget, facts).plan;
    assert.deepEqual(resident.offloadedLayers, []);
    // A cap half a layer's experts below the resident plan: one layer offloaded saves nothing (the
    // staging buffer holds one layer's experts), two save one layer's bytes.
    const capped = cudaPlan(cfg, { ...budget, gpuMemory: (resident.gpu.total - 106_496 / 2) / USABLE_FRACTION }, facts).plan;
    assert.equal(capped.fits, true);
    assert.deepEqual(capped.offloadedLayers, [2, 3]);
    assert.equal(capped.host.experts, 212_992);
    assert.equal(capped.gpu.weights, resident.gpu.weights - 212_992);
    assert.equal(capped.gpu.workspace, resident.gpu.workspace + 106_496);

    const mem = new HostMemory();
    const { weights, ownedHost } = await uploadWeights(mem.native, {} as NativeContext, cfg, ckpt, atLoad, capped.offloadedLayers);
    assert.equal(mem.hostAllocated, capped.host.experts);
    assert.equal(mem.allocated, capped.gpu.weights);
    assert.equal(ownedHost.length, 2 * 2 * 2, 'codes and scales of gate|up and down, two layers (symmetric: no zero points)');
    for (const layer of [1, 2, 3]) {
      const moe = weights.layers[layer].moe!;
      const host = layer >= 2;
      assert.equal(moe.onHost, host, `layer ${layer}`);
      for (const w of [quant(moe.w13), quant(moe.w2)]) assert.equal(mem.isHost(w.packed) && mem.isHost(w.scales), host, `layer ${layer} experts placement`);
      assert.equal(mem.isHost(quant(moe.shared!.w13).packed), false, 'the shared expert stays on the GPU');
      const m = moeNames(cfg, layer);
      assertSame(decode(mem, quant(moe.w13)), await stacked(reference, m.experts.flatMap((e) => [e.gate, e.up])), `layer ${layer} gate|up`);
      assertSame(decode(mem, quant(moe.w2)), await stacked(reference, m.experts.map((e) => e.down)), `layer ${layer} down`);
      // The staging buffer takes both matrices without gaps, codes 16-byte aligned.
      const { offsets, bytes } = stagingLayout([quant(moe.w13), quant(moe.w2)]);
      assert.equal(bytes, 106_496);
      // Codes 65,536 + 32,768 = 98,304; no zero points (symmetric), so the fp32 scales start there.
      assert.deepEqual(offsets, [{ packed: 0, zeros: 98_304, scales: 98_304 }, { packed: 65_536, zeros: 98_304, scales: 102_400 }]);
    }
    // bf16 experts cannot be offloaded: the CPU runs INT4/INT8/FP8 only.
    await assert.rejects(uploadWeights(new HostMemory().native, {} as NativeContext, cfg, ckpt, null, [3]), (e) => isUserError(e) && /only INT4\/INT8\/FP8 experts/.test(e.message));
  });
});
