/**
 * INT4 weights through ONNX Runtime's MatMulNBits: the packed form of each compressed-tensors
 * layout computes x · Wᵀ of its dequantized W (checked in float64 here), layouts MatMulNBits cannot
 * express stay on fp32 Gemm, and the onnx backend on an INT4 checkpoint (written by the
 * independent test writer) equals the reference backend on the same checkpoint.
 */
import { test } from 'node:test';
import { rmSync } from 'node:fs';
import assert from 'node:assert/strict';
import { onnx } from 'onnx-proto';
import { Graph } from '../../../src/engine/backends/onnx/graph';
import { attachPacked } from '../../../src/engine/backends/onnx/nbits';
import { linear } from '../../../src/engine/backends/onnx/ops';
import { loadModel } from '../../../src/engine/model/model';
import { dequantize, quantize } from '../../../src/engine/model/quant/matrix';
import type { WeightArgs } from '../../../src/engine/model/quant/scheme';
import { relError } from '../../golden/golden-data';
import { configGroup, quantizationConfig, writeQuantizedGolden } from '../engine/quant/ct-writer';
import { awqConfig, gptqConfig, writeInputMajorGolden } from '../engine/quant/gptq-writer';
import { data, f32, randomArray, runGraph } from './helpers';

const int4 = (strategy: WeightArgs['strategy'], groupSize: number | null, symmetric: boolean): WeightArgs => ({ numBits: 4, type: 'int', symmetric, strategy, groupSize, blockStructure: null });

function linearModel(W: Float32Array, N: number, K: number): Uint8Array {
  const g = new Graph();
  g.output('y', linear(g, g.input('x', 'float', ['T', K]), W, N, K), 'float', ['T', N]);
  return g.encodeModel('linear');
}

const opTypes = (bytes: Uint8Array) => (onnx.ModelProto.decode(bytes).graph?.node ?? []).map((n) => `${n.domain ? `${n.domain}.` : ''}${n.opType}`);

for (const [label, args, N, K] of [
  ['group 32, symmetric', int4('group', 32, true), 24, 96],
  ['group 64, asymmetric (packed zero points, odd block count)', int4('group', 64, false), 10, 192],
  ['group 48 (blocks of 16)', int4('group', 48, true), 8, 96],
  ['per channel, asymmetric', int4('channel', null, false), 12, 80],
  ['per tensor', int4('tensor', null, true), 6, 64],
] as const) {
  test(`MatMulNBits computes x·Wᵀ of the dequantized weight: ${label}`, async () => {
    const w = randomArray(N * K, 3, 0.2);
    const m = quantize(w, N, K, args, Math.fround);
    const W = dequantize(m);
    assert.ok(attachPacked(W, m));
    const bytes = linearModel(W, N, K);
    assert.deepEqual(opTypes(bytes).filter((t) => t.includes('MatMul') || t === 'Gemm'), ['com.microsoft.MatMulNBits']);
    const T = 5;
    const x = randomArray(T * K, 9);
    const y = data((await runGraph(bytes, { x: f32(x, [T, K]) })).y);
    const want = new Float32Array(T * N);
    for (let t = 0; t < T; t++) {
      for (let n = 0; n < N; n++) {
        let acc = 0;
        for (let k = 0; k < K; k++) acc += x[t * K + k] * W[n * K + k];
        want[t * N + n] = acc;
      }
    }
    assert.ok(relError(y, want) < 1e-5, `${relError(y, want)}`);
  });
}

test('layouts MatMulNBits cannot express stay on an fp32 Gemm', () => {
  const w = randomArray(8 * 40, 5, 0.2);
  for (const args of [int4('group', 20, true), { ...int4('channel', null, true), numBits: 8 }] as WeightArgs[]) {
    const m = quantize(w, 8, 40, args, Math.fround);
    const W = dequantize(m);
    assert.equal(attachPacked(W, m), false);
    assert.deepEqual(opTypes(linearModel(W, 8, 40)), ['Gemm', 'Identity']);
  }
});

