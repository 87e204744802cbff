/**
 * The feed-forward graphs against the reference (src/engine/reference/moe.ts) on the golden tiny
 * checkpoint: MoE output, router logits, chosen experts (ascending, exactly) and their weights,
 * for one token (most experts get no rows) and for many; the dense MLP; rmsnorm, embed, lm_head.
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as ort from 'onnxruntime-node';
import type { KimiConfig } from '../../../src/engine/model/config';
import type { ModelWeights } from '../../../src/engine/reference/weights';
import { moe, route, swiglu, type MoeWeights } from '../../../src/engine/reference/moe';
import { rmsnormRows } from '../../../src/engine/reference/norms';
import { linear } from '../../../src/engine/reference/linalg';
import { embedGraph, lmHeadGraph, mlpGraph, moeGraph, rmsnormGraph } from '../../../src/engine/backends/onnx/ffn-graph';
import { relError } from '../../golden/golden-data';
import { data, f32, randomArray, runGraph, tinyWeights } from './helpers';

let cfg: KimiConfig;
let W: ModelWeights;

before(async () => {
  ({ cfg, w: W } = await tinyWeights());
});

for (const T of [1, 3, 57]) {
  test(`MoE block with ${T} token(s): output, logits, chosen experts and weights equal the reference`, async () => {
    const d = cfg.hiddenSize;
    const w = W.layers[1].moe as MoeWeights;
    const x = randomArray(T * d, T, 2);
    const routing = route(cfg.moe, w, x, T, d);
    const want = moe(cfg.moe, w, x, T, d, routing);
    const out = await runGraph(moeGraph(cfg, w), { x: f32(x, [T, d]) });
    assert.deepEqual(Array.from(out.idx.data as BigInt64Array, Number), Array.from(routing.idx));
    assert.ok(relError(data(out.logits), routing.logits) < 1e-5, 'router logits');
    assert.ok(relError(data(out.weight), routing.weight) < 1e-5, 'router weights');
    assert.ok(relError(data(out.y), want) < 1e-5, `y ${relError(data(out.y), want)}`);
  });
}

test('dense MLP equals the reference SwiGLU', async () => {
  const d = cfg.hiddenSize;
  const w = W.layers[0].mlp;
  assert.ok(w);
  const x = randomArray(9 * d, 77, 2);
  const out = await runGraph(mlpGraph(cfg, w), { x: f32(x, [9, d]) });
  assert.ok(relError(data(out.y), swiglu(w, x, 9, d)) < 1e-5);
});

test('rmsnorm, embedding rows and lm_head equal the reference', async () => {
  const d = cfg.hiddenSize;
  const V = cfg.vocabSize;
  const x = randomArray(4 * d, 8, 3);
  const n = await runGraph(rmsnormGraph(d, W.finalNorm, cfg.rmsNormEps), { x: f32(x, [4, d]) });
  assert.ok(relError(data(n.y), rmsnormRows(x, 4, d, W.finalNorm, cfg.rmsNormEps)) < 1e-6);
  const ids = [0, 5, V - 1];
  const e = await runGraph(embedGraph(W.embed, V, d), { ids: new ort.Tensor('int64', BigInt64Array.from(ids.map(BigInt)), [3]) });
  assert.deepEqual(Array.from(data(e.y)), ids.flatMap((id) => Array.from(W.embed.subarray(id * d, (id + 1) * d))));
  const h = await runGraph(lmHeadGraph(W.lmHead, V, d), { x: f32(x, [4, d]) });
  assert.ok(relError(data(h.y), linear(x, 4, W.lmHead, V, d)) < 1e-5);
});
