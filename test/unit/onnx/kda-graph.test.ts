/**
 * The KDA graphs against the reference operator (src/engine/reference/kda.ts) on the golden tiny
 * checkpoint's layer-0 weights: chunked prefill for ragged lengths and several chunk lengths
 * (one sub-block, several, and a length that is not a multiple of the sub-block), from a non-zero
 * state; the decode step; and gates far stronger than trained models produce.
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { KimiConfig } from '../../../src/engine/model/config';
import { kdaLayer, type KdaWeights } from '../../../src/engine/reference/kda';
import { kdaDecodeGraph, kdaPrefillGraph } from '../../../src/engine/backends/onnx/kda-graph';
import type { KdaLayerState } from '../../../src/engine/state/types';
import { relError } from '../../golden/golden-data';
import { data, f32, randomArray, runGraph, tinyWeights } from './helpers';

let cfg: KimiConfig;
let w: KdaWeights;

before(async () => {
  const t = await tinyWeights();
  cfg = t.cfg;
  w = t.w.layers[0].kda as KdaWeights;
});

function startState(seed: number): KdaLayerState {
  const { numHeads: H, headDim: K, convKernel: W } = cfg.kda;
  return { kind: 'kda', conv: randomArray(3 * H * K * (W - 1), seed), S: randomArray(H * K * K, seed + 1, 0.2) };
}

async function compare(weights: KdaWeights, T: number, chunk: number | 'decode', seed: number, tol: number): Promise<void> {
  const { numHeads: H, headDim: K, convKernel: W } = cfg.kda;
  const d = cfg.hiddenSize;
  const x = randomArray(T * d, seed, 2);
  const ref = startState(seed + 7);
  const mine = { conv: ref.conv.slice(), S: ref.S.slice() };
  const want = kdaLayer(cfg, weights, x, T, ref, chunk === 'decode' ? { kind: 'recurrent' } : { kind: 'chunked', chunk });
  const bytes = chunk === 'decode' ? kdaDecodeGraph(cfg, weights) : kdaPrefillGraph(cfg, weights, chunk);
  const out = await runGraph(bytes, { x: f32(x, [T, d]), conv: f32(mine.conv, [3 * H * K, W - 1]), S: f32(mine.S, [H, K, K]) });
  const label = `T=${T} chunk=${chunk}`;
  assert.ok(relError(data(out.y), want) < tol, `${label} y: ${relError(data(out.y), want)}`);
  assert.ok(relError(data(out.S_out), ref.S) < tol, `${label} S: ${relError(data(out.S_out), ref.S)}`);
  assert.deepEqual(out.conv_out.dims, [3 * H * K, W - 1]);
  assert.ok(relError(data(out.conv_out), ref.conv) < 1e-6, `${label} conv tail: ${relError(data(out.conv_out), ref.conv)}`);
}

for (const [T, chunk] of [
  [1, 64],
  [2, 64],
  [63, 64],
  [64, 64],
  [150, 64],
  [50, 16],
  [90, 40],
] as const) {
  test(`chunked prefill equals the reference: ${T} tokens, chunk ${chunk}`, async () => {
    await compare(w, T, chunk, 100 + T + chunk, 1e-5);
  });
}

test('the decode step equals the reference recurrence', async () => {
  await compare(w, 1, 'decode', 5, 1e-5);
});

test('gates of −100 to −300 per token stay finite and equal the reference', async () => {
  // dt_bias = 30 gives softplus ≈ 30 and g = −exp(A_log)·30, −107 to −293 with this checkpoint's
  // A_log: e^{G} underflows within a chunk, and a naive e^{G_i}·e^{−G_j} split would overflow fp32.
  const strong: KdaWeights = { ...w, dtBias: new Float32Array(w.dtBias.length).fill(30) };
  await compare(strong, 130, 64, 9, 1e-5);
  await compare(strong, 1, 'decode', 10, 1e-5);
});

test('chunked graph output is finite for mixed weak and strong gates', async () => {
  const mixed = new Float32Array(w.dtBias.length);
  for (let i = 0; i < mixed.length; i++) mixed[i] = i % 3 === 0 ? 40 : -8;
  await compare({ ...w, dtBias: mixed }, 100, 64, 11, 1e-5);
});