test('the onnx backend on an INT4 checkpoint (group 32 symmetric, experts group 64 asymmetric) equals the reference backend', async () => {
  const { quantized } = await writeQuantizedGolden(
    (m) => (m === 'lm_head' ? null : m.includes('.experts.') ? { kind: 'int', bits: 4, symmetric: false, group: 64 } : { kind: 'int', bits: 4, symmetric: true, group: 32 }),
    quantizationConfig(
      {
        group_0: configGroup(['re:.*\\.experts\\..*'], { num_bits: 4, type: 'int', symmetric: false, strategy: 'group', group_size: 64 }, 'pack-quantized'),
        group_1: configGroup(['Linear'], { num_bits: 4, type: 'int', symmetric: true, strategy: 'group', group_size: 32 }, 'pack-quantized'),
      },
      'pack-quantized',
      ['lm_head'],
    ),
  );
  const lines: string[] = [];
  const onnxModel = await loadModel(quantized, { backend: 'onnx', log: (l) => lines.push(l) });
  // Every quantized weight: 3 KDA layers × 9 projections, MLA 4, dense MLP 3, 3 MoE layers × (8 experts × 3 + shared 3).
  assert.ok(lines.includes('backend onnx: 115 INT4 weights run through MatMulNBits'), lines.join('\n'));
  const ref = await loadModel(quantized, { backend: 'reference' });
  try {
    const ids = Int32Array.from({ length: 70 }, (_, i) => (i * 41 + 3) % 1000);
    const a = await onnxModel.prefill(onnxModel.newState(), ids, { logits: 'all' });
    const b = await ref.prefill(ref.newState(), ids, { logits: 'all' });
    assert.ok(relError(a, b) < 1e-5, `prefill: ${relError(a, b)}`);
    const sa = onnxModel.newState();
    const sb = ref.newState();
    await onnxModel.prefill(sa, ids.subarray(0, 10));
    await ref.prefill(sb, ids.subarray(0, 10));
    const da = await onnxModel.decode(sa, 17);
    const db = await ref.decode(sb, 17);
    assert.ok(relError(da, db) < 1e-5, `decode: ${relError(da, db)}`);
  } finally {
    await onnxModel.dispose();
    await ref.dispose();
  }
});

test('the onnx backend runs GPTQ and AWQ INT4 checkpoints through MatMulNBits and equals the reference backend', async () => {
  for (const [spec, config] of [
    [{ kind: 'gptq', bits: 4, group: 32, symmetric: true, v2: false }, gptqConfig(4, 32, true, false, 'gptq')],
    [{ kind: 'awq', group: 64, zeroPoint: true }, awqConfig(64, true)],
  ] as const) {
    const { quantized, dequantized } = await writeInputMajorGolden((m) => (m === 'lm_head' ? null : spec), config);
    const lines: string[] = [];
    const onnxModel = await loadModel(quantized, { backend: 'onnx', log: (l) => lines.push(l) });
    const ref = await loadModel(quantized, { backend: 'reference' });
    try {
      assert.ok(lines.includes('backend onnx: 115 INT4 weights run through MatMulNBits'), `${spec.kind}: ${lines.join('\n')}`);
      const ids = Int32Array.from({ length: 50 }, (_, i) => (i * 29 + 5) % 1000);
      const a = await onnxModel.prefill(onnxModel.newState(), ids, { logits: 'all' });
      const b = await ref.prefill(ref.newState(), ids, { logits: 'all' });
      assert.ok(relError(a, b) < 1e-5, `${spec.kind} prefill: ${relError(a, b)}`);
    } finally {
      await onnxModel.dispose();
      await ref.dispose();
      rmSync(quantized, { recursive: true, force: true });
      rmSync(dequantized, { recursive: true, force: true });
    }
  }
});
