/**
 * GPTQ (AutoGPTQ / GPTQModel) and AWQ (AutoAWQ GEMM) checkpoints, written by the independent
 * writer in gptq-writer.ts from the golden tiny model, load on the reference backend and give the
 * logits of their dequantized weights (the same model stored as plain fp32); hand-packed words
 * decode as the formats define; layouts and schemes the engine cannot read are refused by name.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadModel } from '../../../../src/engine/model/model';
import { referenceLogits, relativeError } from './reference-logits';
import { AwqFormat } from '../../../../src/engine/model/quant/awq';
import { GptqFormat } from '../../../../src/engine/model/quant/gptq';
import { unpackRows } from '../../../../src/engine/model/quant/input-major';
import { checkModelFolder } from '../../../../src/engine/model/folder-check';
import { SafetensorsFile, writeSafetensors, type TensorToWrite } from '../../../../src/engine/model/safetensors';
import { GOLDEN } from './ct-writer';
import { awqConfig, awqWord, f16, gptqConfig, writeInputMajorGolden, type InputMajorSpec } from './gptq-writer';

const IDS = Int32Array.from({ length: 40 }, (_, i) => (i * 37 + 11) % 1000);

const logits = (dir: string) => referenceLogits(dir, IDS);

let goldenLogits: Float32Array | null = null;

async function checkScheme(specFor: (m: string) => InputMajorSpec | null, quantization: Record<string, unknown>, sidecar?: string): Promise<void> {
  const { quantized, dequantized } = await writeInputMajorGolden(specFor, quantization, sidecar);
  try {
    const got = await logits(quantized);
    const want = await logits(dequantized);
    assert.ok(relativeError(got, want) <= 1e-4, `quantized vs dequantized: relative error ${relativeError(got, want)}`);
    goldenLogits ??= await logits(GOLDEN);
    assert.ok(relativeError(got, goldenLogits) > 1e-4, 'the quantized model should differ from the unquantized one');
  } finally {
    rmSync(quantized, { recursive: true, force: true });
    rmSync(dequantized, { recursive: true, force: true });
  }
}

const layers = (m: string) => m !== 'lm_head';
const gptq = (bits: 2 | 3 | 4 | 8, group: number, symmetric: boolean, v2: boolean, actorder = false) => (m: string): InputMajorSpec | null => (layers(m) ? { kind: 'gptq', bits, group, symmetric, v2, actorder } : null);

test('GPTQ words decode as AutoGPTQ and GPTQModel pack them', () => {
  // qweight packs down the input dimension: rows 0..7 of one column in one word, row 0 lowest.
  assert.deepEqual(Array.from(unpackRows(Int32Array.of(0x76543210 | 0), 8, 1, 4)), [0, 1, 2, 3, 4, 5, 6, 7]);
  // Two columns: word (j, n) is at j · columns + n.
  assert.deepEqual(Array.from(unpackRows(Int32Array.of(0x000000f1, 0x00000002), 4, 2, 8)), [0xf1, 0x02, 0, 0, 0, 0, 0, 0]);
  // 3 bits: field 10 straddles words 0 and 1 (its low two bits are bits 30-31 of word 0).
  const fields = Array.from({ length: 32 }, (_, i) => (i * 5 + 3) & 7);
  let stream = 0n;
  fields.forEach((v, i) => (stream |= BigInt(v) << BigInt(3 * i)));
  const words = Int32Array.from([0, 1, 2], (j) => Number(BigInt.asIntN(32, stream >> BigInt(32 * j))));
  assert.equal(Array.from(unpackRows(words, 32, 1, 3))[10], fields[10]);
  assert.deepEqual(Array.from(unpackRows(words, 32, 1, 3)), fields);

  // v1 zero points [0, 5, 15, 8, 0, 0, 3, 1] (the word 0x13008f50), stored by GPTQModel as the word
  // less 0x11111111 = 0x01ef7e3f, whose borrows a per-field "+1" would get wrong.
  const word = 0x01ef7e3f;
  assert.equal(word, (0x13008f50 - 0x11111111) | 0);
  const v1 = GptqFormat.parse(gptqConfig(4, 128, false, false, 'gptq'), 'config.json');
  assert.deepEqual(Array.from(v1.zeros(Int32Array.of(word), 1, 8, 4)), [0, 5, 15, 8, 0, 0, 3, 1]);
  const v2 = GptqFormat.parse(gptqConfig(4, 128, false, false, 'gptq_v2'), 'config.json');
  assert.deepEqual(Array.from(v2.zeros(Int32Array.of(0x13008f50), 1, 8, 4)), [0, 5, 15, 8, 0, 0, 3, 1]);
  // 3-bit v1 zero points are stored z − 1 per field, wrapped: 0 is stored as 7.
  const v1of3 = GptqFormat.parse(gptqConfig(3, 128, false, false, 'gptq'), 'config.json');
  assert.deepEqual(Array.from(v1of3.zeros(Int32Array.of(0b110_000_111), 1, 3, 3)), [0, 1, 7]);
});

test('AWQ words decode in AutoAWQ\'s nibble order', () => {
  // Columns 0..7 hold 0..7: nibbles (lowest first) hold columns 0 2 4 6 1 3 5 7.
  assert.equal(awqWord([0, 1, 2, 3, 4, 5, 6, 7]) >>> 0, 0x75316420);
  const awq = AwqFormat.parse(awqConfig(128, true), 'config.json');
  assert.deepEqual(Array.from(awq.codes(Int32Array.of(0x75316420), 1, 8)), [0, 1, 2, 3, 4, 5, 6, 7]);
  assert.deepEqual(Array.from(awq.zeros(Int32Array.of(0x75316420, 0x0000000f), 1, 9)), [0, 1, 2, 3, 4, 5, 6, 7, 15]);
});

test('the fp16 scales the writer stores are fp16 values', () => {
  assert.deepEqual(f16(1), { bits: 0x3c00, value: 1 });
  assert.deepEqual(f16(-0.0999755859375), { bits: 0xae66, value: -0.0999755859375 });
  assert.equal(f16(0.1).value, 0.0999755859375);
});

test('GPTQ v1 INT4 group 32 symmetric with fp16 scales (the common export), lm_head left in full precision', async () => {
  await checkScheme(gptq(4, 32, true, false), gptqConfig(4, 32, true, false, 'gptq'));
});

test('GPTQ v1 INT4 group 64 asymmetric with activation order: zero points of 0 borrow across fields, g_idx scrambles groups', async () => {
  await checkScheme(gptq(4, 64, false, false, true), gptqConfig(4, 64, false, true, 'gptq'));
});

test('GPTQ v2 INT8 per channel (group_size -1), asymmetric', async () => {
  await checkScheme(gptq(8, -1, false, true), gptqConfig(8, -1, false, false, 'gptq_v2'));
});

test('GPTQ v1 3-bit group 32 asymmetric (fields across words) and 2-bit symmetric', async () => {
  await checkScheme(gptq(3, 32, false, false), gptqConfig(3, 32, false, false, 'gptq'));
  await checkScheme(gptq(2, 32, true, false), gptqConfig(2, 32, true, false, 'gptq'));
});

test('GPTQModel dynamic: experts INT8 group 64 by a "+:" pattern, o_proj unquantized by "-:", lm_head quantized', async () => {
  const spec = (m: string): InputMajorSpec | null => {
    if (/self_attn\.o_proj$/.test(m)) return null;
    if (m.includes('.experts.')) return { kind: 'gptq', bits: 8, group: 64, symmetric: true, v2: false };
    return { kind: 'gptq', bits: 4, group: 32, symmetric: true, v2: false };
  };
  await checkScheme(spec, gptqConfig(4, 32, true, false, 'gptq', { lm_head: true, dynamic: { '-:.*self_attn\\.o_proj': {}, '+:.*\\.experts\\.\\d+\\.': { bits: 8, group_size: 64 } } }));
});

test('the dense MLP\'s GPTQ tensors under the transformers save_pretrained spelling (block_sparse_moe.*_proj) load', async () => {
  const { quantized, dequantized } = await writeInputMajorGolden(gptq(4, 32, true, false), gptqConfig(4, 32, true, false, 'gptq'));
  try {
    await rewriteTensors(quantized, (n) => n.replace(/^(model\.layers\.0\.)mlp\./, '$1block_sparse_moe.'));
    assert.ok(relativeError(await logits(quantized), await logits(dequantized)) <= 1e-4);
  } finally {
    rmSync(quantized, { recursive: true, force: true });
    rmSync(dequantized, { recursive: true, force: true });
  }
});

test('an AutoGPTQ export whose settings are only in quantize_config.json, without g_idx', async () => {
  const spec = (m: string): InputMajorSpec | null => (layers(m) ? { kind: 'gptq', bits: 4, group: 128, symmetric: true, v2: false, noGIdx: true } : null);
  await checkScheme(spec, { bits: 4, group_size: 128, damp_percent: 0.01, desc_act: false, static_groups: false, sym: true, true_sequential: true, model_name_or_path: null, model_file_base_name: null }, 'quantize_config.json');
});

test('AWQ GEMM INT4 group 32 with zero points, and GPTQModel\'s symmetric AWQ (zero_point false, zero points 8)', async () => {
  await checkScheme((m) => (layers(m) ? { kind: 'awq', group: 32, zeroPoint: true } : null), awqConfig(32, true));
  await checkScheme((m) => (layers(m) ? { kind: 'awq', group: 64, zeroPoint: false } : null), awqConfig(64, false));
});

/** Rewrites the checkpoint in `dir` with each tensor renamed by `rename` (null drops it). */
async function rewriteTensors(dir: string, rename: (name: string) => string | null): Promise<void> {
  const file = join(dir, 'model.safetensors');
  const src = await SafetensorsFile.open(file);
  const kept: TensorToWrite[] = [];
  try {
    for (const n of src.names) {
      const to = rename(n);
      if (to !== null) kept.push({ name: to, dtype: src.info(n).dtype, shape: src.info(n).shape, data: new Uint8Array(await src.readRaw(n)) });
    }
  } finally {
    await src.close();
  }
  await writeSafetensors(file, kept);
}

