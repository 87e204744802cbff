/**
 * The MLA graphs against the reference (src/engine/reference/mla.ts) on the golden tiny
 * checkpoint's MLA layer: prefill over an empty cache and after 300 cached tokens (more than one
 * cache page), with the key loop in one block or in several, and the absorbed decode step. The
 * cached rows are fed in two parts (`shared`, then `own`), split anywhere, block edges included.
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { KimiConfig } from '../../../src/engine/model/config';
import { mlaDecode, mlaPrefill, type MlaWeights } from '../../../src/engine/reference/mla';
import { mlaDecodeGraph, mlaPrefillGraph } from '../../../src/engine/backends/onnx/mla-graph';
import { LatentCache } from '../../../src/engine/state/latent-cache';
import { relError } from '../../golden/golden-data';
import { data, f32, randomArray, runGraph, tinyWeights } from './helpers';

let cfg: KimiConfig;
let w: MlaWeights;
let width: number;

before(async () => {
  const t = await tinyWeights();
  cfg = t.cfg;
  const i = cfg.layers.findIndex((l) => l.attention === 'mla');
  w = t.w.layers[i].mla as MlaWeights;
  width = cfg.mla.kvLoraRank + cfg.mla.qkRopeHeadDim;
});

/** `split`: how many of the `past` cached rows go to `shared` (the rest to `own`); all of them by default. */
async function check(past: number, T: number, mode: 'prefill' | 'decode', keyBlock?: number, split = past): Promise<void> {
  const d = cfg.hiddenSize;
  const cache = new LatentCache(width);
  if (past > 0) mlaPrefill(cfg, w, randomArray(past * d, 3, 2), past, cache);
  const before = cache.toArray();
  const x = randomArray(T * d, 40 + past + T, 2);
  const want = mode === 'prefill' ? mlaPrefill(cfg, w, x, T, cache) : mlaDecode(cfg, w, x, cache);
  const bytes = mode === 'prefill' ? mlaPrefillGraph(cfg, w, keyBlock) : mlaDecodeGraph(cfg, w);
  const out = await runGraph(bytes, {
    x: f32(x, [T, d]),
    shared: f32(before.subarray(0, split * width), [split, width]),
    own: f32(before.subarray(split * width), [past - split, width]),
  });
  assert.ok(relError(data(out.y), want) < 1e-5, `${mode} past=${past} T=${T}: y ${relError(data(out.y), want)}`);
  const newRows = cache.toArray().subarray(past * width);
  assert.deepEqual(out.rows.dims, [T, width]);
  assert.ok(relError(data(out.rows), newRows) < 1e-5, `rows ${relError(data(out.rows), newRows)}`);
}

test('prefill over an empty cache', () => check(0, 37, 'prefill'));
test('prefill after 300 cached tokens sees all of them and is causal within the slice', () => check(300, 45, 'prefill'));
test('one-token prefill equals the naive form', () => check(12, 1, 'prefill'));
test('prefill walking the keys in blocks of 64 (online softmax over 6 blocks) equals the reference', () => check(300, 45, 'prefill', 64));
test('prefill whose own tokens span several key blocks stays causal', () => check(10, 100, 'prefill', 16));
test('absorbed decode over the latent cache', () => check(300, 1, 'decode'));
test('absorbed decode as the first token', () => check(0, 1, 'decode'));
test('prefill over a cache split into shared and own rows inside a key block', () => check(300, 45, 'prefill', 64, 200));
test('prefill over a cache split at a key block edge, blocks of 16', () => check(300, 20, 'prefill', 16, 128));
test('prefill over own rows only', () => check(300, 45, 'prefill', 64, 0));
test('one-token prefill over a split cache', () => check(70, 1, 'prefill', 16, 33));
test('absorbed decode over a split cache', () => check(300, 1, 'decode', undefined, 257));
test('absorbed decode over own rows only', () => check(300, 1, 'decode', undefined, 0));
