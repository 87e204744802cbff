/**
 * compressed-tensors checkpoints, written by the independent writer in ct-writer.ts from the
 * golden tiny model, load on the reference backend and give the logits of their dequantized
 * weights (the same model stored as plain fp32). Every scheme the loader claims is covered, and
 * what it refuses is refused by name.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadModel } from '../../../../src/engine/model/model';
import { referenceLogits, relativeError } from './reference-logits';
import { unpack } from '../../../../src/engine/model/quant/pack';
import { configGroup, GOLDEN, packWord, quantizationConfig, writeQuantizedGolden, type Spec } from './ct-writer';

const IDS = Int32Array.from({ length: 40 }, (_, i) => (i * 37 + 11) % 1000);

const logits = (dir: string) => referenceLogits(dir, IDS);

let goldenLogits: Float32Array | null = null;

/** Loads both checkpoints; the quantized one must match its dequantization and differ from the original. */
async function checkScheme(specFor: (m: string) => Spec | null, qconfig: Record<string, unknown>): Promise<void> {
  const { quantized, dequantized } = await writeQuantizedGolden(specFor, qconfig);
  const got = await logits(quantized);
  const want = await logits(dequantized);
  assert.ok(relativeError(got, want) <= 1e-4, `quantized vs dequantized: relative error ${relativeError(got, want)}`);
  goldenLogits ??= await logits(GOLDEN);
  assert.ok(relativeError(got, goldenLogits) > 1e-4, 'the quantized model should differ from the unquantized one');
}

const notHead = (spec: Spec) => (m: string) => (m === 'lm_head' ? null : spec);
const int = (bits: number, symmetric: boolean, strategy: string, groupSize: number | null) => ({ num_bits: bits, type: 'int', symmetric, strategy, group_size: groupSize });

test('the loader unpacks hand-packed int32 words in compressed-tensors order', () => {
  // 4 bit: codes −8 −7 0 7 1 −1 3 −3 are 0 1 8 f 9 7 b 5 unsigned; the first is the lowest nibble.
  assert.equal(packWord([-8, -7, 0, 7, 1, -1, 3, -3], 4), 0x5b79f810);
  assert.deepEqual(Array.from(unpack(Int32Array.of(0x5b79f810), 1, 8, 4, 1)), [-8, -7, 0, 7, 1, -1, 3, -3]);
  // 8 bit: 5 −3 127 −128 are 0x85 0x7d 0xff 0x00.
  assert.equal(packWord([5, -3, 127, -128], 8), 0x00ff7d85);
  assert.deepEqual(Array.from(unpack(Int32Array.of(0x00ff7d85), 1, 4, 8, 1)), [5, -3, 127, -128]);
  // A short last run: 3 codes of 4 bits in one word, the rest padding.
  assert.deepEqual(Array.from(unpack(Int32Array.of(packWord([1, 2, 3], 4)), 1, 3, 4, 1)), [1, 2, 3]);
  // Down the columns (zero points): rows 0..7 of a column share a word.
  const column = [3, -2, 0, 7, -8, 1, 1, 5, -4];
  const words = Int32Array.of(packWord(column.slice(0, 8), 4), packWord(column.slice(8), 4));
  assert.deepEqual(Array.from(unpack(words, 9, 1, 4, 0)), column);
});

test('W4A16 group 32 symmetric (the AWQ 4-bit layout), lm_head ignored', async () => {
  await checkScheme(notHead({ kind: 'int', bits: 4, symmetric: true, group: 32 }), quantizationConfig({ group_0: configGroup(['Linear'], int(4, true, 'group', 32), 'pack-quantized') }, 'pack-quantized', ['lm_head']));
});

test('W4A16 group 64 asymmetric: zero points packed down the rows', async () => {
  await checkScheme(notHead({ kind: 'int', bits: 4, symmetric: false, group: 64 }), quantizationConfig({ group_0: configGroup(['Linear'], int(4, false, 'group', 64), 'pack-quantized') }, 'pack-quantized', ['lm_head']));
});

test('W8A16 per channel, asymmetric, lm_head quantized too', async () => {
  await checkScheme(() => ({ kind: 'int', bits: 8, symmetric: false, group: -1 }), quantizationConfig({ group_0: configGroup(['Linear'], int(8, false, 'channel', null), 'pack-quantized') }, 'pack-quantized', []));
});

test('INT4 group 16 with activation order (weight_g_idx)', async () => {
  await checkScheme(
    notHead({ kind: 'int', bits: 4, symmetric: true, group: 16, actorder: true }),
    quantizationConfig({ group_0: configGroup(['Linear'], { ...int(4, true, 'group', 16), actorder: 'group' }, 'pack-quantized') }, 'pack-quantized', ['lm_head']),
  );
});

test('mixed precision: experts INT4 group 32, everything else FP8 per channel with dynamic activations, b_proj ignored by pattern', async () => {
  const spec = (m: string): Spec | null => {
    if (m === 'lm_head' || m.endsWith('self_attn.b_proj')) return null;
    return m.includes('.experts.') ? { kind: 'int', bits: 4, symmetric: true, group: 32 } : { kind: 'fp8', perTensor: false };
  };
  const fp8 = { num_bits: 8, type: 'float', symmetric: true, strategy: 'channel', group_size: null };
  const dynamic = { num_bits: 8, type: 'float', symmetric: true, strategy: 'token', dynamic: true, group_size: null, observer: null };
  await checkScheme(
    spec,
    quantizationConfig(
      {
        group_0: configGroup(['re:.*block_sparse_moe\\.experts\\.\\d+\\.w[123]$'], int(4, true, 'group', 32), 'pack-quantized'),
        group_1: configGroup(['Linear'], fp8, 'float-quantized', dynamic),
      },
      'mixed-precision',
      ['lm_head', 're:.*self_attn\\.b_proj$'],
    ),
  );
});

