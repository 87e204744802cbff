/**
 * The GPU memory plan of the published Kimi-Linear-48B-A3B-Instruct config against numbers worked
 * out by hand from its shapes (spec §1: d 2304, vocab 163840, 27 layers = 20 KDA + 7 MLA, layer 0
 * dense 9216, 26 MoE layers of 256 experts of 1024 + 1 shared, KDA 32 heads × 128, conv 4, MLA
 * 32 heads, nope 128, rope 64, v 128, kv_lora_rank 512). The arithmetic is in the comments; the
 * expectations are literals, never the implementation's helpers.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { loadConfig, loadConfigFile, type KimiConfig } from '../../../src/engine/model/config';
import { Checkpoint } from '../../../src/engine/model/checkpoint';
import { forkBytes, kdaStateBytes, largestContext, mlaCacheBytes, planMemory, type PlanRequest } from '../../../src/engine/plan/memory-plan';
import { weightBytes } from '../../../src/engine/plan/weights';
import { mlaScratchBytes, moeScratchBytes, prefillWorkspaceBytes } from '../../../src/engine/plan/workspace';

const ROOT = join(__dirname, '..', '..', '..');
const PUBLISHED = join(ROOT, 'assets', 'configs', 'kimi-linear-48b-a3b-instruct.json');
const TINY = join(ROOT, 'assets', 'tiny-model');

const published = (): Promise<KimiConfig> => loadConfigFile(PUBLISHED);
const GB = 1e9;
const total = (w: { resident: number; experts: number[] }) => w.resident + w.experts.reduce((a, b) => a + b, 0);

test('the shipped config parses with a 1,048,576-token context (model_max_length)', async () => {
  const c = await published();
  assert.equal(c.maxPositionEmbeddings, 1_048_576);
  assert.equal(c.layers.filter((l) => l.attention === 'mla').length, 7);
  assert.equal(c.layers.filter((l) => l.ffn === 'moe').length, 26);
});

test('bf16 weights of the 48B model: the spec\'s 49,122,681,728 parameters at 2 bytes, small tensors at 4', async () => {
  // fp32 tensors: final norm 2304 + 27 × 2 norms × 2304 = 124,416
  //   + 20 KDA × (conv 3·4096·4 = 49,152 + A_log 32 + dt_bias 4096 + o_norm 128) = 20 × 53,408 = 1,068,160
  //   + 7 MLA × kv_a_layernorm 512 = 3,584 + 26 routers × (256·2304 + bias 256) = 15,342,080
  //   = 16,540,544 values.
  // 2 × (49,122,681,728 − 16,540,544) + 4 × 16,540,544 = 98,212,282,368 + 66,162,176 = 98,278,444,544.
  const w = weightBytes(await published(), 'none');
  assert.equal(total(w), 98_278_444_544);
  // One MoE layer's routed experts: 256 × 3 × 1024 × 2304 × 2 B = 3,623,878,656.
  assert.equal(w.experts[1], 3_623_878_656);
  assert.equal(w.experts[0], 0);
});

test('fp8 and int8: 1 byte per weight and an fp32 scale per output row; embed, lm_head, router and norms kept', async () => {
  // Quantized weights: 49,106,141,184 bf16-stored values − embed 377,487,360 − lm_head 377,487,360 = 48,351,166,464.
  // Output rows: KDA 3·4096 + 128 + 4096 + 32 + 128 + 4096 + 2304 = 23,072 (× 20 = 461,440);
  //   MLA 6144 + 576 + 8192 + 2304 = 17,216 (× 7 = 120,512); dense 9216 + 9216 + 2304 = 20,736;
  //   MoE (256 + 1) × (1024 + 1024 + 2304) = 1,118,464 (× 26 = 29,080,064) → 29,682,752 rows × 4 B = 118,731,008.
  // 48,351,166,464 + 118,731,008 + embed/lm_head bf16 1,509,949,440 + fp32 66,162,176 = 50,046,009,088.
  const c = await published();
  assert.equal(total(weightBytes(c, 'fp8')), 50_046_009_088);
  assert.equal(total(weightBytes(c, 'int8')), 50_046_009_088);
});

test('int4: half a byte per weight and a bf16 scale per 128 inputs', async () => {
  // Every quantized matrix has a multiple of 128 inputs, so scales = weights / 128 × 2 B = weights / 64.
  // 48,351,166,464 / 2 = 24,175,583,232; / 64 = 755,486,976; + 1,509,949,440 + 66,162,176 = 26,507,181,824.
  const w = weightBytes(await published(), 'int4');
  assert.equal(total(w), 26_507_181_824);
  // One layer's experts: 1,811,939,328 weights / 2 = 905,969,664 + / 64 = 28,311,552 → 934,281,216.
  assert.equal(w.experts[26], 934_281_216);
});

test('the bundled tiny checkpoint: none-scheme weight bytes equal its tensors at the uploaded dtypes', async () => {
  // An independent count from the checkpoint's own tensor list: fp32 tensors are the ones the
  // uploader keeps fp32 (norms, conv, A_log, dt_bias, router weight and bias), everything else bf16.
  const f32 = /(layernorm|norm)\.weight$|conv1d\.weight$|A_log$|dt_bias$|e_score_correction_bias$|block_sparse_moe\.gate\.weight$/;
  const config = await loadConfig(TINY);
  const ckpt = await Checkpoint.open(TINY, config);
  try {
    let want = 0;
    for (const name of ckpt.names) {
      if (config.tieWordEmbeddings && name === 'lm_head.weight') continue;
      want += ckpt.info(name).shape.reduce((a, b) => a * b, 1) * (f32.test(name) ? 4 : 2);
    }
    assert.equal(total(weightBytes(config, 'none')), want);
  } finally {
    await ckpt.close();
  }
});

test('MLA cache: 7 layers × tokens × 576 × 4 B in 2 MiB granules, plus one 128 MiB growth extent per layer', async () => {
  const c = await published();
  // 1,048,576 × 576 × 4 = 2,415,919,104 (1152 whole granules) + 134,217,728 = 2,550,136,832; × 7 = 17,850,957,824.
  assert.equal(mlaCacheBytes(c, 1_048_576), 17_850_957_824);
  // 131,072 × 2304 = 301,989,888 (144 granules) + 134,217,728 = 436,207,616; × 7 = 3,053,453,312.
  assert.equal(mlaCacheBytes(c, 131_072), 3_053_453_312);
  // 1000 tokens: 2,304,000 B rounds up to 2 granules = 4,194,304 + 134,217,728 = 138,412,032; × 7 = 968,884,224.
  assert.equal(mlaCacheBytes(c, 1000), 968_884_224);
});

test('KDA state and forks', async () => {
  const c = await published();
  // 20 × (32·128·128 = 524,288 + 3·4096·3 = 36,864) × 4 B = 20 × 2,244,608 = 44,892,160.
  assert.equal(kdaStateBytes(c), 44_892_160);
  // A fork: KDA state 44,892,160 + 7 × (boundary granule 2,097,152 + 4096 rows × 2304 B = 9,437,184
  //   → 5 granules 10,485,760) = 44,892,160 + 88,080,384 = 132,972,544.
  assert.equal(forkBytes(c), 132_972_544);
});

test('the ported MoE and MLA scratch formulas (native/src/ops.cu) at a 4096-token slice', async () => {
  const c = await published();
  // klc_moe_workspace_bytes(4096, 2304, 1024, 256, 8): n = 32,768, rows = 32,768 + 64 × 256 = 49,152;
  //   align256(4 × (3 × 257 + 2n) = 265,228) = 265,472; align256(8 × 6 × 256) = 12,288;
  //   4 × rows × 2048 = 402,653,184; 4 × rows × 1024 = 201,326,592; 4 × rows × 2304 = 452,984,832 → 1,057,242,368.
  assert.equal(moeScratchBytes(c, 4096), 1_057_242_368);
  // (2 × 4096 × 32 + 32 × 256) rows × (512 + 2) × 4 B = 270,336 × 2056 = 555,810,816.
  assert.equal(mlaScratchBytes(c, 4096), 555_810_816);
});

test('the prefill workspace of a 4096-token slice on a 135,168-token sequence (128k + a fork\'s 4096)', async () => {
  const c = await published();
  // Layer buffers per token (floats): 4d 9216; KDA 12·4096 + 2·128 + 32 = 49,440;
  //   MLA 6144 + 576 + 18,432 + 16,384 + 4096 = 45,632; MoE 256 + 16 + 2048 + 1024 = 3344; dense 27,648; final 2304
  //   → 137,584 × 4096 + lm_head 64 × 163,840 = 574,029,824 floats × 4 = 2,296,119,296, + 27 × 256 = 6,912.
  // + MoE 1,057,242,368 + MLA 555,810,816 = 3,909,179,392; + hidden/normed 2 × 4096 × 2304 × 4 = 75,497,472 + ids 16,384.
  // Tensor cores: 2^30 + 135,168 × 576 × 2 = 155,713,536 + 4096 × 32 × 576 × 2 = 150,994,944 + 4096 × 16,384 × 2
  //   = 134,217,728 + 768 + flash MLA (8192 × (16,384 + 1024 + 20,480) = 310,378,496 + 4,194,304
  //   + 4096 × 32 × 130 × 4 = 68,157,440 + 1536) = 1,897,400,576.
  // Sampling, 8 × 163,840 = 1,310,720 items: 2 × 10,485,760 + 2 × 5,242,880 + 16 × 1,310,720 + 2^20 + 32 = 53,477,408.
  // 3,909,179,392 + 75,497,472 + 16,384 + 1,897,400,576 + 53,477,408 = 5,935,571,232.
  assert.equal(prefillWorkspaceBytes(c, 135_168, 4096, true), 5_935_571_232);
  // Without tensor cores the staging goes: 5,935,571,232 − 1,897,400,576 = 4,038,170,656.
  assert.equal(prefillWorkspaceBytes(c, 135_168, 4096, false), 4_038_170_656);
});

const request = (contextTokens: number, gb: number, extra: Partial<PlanRequest> = {}): PlanRequest => ({ contextTokens, forks: 8, quantization: 'auto', gpuMemory: gb * GB, ...extra });

test('141 GB at 1M tokens, bf16, 8 forks: every component and the total', async () => {
  const p = planMemory(await published(), request(1_048_576, 141));
  // Workspace at 1,052,672 tokens: 5,935,571,232 + (1,052,672 − 135,168) × 1152 = 5,935,571,232 + 1,056,964,608 = 6,992,535,840.
  // 98,278,444,544 + 17,850,957,824 + 44,892,160 + 8 × 132,972,544 = 1,063,780,352 + 6,992,535,840 = 124,230,610,720
  //   ≤ 0.95 × 141 GB = 133.95 GB.
  assert.deepEqual(
    { fits: p.fits, quantization: p.quantization, slice: p.sliceTokens, offloaded: p.offloadedLayers, host: p.host.experts },
    { fits: true, quantization: 'none', slice: 4096, offloaded: [], host: 0 },
  );
  assert.deepEqual(p.gpu, { weights: 98_278_444_544, mlaCache: 17_850_957_824, kdaState: 44_892_160, forks: 1_063_780_352, workspace: 6_992_535_840, total: 124_230_610_720 });
  assert.equal(p.usable, 133.95e9);
});

test('what auto picks on 24/32/48/80/141 GB at 128k and 1M tokens with 8 forks', async () => {
  const c = await published();
  const pick = (tokens: number, gb: number) => {
    const p = planMemory(c, request(tokens, gb));
    return `${p.fits ? 'fits' : 'no'} ${p.quantization} ${p.offloadedLayers.length}`;
  };
  // 128k, everything but the weights at a 4096 slice: 3,053,453,312 + 44,892,160 + 1,063,780,352 + 5,935,571,232 = 10,097,697,056.
  //   141 GB: bf16 98.28 + 10.10 = 108.38 GB ≤ 133.95.  80 GB: bf16 no; fp8 50.05 + 10.10 = 60.14 ≤ 76.
  //   48 GB: fp8 60.14 > 45.6; int4 26.51 + 10.10 = 36.60 ≤ 45.6.
  //   32 GB (30.4 usable): int4 36.60 no; slice 512 (workspace 2,343,790,880 + 135,168 × 1152 = 2,499,504,416)
  //     → 26.51 + 6.66 = 33.17 no; offloading adds the staging buffer of one layer's experts (0.934) once and
  //     takes 0.934 per layer: 4 layers → 33,168,812,064 + 934,281,216 − 3,737,124,864 = 30,365,968,416 ≤ 30.4, 3 → 31.30 no.
  //   24 GB (22.8 usable): at 512 slices 33.17 + 0.934 − 12 × 0.934 = 22.89 > 22.8, so 13 layers; with 13 the
  //     1024-token slice fits too: 14,361,526,016 + 3,053,453,312 + 44,892,160 + 1,063,780,352 + 2,990,371,104
  //     + 934,281,216 = 22,448,304,160.
  assert.equal(pick(131_072, 141), 'fits none 0');
  assert.equal(pick(131_072, 80), 'fits fp8 0');
  assert.equal(pick(131_072, 48), 'fits int4 0');
  assert.equal(pick(131_072, 32), 'fits int4 4');
  assert.equal(pick(131_072, 24), 'fits int4 13');
  // The 1024-token workspace: layer 137,584 × 1024 + 10,485,760 floats × 4 + 6,912 = 605,494,016; MoE (24,576 rows)
  //   68,864 + 12,288 + 201,326,592 + 100,663,296 + 226,492,416 = 528,563,456; MLA 73,728 × 2056 = 151,584,768;
  //   hidden 18,874,368 + ids 4096; staging 2^30 + 155,713,536 + 37,748,736 + 33,554,432 + 768 + 331,613,696
  //   = 1,632,372,992; sampling 53,477,408 → 2,990,371,104; + the offload staging buffer 934,281,216 = 3,924,652,320.
  assert.equal(planMemory(c, request(131_072, 24)).gpu.workspace, 3_924_652_320);
  // 1M, everything but the weights at 4096: 17,850,957,824 + 44,892,160 + 1,063,780,352 + 6,992,535,840 = 25,952,166,176.
  //   141: bf16 124.23 ≤ 133.95.  80: fp8 50,046,009,088 + 25,952,166,176 = 75,998,175,264 ≤ 76e9.
  //   48 (45.6): int4 at 512 slices (workspace 2,343,790,880 + 1,052,672 × 1152 = 3,556,469,024): others 22,516,099,360;
  //     with the staging buffer 934,281,216: 26,507,181,824 − 5 × 934,281,216 = 21,835,775,744 + 934,281,216
  //     + 22,516,099,360 = 45,286,156,320 ≤ 45.6e9 (4 layers: 46.22 GB).
  //   32 (30.4): 21 layers offloaded: 26,507,181,824 − 19,619,905,536 = 6,887,276,288 + 934,281,216 → 30,337,656,864 ≤ 30.4e9.
  //   24 (22.8): even every expert offloaded (2,215,870,208 of weights) needs 24,731,969,568 + 934,281,216 = 25,666,250,784.
  assert.equal(pick(1_048_576, 141), 'fits none 0');
  assert.equal(pick(1_048_576, 80), 'fits fp8 0');
  assert.equal(pick(1_048_576, 48), 'fits int4 5');
  assert.equal(pick(1_048_576, 32), 'fits int4 21');
  assert.equal(pick(1_048_576, 24), 'no int4 26');
});

test('offloading moves the last MoE layers\' experts to the host', async () => {
  const p = planMemory(await published(), request(1_048_576, 48));
  assert.deepEqual(p.offloadedLayers, [22, 23, 24, 25, 26]);
  // 5 × 934,281,216 = 4,671,406,080; 26,507,181,824 − 4,671,406,080 = 21,835,775,744.
  assert.equal(p.host.experts, 4_671_406_080);
  assert.equal(p.gpu.weights, 21_835_775_744);
  assert.equal(p.sliceTokens, 512);
});

test('a plan that does not fit says what to change, with numbers', async () => {
  const c = await published();
  const p = planMemory(c, request(1_048_576, 24));
  assert.equal(p.fits, false);
  // Largest context at int4 with every expert offloaded (plus the 934,281,216-byte staging buffer) and
  // 512-token slices, in 1024-token steps:
  //   881,664 tokens: 881,664 × 2304 = 2,031,353,856 → 969 granules 2,032,140,288 + 134,217,728 = 2,166,358,016 × 7
  //     = 15,164,506,112; workspace 2,343,790,880 + 885,760 × 1152 + 934,281,216 = 4,298,467,616;
  //     2,215,870,208 + 15,164,506,112 + 44,892,160 + 1,063,780,352 + 4,298,467,616 = 22,787,516,448 ≤ 22.8e9.
  //   882,688 tokens: 970 granules → 15,179,186,176, workspace 4,299,647,264 → 22,803,376,160 > 22.8e9.
  // A bigger GPU: 25,666,250,784 / 0.95 = 27,017,106,088 → rounded up to 10 MB: 27.02 GB.
  assert.equal(
    p.advice,
    'does not fit: needs 25.67 GB at int4, but 22.80 GB of 24.00 GB is usable. Change one of: fewer tokens: at most 881664 fit at int4 (--context 881664); a bigger GPU: at least 27.02 GB.',
  );
  assert.equal(largestContext(c, { forks: 8, quantization: 'auto', gpuMemory: 24 * GB }), 881_664);
});

test('an explicit scheme that does not fit points at a lighter scheme and fewer forks', async () => {
  const c = await published();
  // 12 GB (11.4e9 usable), 128k, bf16, 8 forks, the smallest arrangement (every expert offloaded, 512-token slices,
  // the staging buffer of one layer's experts 3,623,878,656): resident bf16 98,278,444,544 − 26 × 3,623,878,656
  //   = 4,057,599,488; + 3,053,453,312 + 44,892,160 + 1,063,780,352 + workspace 2,499,504,416 + 3,623,878,656
  //   = 14,343,108,384 > 11.4e9. Without forks 13,279,328,032 > 11.4e9: no forks advice.
  //   fp8, every expert offloaded: 50,046,009,088 − 26 × 1,816,395,776 = 2,819,718,912 + 6,661,630,240
  //   + staging 1,816,395,776 = 11,297,744,928 ≤ 11.4e9 (25 layers would add 1.82 GB).
  const p = planMemory(c, request(131_072, 12, { quantization: 'none' }));
  assert.equal(p.fits, false);
  assert.equal(p.quantization, 'none');
  assert.match(p.advice, /a quantized model: --quantization fp8 needs 11\.30 GB with the experts of 26 layers in host memory/);
  assert.doesNotMatch(p.advice, /fewer forks/);
  // 26 GB (24.7e9 usable), 1M, int4, every expert offloaded: 8 forks 25,666,250,784 no; 1 fork
  //   25,666,250,784 − 7 × 132,972,544 = 24,735,442,976 no; 0 forks 24,602,470,432 ≤ 24.7e9 → "--forks 0".
  const f = planMemory(c, request(1_048_576, 26, { quantization: 'int4' }));
  assert.equal(f.fits, false);
  assert.match(f.advice, /fewer forks: --forks 0/);
});

test('auto on a card where bf16 fits stays unquantized; a fixed slice is respected', async () => {
  const c = await published();
  const p = planMemory(c, request(131_072, 141, { sliceTokens: 1024 }));
  assert.equal(p.sliceTokens, 1024);
  assert.equal(p.quantization, 'none');
  assert.equal(p.advice, `fits: ${(p.gpu.total / 1e9).toFixed(2)} GB of 133.95 GB usable (${((133.95e9 - p.gpu.total) / 1e9).toFixed(2)} GB spare).`);
});

test('requests out of range are refused', async () => {
  const c = await published();
  assert.throws(() => planMemory(c, request(1_048_577, 80)), /context must be 1 to 1048576/);
  assert.throws(() => planMemory(c, request(4096, 80, { forks: 9 })), /forks must be 0 to 8/);
  assert.throws(() => planMemory(c, request(4096, 0)), /must be positive/);
});