async function loadFails(dir: string, message: RegExp): Promise<void> {
  await assert.rejects(loadModel(dir, { backend: 'reference' }), (e: Error) => {
    assert.equal(e.name, 'UserError', e.message);
    assert.match(e.message, message);
    return true;
  });
}

test('GPTQ and AWQ layouts the engine cannot read are refused, naming the field and what to use', async () => {
  const base = gptqConfig(4, 32, true, false, 'gptq');
  const { quantized, dequantized } = await writeInputMajorGolden(gptq(4, 32, true, false), base);
  const config = JSON.parse(readFileSync(join(quantized, 'config.json'), 'utf8'));
  const withQuant = (q: Record<string, unknown>) => writeFileSync(join(quantized, 'config.json'), JSON.stringify({ ...config, quantization_config: q }));
  try {
    withQuant({ ...base, format: 'gptq_p', checkpoint_format: 'gptq_p' });
    await loadFails(quantized, /config\.json: quantization_config\.format is "gptq_p"; GPTQ checkpoints are read in the "gptq" and "gptq_v2" layouts/);
    withQuant({ ...base, format: undefined, checkpoint_format: 'marlin' });
    await loadFails(quantized, /quantization_config\.checkpoint_format is "marlin"/);
    withQuant({ ...base, is_marlin_format: true });
    await loadFails(quantized, /is_marlin_format is true: the weights are in Marlin's repacked layout/);
    withQuant({ ...base, bits: 6 });
    await loadFails(quantized, /quantization_config\.bits is 6; GPTQ checkpoints of 2, 3, 4 and 8 bits are read/);
    withQuant({ ...base, pack_dtype: 'int16' });
    await loadFails(quantized, /pack_dtype is "int16"; only int32 words are read/);
    withQuant({ ...base, dynamic: { '+:(?P<x>a)': { bits: 8 } } });
    await loadFails(quantized, /dynamic\["\+:\(\?P<x>a\)"\] is not a pattern this engine can read/);
    // The config's bit width disagrees with the stored words: the shapes are named.
    withQuant({ ...base, bits: 8 });
    await loadFails(quantized, /model\.safetensors: "model\.layers\.0\.mlp\.down_proj\.qweight" is I32 \[32,128\], expected I32 \[64,128\] for a \[128, 256\] weight \(INT8 symmetric, group 32, gptq, per .*config\.json\)/);
    // A module the config leaves unquantized but stored quantized.
    withQuant({ ...base, dynamic: { '-:.*mlp\\.down_proj': {} } });
    await loadFails(quantized, /"model\.layers\.0\.mlp\.down_proj\.qweight" is stored, but quantization_config\.dynamic\["-:\.\*mlp\\\.down_proj"\] leaves it unquantized/);
    withQuant(awqConfig(32, true, { version: 'gemv' }));
    await loadFails(quantized, /quantization_config\.version is "gemv"; AWQ checkpoints are read in AutoAWQ's GEMM layout only/);
    withQuant(awqConfig(32, true, { bits: 8 }));
    await loadFails(quantized, /quantization_config\.bits is 8; AWQ's GEMM layout holds 4-bit codes only/);
    withQuant({ quant_method: 'bitsandbytes', load_in_4bit: true });
    await loadFails(quantized, /quant_method is "bitsandbytes"; checkpoints quantized with compressed-tensors \(llm-compressor\), GPTQ \(AutoGPTQ, GPTQModel\) and AWQ/);
    // The folder check says the same before anything loads.
    assert.match((await checkModelFolder(quantized)).problems.join('\n'), /quant_method is "bitsandbytes"/);
    withQuant(base);
    assert.deepEqual((await checkModelFolder(quantized)).format, { label: 'INT4', quantized: true });
    // An asymmetric module without its zero points.
    const asym = gptqConfig(4, 32, false, false, 'gptq');
    const { quantized: noZeros, dequantized: unused } = await writeInputMajorGolden(gptq(4, 32, false, false), asym);
    try {
      await rewriteTensors(noZeros, (n) => (n === 'model.layers.0.mlp.down_proj.qzeros' ? null : n));
      await loadFails(noZeros, /"model\.layers\.0\.mlp\.down_proj\.qzeros" is missing: the module is quantized \(model\.layers\.0\.mlp\.down_proj\.qweight is stored\), which needs .*qzeros/);
    } finally {
      rmSync(noZeros, { recursive: true, force: true });
      rmSync(unused, { recursive: true, force: true });
    }
  } finally {
    rmSync(quantized, { recursive: true, force: true });
    rmSync(dequantized, { recursive: true, force: true });
  }
});