test('FP8 per tensor (float-quantized)', async () => {
  await checkScheme(
    notHead({ kind: 'fp8', perTensor: true }),
    quantizationConfig({ group_0: configGroup(['Linear'], { num_bits: 8, type: 'float', symmetric: true, strategy: 'tensor', group_size: null }, 'float-quantized') }, 'float-quantized', ['lm_head']),
  );
});

test('FP8 in 32×32 blocks (the FP8_BLOCK layout)', async () => {
  await checkScheme(
    notHead({ kind: 'fp8', perTensor: false, block: [32, 32] }),
    quantizationConfig(
      { group_0: configGroup(['Linear'], { num_bits: 8, type: 'float', symmetric: true, strategy: 'block', block_structure: [32, 32], group_size: null }, 'float-quantized') },
      'float-quantized',
      ['lm_head'],
    ),
  );
});

test('W8A8 INT8 stored unpacked (int-quantized), asymmetric per channel with I8 zero points', async () => {
  const dynamicTokens = { num_bits: 8, type: 'int', symmetric: true, strategy: 'token', dynamic: true, group_size: null, observer: null };
  await checkScheme(
    notHead({ kind: 'int', bits: 8, symmetric: false, group: -1, unpacked: true }),
    quantizationConfig({ group_0: configGroup(['Linear'], int(8, false, 'channel', null), 'int-quantized', dynamicTokens) }, 'int-quantized', ['lm_head']),
  );
});

async function loadFails(dir: string, message: RegExp): Promise<void> {
  await assert.rejects(loadModel(dir, { backend: 'reference' }), (e: Error) => {
    assert.equal(e.name, 'UserError');
    assert.match(e.message, message);
    return true;
  });
}

test('schemes the engine cannot reproduce are refused, naming the scheme and config.json', async () => {
  const w4 = quantizationConfig({ group_0: configGroup(['Linear'], int(4, true, 'group', 32), 'pack-quantized') }, 'pack-quantized', ['lm_head']);
  const { quantized } = await writeQuantizedGolden(notHead({ kind: 'int', bits: 4, symmetric: true, group: 32 }), w4);
  const config = JSON.parse(readFileSync(join(quantized, 'config.json'), 'utf8'));
  const withQuant = (q: Record<string, unknown>) => writeFileSync(join(quantized, 'config.json'), JSON.stringify({ ...config, quantization_config: q }));

  withQuant({ ...w4, format: 'nvfp4-pack-quantized', config_groups: { group_0: { ...configGroup(['Linear'], int(4, true, 'group', 32), 'nvfp4-pack-quantized') } } });
  await loadFails(quantized, /config\.json: quantization_config\.config_groups\.group_0 uses the format "nvfp4-pack-quantized", which is not supported/);
  withQuant({ ...w4, config_groups: { group_0: configGroup(['Linear'], { num_bits: 4, type: 'float', strategy: 'tensor_group', group_size: 16 }, 'pack-quantized') } });
  await loadFails(quantized, /4-bit float weights \(FP4\/NVFP4\/MXFP4\) are not supported/);
  withQuant({ quant_method: 'hqq', nbits: 4 });
  await loadFails(quantized, /quant_method is "hqq"; checkpoints quantized with compressed-tensors/);
  withQuant({ ...w4, config_groups: { group_0: configGroup(['Linear'], int(8, true, 'channel', null), 'int-quantized', { num_bits: 8, type: 'int', strategy: 'tensor', dynamic: false }) } });
  await loadFails(quantized, /group_0\.input_activations are static/);
  // The right scheme but the wrong bit width for the stored tensors: the packed shape is named.
  withQuant(quantizationConfig({ group_0: configGroup(['Linear'], int(8, true, 'group', 32), 'pack-quantized') }, 'pack-quantized', ['lm_head']));
  await loadFails(quantized, /model\.safetensors: "model\.layers\.0\.mlp\.down_proj\.weight_packed" is I32 \[128,32\], expected I32 \[128,64\] for a \[128, 256\] weight \(config_groups\.group_0: INT8 symmetric, group 32, pack-quantized\)/);
  // A module the config says is unquantized but stored packed is not part of the model.
  withQuant(quantizationConfig({ group_0: configGroup(['Linear'], int(4, true, 'group', 32), 'pack-quantized') }, 'pack-quantized', ['lm_head', 're:.*o_proj$']));
  await loadFails(quantized, /tensor "model\.layers\.\d\.self_attn\.o_proj\.weight_packed" is not part of this model/);
});

test('a module stored unquantized although a config group targets it is reported', async () => {
  const w4 = quantizationConfig({ group_0: configGroup(['Linear'], int(4, true, 'group', 32), 'pack-quantized') }, 'pack-quantized', []);
  const { quantized } = await writeQuantizedGolden(notHead({ kind: 'int', bits: 4, symmetric: true, group: 32 }), w4);
  await loadFails(quantized, /"lm_head\.weight" does not belong to a pack-quantized module; it is stored unquantized although a config group targets it/);
});
