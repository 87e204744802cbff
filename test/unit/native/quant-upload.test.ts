/**
 * How the CUDA backend lays quantized weights out in device memory, checked without a GPU: the
 * upload runs against host memory standing in for the device's (alloc and upload only), and the
 * bytes are decoded here from the klc_wq layout of klc_native.h (codes 32/bits per int32, lowest
 * column lowest; scales per row and group; zero points packed down the columns) and compared with
 * the weights the reference backend computes with. Also: the bytes the plan counts are the bytes
 * uploaded, and weights the kernels cannot take are uploaded dense.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { deviceWeightBytes, isQuant, uploadWeights, type AtLoad, type Mat } from '../../../src/engine/backends/cuda/device-weights';
import type { DevicePtr, NativeContext, NativeKlc, NativeWq } from '../../../src/engine/backends/cuda/loader';
import { Checkpoint } from '../../../src/engine/model/checkpoint';
import { loadConfig, type KimiConfig } from '../../../src/engine/model/config';
import { atLoadTargets, quantizeAtLoad } from '../../../src/engine/model/quant/at-load';
import { presetScheme } from '../../../src/engine/model/quant/presets';
import { kdaNames, mlaNames, moeNames, mlpNames } from '../../../src/engine/model/weight-names';
import type { WeightSource } from '../../../src/engine/model/weight-source';
import { configGroup, GOLDEN, quantizationConfig, writeQuantizedGolden } from '../engine/quant/ct-writer';

/** Host memory addressed like device memory: what alloc and upload did, nothing else. */
class HostMemory {
  private readonly blocks = new Map<bigint, Buffer>();
  private next = 1n << 32n;
  allocated = 0;

  readonly native = {
    alloc: (_ctx: NativeContext, bytes: number): DevicePtr => {
      const p = this.next;
      this.blocks.set(p, Buffer.alloc(bytes));
      this.next += BigInt(Math.ceil(bytes / 256) * 256 + 256);
      this.allocated += bytes;
      return p;
    },
    free: (_ctx: NativeContext, p: DevicePtr) => void this.blocks.delete(p),
    upload: (_ctx: NativeContext, dst: DevicePtr, src: ArrayBufferView) => {
      const [base, buf] = this.block(dst);
      const off = Number(dst - base);
      assert.ok(off + src.byteLength <= buf.length, 'upload past the end of its allocation');
      Buffer.from(src.buffer, src.byteOffset, src.byteLength).copy(buf, off);
    },
  } as unknown as NativeKlc;

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
      const q = field(words[(r * w.K + c - (c % perWord)) / perWord], c % perWord) - offset;
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
async function checkLayout(mem: HostMemory, weights: Awaited<ReturnType<typeof uploadWeights>>['weights'], reference: WeightSource, cfg: KimiConfig, bits: number): Promise<void> {
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
    assert.equal(w.bits, bits, what);
    assertSame(decode(mem, w), await stacked(reference, names), what);
  }
}

test('int4 at load: the packed codes and scales on the device are the reference backend\'s weights, and the plan counts the bytes uploaded', async () => {
  const cfg = await loadConfig(GOLDEN);
  const ckpt = await Checkpoint.open(GOLDEN, cfg);
  const reference = await quantizeAtLoad(await Checkpoint.open(GOLDEN, cfg), cfg, 'int4');
  try {
    const atLoad: AtLoad = { scheme: presetScheme('w4a16-g128'), targets: atLoadTargets(cfg) };
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
  } finally {
    await ckpt.close();
    await reference.close();
  }
});

test('a stored compressed-tensors checkpoint keeps its own layout: INT4 group 32 and INT8 per channel with zero points', async () => {
  const cfg = await loadConfig(GOLDEN);
  for (const [bits, group, strategy] of [
    [4, 32, 'group'],
    [8, -1, 'channel'],
  ] as const) {
    const written = await writeQuantizedGolden(
      (module) => (module === 'lm_head' ? null : { kind: 'int', bits, symmetric: false, group }),
      quantizationConfig({ group_0: configGroup(['Linear'], { num_bits: bits, type: 'int', symmetric: false, strategy, group_size: group === -1 ? null : group }, 'pack-quantized') }, 'pack-quantized', ['lm_head']),
    );
    const ckpt = await Checkpoint.open(written.quantized, cfg);
    const reference = await Checkpoint.open(written.dequantized, cfg);
    try {
      const mem = new HostMemory();
      const { weights } = await uploadWeights(mem.native, {} as NativeContext, cfg, ckpt);
      await checkLayout(mem, weights, reference, cfg, bits);
      const planned = await deviceWeightBytes(cfg, ckpt, null, true);
      assert.equal(planned.weights.resident + planned.weights.experts.reduce((a, b) => a + b, 0), mem.allocated, `${bits}-bit bytes`);
      assert.ok(quant(weights.layers[1].moe!.w13).zeros !== null, 'zero points uploaded');
    } finally {
      await ckpt.close();
      await reference.close();
      rmSync(written.quantized, { recursive: true, force: true });
      rmSync(written.dequantized, { recursive: true, force: true });
    }
  }
});

test('weights the kernels do not take are uploaded dense with their dequantized values', async () => {
  const cfg = await loadConfig(GOLDEN);
  // Groups of 16 do not fill the INT4 kernels' 32-code loads.
  const written = await writeQuantizedGolden(
    (module) => (module === 'lm_head' ? null : { kind: 'int', bits: 4, symmetric: true, group: 16 }),
    quantizationConfig({ group_0: configGroup(['Linear'], { num_bits: 4, type: 'int', symmetric: true, strategy: 'group', group_size: 16 }, 'pack-quantized') }, 'pack-quantized', ['lm_head']),
  );
  const ckpt = await Checkpoint.open(written.quantized, cfg);
  const reference = await Checkpoint.open(written.dequantized, cfg);
  try {
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
  } finally {
    await ckpt.close();
    await reference.close();
    rmSync(written.quantized, { recursive: true, force: true });
    rmSync(written.dequantized, { recursive: true, force: true });
  }
});
