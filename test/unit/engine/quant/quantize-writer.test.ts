/**
 * `klc quantize` writes what llm-compressor writes: the quantization_config, explicit ignore list
 * and tensors checked here against a hand-written config and an independent decoder
 * (ct-writer.ts); the written checkpoint gives the logits of its own dequantization, and
 * quantization at load gives exactly the logits of the written checkpoint. Sharded input stays
 * sharded; a failure leaves neither OUT nor a temp folder.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadModel } from '../../../../src/engine/model/model';
import type { LoadQuantization } from '../../../../src/engine/model/quant/presets';
import { quantizeCheckpoint } from '../../../../src/engine/model/quant/write-checkpoint';
import { loadConfig } from '../../../../src/engine/model/config';
import { DummyWeights } from '../../../../src/engine/model/dummy-weights';
import { SafetensorsFile, writeSafetensors, type TensorToWrite } from '../../../../src/engine/model/safetensors';
import { writeKimiCheckpoint, type KimiShape } from '../../../../tools/kimi-checkpoint';
import { decodeIndependently, GOLDEN } from './ct-writer';
import { referenceLogits, relativeError } from './reference-logits';

const IDS = Int32Array.from({ length: 24 }, (_, i) => (i * 53 + 7) % 500);
const quiet = () => {};

const logits = (dir: string, quantization: LoadQuantization = 'none') => referenceLogits(dir, IDS, quantization);

const outDir = () => join(mkdtempSync(join(tmpdir(), 'klc-quantize-')), 'out');

test('w4a16-g128 on the golden checkpoint: llm-compressor config, independent decoding, logits', async () => {
  const out = outDir();
  const summary = await quantizeCheckpoint(GOLDEN, out, 'w4a16-g128', quiet);
  // 3 KDA layers × 9 projections but b_proj, MLA 4 but kv_b_proj, dense MLP 3, 3 MoE layers × (8 experts × 3 + shared 3).
  assert.equal(summary.modules, 3 * 8 + 3 + 3 + 3 * 27);
  const config = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8'));
  assert.deepEqual(config.quantization_config, {
    config_groups: {
      group_0: {
        format: 'pack-quantized',
        input_activations: null,
        output_activations: null,
        targets: ['Linear'],
        weights: { actorder: null, block_structure: null, dynamic: false, group_size: 128, num_bits: 4, observer: 'minmax', observer_kwargs: {}, strategy: 'group', symmetric: true, type: 'int' },
      },
    },
    format: 'pack-quantized',
    global_compression_ratio: null,
    ignore: [
      'lm_head',
      'model.layers.1.block_sparse_moe.gate',
      'model.layers.2.block_sparse_moe.gate',
      'model.layers.3.block_sparse_moe.gate',
      'model.layers.0.self_attn.b_proj',
      'model.layers.1.self_attn.b_proj',
      'model.layers.2.self_attn.b_proj',
      'model.layers.3.self_attn.kv_b_proj',
    ],
    kv_cache_scheme: null,
    quant_method: 'compressed-tensors',
    quantization_status: 'compressed',
    sparsity_config: {},
    transform_config: {},
    version: '0.12.2',
  });
  assert.equal(config.vocab_size, 1024);

  const f = await SafetensorsFile.open(join(out, 'model.safetensors'));
  try {
    const q = f.info('model.layers.1.block_sparse_moe.experts.0.w2.weight_packed');
    assert.deepEqual([q.dtype, q.shape], ['I32', [128, 8]]);
    const s = f.info('model.layers.1.block_sparse_moe.experts.0.w2.weight_scale');
    assert.deepEqual([s.dtype, s.shape], ['F32', [128, 1]]);
    assert.deepEqual(Array.from(await f.readInts('model.layers.0.mlp.down_proj.weight_shape')), [128, 256]);
    assert.equal(f.info('model.layers.0.mlp.down_proj.weight_shape').dtype, 'I64');
    assert.ok(f.names.includes('lm_head.weight') && f.names.includes('model.layers.1.block_sparse_moe.gate.weight') && f.names.includes('model.layers.0.self_attn.b_proj.weight') && f.names.includes('model.layers.3.self_attn.kv_b_proj.weight'));
  } finally {
    await f.close();
  }

  // Every quantized weight is within half a step of the original: |w − deq| ≤ s / 2.
  const plain = await decodeIndependently(out, ['model.safetensors']);
  const [orig, deq, scales] = await Promise.all([
    SafetensorsFile.open(join(GOLDEN, 'model.safetensors')),
    SafetensorsFile.open(join(plain, 'model.safetensors')),
    SafetensorsFile.open(join(out, 'model.safetensors')),
  ]);
  try {
    const m = 'model.layers.0.mlp.down_proj';
    const w = await orig.readF32(`${m}.weight`);
    const d = await deq.readF32(`${m}.weight`);
    const s = await scales.readF32(`${m}.weight_scale`);
    for (let i = 0; i < w.length; i++) {
      const step = s[Math.floor(i / 256) * 2 + Math.floor((i % 256) / 128)];
      assert.ok(Math.abs(w[i] - d[i]) <= step / 2 + 1e-7, `element ${i}: ${w[i]} → ${d[i]} with scale ${step}`);
    }
  } finally {
    await Promise.all([orig.close(), deq.close(), scales.close()]);
  }

  const written = await logits(out);
  assert.ok(relativeError(written, await logits(plain)) <= 1e-4);
  assert.deepEqual(await logits(GOLDEN, 'int4'), written, 'quantization at load computes the written checkpoint exactly');
  assert.ok(relativeError(written, await logits(GOLDEN)) > 1e-4);
});

test('w8a16 and fp8-dynamic: loaded checkpoints match their independent decoding and quantization at load', async () => {
  for (const [scheme, atLoad] of [
    ['w8a16', 'int8'],
    ['fp8-dynamic', 'fp8'],
  ] as const) {
    const out = outDir();
    await quantizeCheckpoint(GOLDEN, out, scheme, quiet);
    const written = await logits(out);
    assert.ok(relativeError(written, await logits(await decodeIndependently(out, ['model.safetensors']))) <= 1e-4, scheme);
    assert.deepEqual(await logits(GOLDEN, atLoad), written, scheme);
  }
});

const SMALL: KimiShape = {
  hidden: 64,
  kdaHeads: 2,
  kdaDim: 32,
  mlaHeads: 2,
  nope: 16,
  rope: 8,
  vDim: 16,
  kvLora: 32,
  experts: 4,
  topK: 2,
  moeInter: 32,
  denseInter: 96,
  layers: ['kda', 'mla'],
  maxLength: 4096,
};
const init = { seed: 7, embed: (n: () => number) => n, linear: (n: () => number, cols: number) => () => n() / Math.sqrt(cols) };

test('a sharded bf16 checkpoint is quantized shard by shard into a sharded one with an index', async () => {
  const src = join(mkdtempSync(join(tmpdir(), 'klc-sharded-')), 'm');
  await writeKimiCheckpoint(src, SMALL, init, { sharded: true, generator: 'test' });
  const out = outDir();
  await quantizeCheckpoint(src, out, 'fp8-dynamic', quiet);
  const shards = readdirSync(src).filter((n) => n.endsWith('.safetensors')).sort();
  assert.deepEqual(readdirSync(out).filter((n) => n.endsWith('.safetensors')).sort(), shards);
  assert.ok(existsSync(join(out, 'tiktoken.model')) && existsSync(join(out, 'tokenizer_config.json')));
  const index = JSON.parse(readFileSync(join(out, 'model.safetensors.index.json'), 'utf8'));
  assert.equal(index.weight_map['model.layers.1.block_sparse_moe.experts.3.w1.weight_scale'], shards[1]);
  const f = await SafetensorsFile.open(join(out, shards[1]));
  try {
    assert.equal(f.info('model.layers.1.block_sparse_moe.experts.3.w1.weight').dtype, 'F8_E4M3');
    const s = f.info('model.layers.1.block_sparse_moe.experts.3.w1.weight_scale');
    assert.deepEqual([s.dtype, s.shape], ['BF16', [32, 1]]);
  } finally {
    await f.close();
  }
  const written = await logits(out);
  assert.ok(relativeError(written, await logits(await decodeIndependently(out, shards))) <= 1e-4);
  assert.deepEqual(await logits(src, 'fp8'), written);
});

test('a failure leaves neither OUT nor a temp folder; an existing OUT or a quantized input is refused', async () => {
  const src = join(mkdtempSync(join(tmpdir(), 'klc-odd-')), 'm');
  // 192 columns: more than one group of 128 but not a multiple of it.
  await writeKimiCheckpoint(src, { ...SMALL, hidden: 192 }, init, { sharded: true, generator: 'test' });
  const out = outDir();
  await assert.rejects(quantizeCheckpoint(src, out, 'w4a16-g128', quiet), /has 192 columns, not a multiple of the group size 128 of w4a16-g128/);
  assert.deepEqual(readdirSync(join(out, '..')), []);

  const done = outDir();
  await quantizeCheckpoint(GOLDEN, done, 'w8a16', quiet);
  await assert.rejects(quantizeCheckpoint(GOLDEN, done, 'w8a16', quiet), /already exists; name a new folder/);
  await assert.rejects(quantizeCheckpoint(done, outDir(), 'w8a16', quiet), /is already quantized/);
  await assert.rejects(loadModel(done, { backend: 'reference', quantization: 'int4' }), /already quantized .* Drop --quantization/);
});

test('dummy weights quantized at load equal the same weights written out in bf16, quantized by klc quantize', async () => {
  const configFile = join(GOLDEN, 'config.json');
  const dummy = new DummyWeights(await loadConfig(GOLDEN), 3, configFile);
  const dir = join(mkdtempSync(join(tmpdir(), 'klc-dummy-')), 'm');
  mkdirSync(dir);
  copyFileSync(configFile, join(dir, 'config.json'));
  const tensors: TensorToWrite[] = [];
  for (const name of dummy.names) tensors.push({ name, dtype: 'BF16', shape: dummy.info(name).shape, data: await dummy.tensor(name) });
  await writeSafetensors(join(dir, 'model.safetensors'), tensors);
  const out = outDir();
  await quantizeCheckpoint(dir, out, 'w4a16-g128', quiet);
  const model = await loadModel('', { backend: 'reference', dummy: { configFile, seed: 3 }, quantization: 'int4' });
  try {
    assert.deepEqual(await model.prefill(model.newState(), IDS, { logits: 'all' }), await logits(out));
  } finally {
    await model.dispose();
  }
});
