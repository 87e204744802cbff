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

test('fp8 and int8: 1 byte per weight and a bf16 scale per output row; embed, lm_head, router, norms, KDA b_proj and MLA kv_b kept', async () => {
  // Kept bf16: MLA kv_b 7 × 8192·512 = 29,360,128 and KDA b_proj 20 × 32·2304 = 1,474,560 weights (61,669,376 B).
  // Quantized weights: 49,106,141,184 bf16-stored values − embed 377,487,360 − lm_head 377,487,360 − 30,834,688 kept
  //   = 48,320,331,776.
  // Output rows: KDA 3·4096 + 128 + 4096 + 128 + 4096 + 2304 = 23,040 (× 20 = 460,800);
  //   MLA 6144 + 576 + 2304 = 9,024 (× 7 = 63,168); dense 9216 + 9216 + 2304 = 20,736;
  //   MoE (256 + 1) × (1024 + 1024 + 2304) = 1,118,464 (× 26 = 29,080,064) → 29,624,768 rows × 2 B = 59,249,536.
  // 48,320,331,776 + 59,249,536 + embed/lm_head 1,509,949,440 + kept 61,669,376 + fp32 66,162,176 = 50,017,362,304.
  const c = await published();
  assert.equal(total(weightBytes(c, 'fp8')), 50_017_362_304);
  assert.equal(total(weightBytes(c, 'int8')), 50_017_362_304);
  // One layer's experts: 256 × (3·1024·2304 + 4352 rows × 2 B) = 1,814,167,552.
  assert.equal(weightBytes(c, 'int8').experts[1], 1_814_167_552);
});

test('int4: half a byte per weight and a bf16 scale per 128 inputs', async () => {
  // Every quantized matrix has a multiple of 128 inputs, so scales = weights / 128 × 2 B = weights / 64.
  // 48,320,331,776 / 2 = 24,160,165,888; / 64 = 755,005,184; + 1,509,949,440 + kept 61,669,376 + 66,162,176
  //   = 26,552,952,064.
  const w = weightBytes(await published(), 'int4');
  assert.equal(total(w), 26_552_952_064);
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

test('MLA cache: 7 layers × tokens × 576 × 2 B (bf16, tensor-core mode) or 4 B (fp32, exact mode) in 2 MiB granules, plus one 128 MiB growth extent per layer', async () => {
  const c = await published();
  // bf16: 1,048,576 × 576 × 2 = 1,207,959,552 (576 whole granules) + 134,217,728 = 1,342,177,280; × 7 = 9,395,240,960.
  assert.equal(mlaCacheBytes(c, 1_048_576, 2), 9_395_240_960);
  // 131,072 × 1152 = 150,994,944 (72 granules) + 134,217,728 = 285,212,672; × 7 = 1,996,488,704.
  assert.equal(mlaCacheBytes(c, 131_072, 2), 1_996_488_704);
  // 1000 tokens: 1,152,000 B rounds up to 1 granule = 2,097,152 + 134,217,728 = 136,314,880; × 7 = 954,204,160.
  assert.equal(mlaCacheBytes(c, 1000, 2), 954_204_160);
  // fp32: 1,048,576 × 576 × 4 = 2,415,919,104 (1152 whole granules) + 134,217,728 = 2,550,136,832; × 7 = 17,850,957,824.
  assert.equal(mlaCacheBytes(c, 1_048_576, 4), 17_850_957_824);
  // 131,072 × 2304 = 301,989,888 (144 granules) + 134,217,728 = 436,207,616; × 7 = 3,053,453,312.
  assert.equal(mlaCacheBytes(c, 131_072, 4), 3_053_453_312);
  // 1000 tokens: 2,304,000 B rounds up to 2 granules = 4,194,304 + 134,217,728 = 138,412,032; × 7 = 968,884,224.
  assert.equal(mlaCacheBytes(c, 1000, 4), 968_884_224);
});

test('KDA state and forks', async () => {
  const c = await published();
  // 20 × (32·128·128 = 524,288 + 3·4096·3 = 36,864) × 4 B = 20 × 2,244,608 = 44,892,160.
  assert.equal(kdaStateBytes(c), 44_892_160);
  // A fork, bf16 rows: KDA state 44,892,160 + 7 × (boundary granule 2,097,152 + 4096 rows × 1152 B = 4,718,592
  //   → 3 granules 6,291,456) = 44,892,160 + 58,720,256 = 103,612,416.
  assert.equal(forkBytes(c, 2), 103_612_416);
  // fp32 rows: 44,892,160 + 7 × (2,097,152 + 4096 × 2304 B = 9,437,184 → 5 granules 10,485,760) = 44,892,160 + 88,080,384 = 132,972,544.
  assert.equal(forkBytes(c, 4), 132_972_544);
});

test('the ported MoE and MLA scratch formulas (native/src/moe.cu, mla.cu) at a 4096-token slice', async () => {
  const c = await published();
  // klc_moe_workspace_bytes(4096, 2304, 1024, 256, 8): n = 32,768, rows = 32,768 + 64 × 256 = 49,152;
  //   align256(4 × (3 × 257 + 2n) = 265,228) = 265,472; align256(8 × 6 × 256) = 12,288;
  //   4 × rows × 2048 = 402,653,184; 4 × rows × 1024 = 201,326,592; 4 × rows × 2304 = 452,984,832 → 1,057,242,368.
  assert.equal(moeScratchBytes(c, 4096), 1_057_242_368);
  // (2 × 4096 × 32 + 32 × 256) rows × (512 + 2) × 4 B = 270,336 × 2056 = 555,810,816.
  assert.equal(mlaScratchBytes(c, 4096), 555_810_816);
});

test('the prefill workspace of a 4096-token slice (the same at any sequence length: the bf16 cache is never staged)', async () => {
  const c = await published();
  // Layer buffers per token (floats): 4d 9216; KDA 12·4096 + 2·128 + 32 = 49,440;
  //   MLA 6144 + 576 + 18,432 + 16,384 + 4096 = 45,632; MoE 256 + 16 + 2048 + 1024 = 3344; dense 27,648; final 2304
  //   → 137,584 × 4096 + lm_head 64 × 163,840 = 574,029,824 floats × 4 = 2,296,119,296, + 27 × 256 = 6,912.
  // + MoE 1,057,242,368 + MLA 555,810,816 = 3,909,179,392; + hidden/normed 2 × 4096 × 2304 × 4 = 75,497,472 + ids 16,384.
  // Tensor cores: 2^30 + 4096 × 32 × 576 × 2 = 150,994,944 + 4096 × 16,384 × 2 = 134,217,728 + 768
  //   + flash MLA (8192 × (16,384 + 1024 + 20,480) = 310,378,496 + 4,194,304 + 4096 × 32 × 130 × 4 = 68,157,440 + 1536)
  //   = 1,741,687,040.
  // Sampling, 8 × 163,840 = 1,310,720 items: 2 × 10,485,760 + 2 × 5,242,880 + 16 × 1,310,720 + 2^20 + 32 = 53,477,408.
  // 3,909,179,392 + 75,497,472 + 16,384 + 1,741,687,040 + 53,477,408 = 5,779,857,696.
  assert.equal(prefillWorkspaceBytes(c, 4096, true), 5_779_857_696);
  // Without tensor cores the staging goes: 5,779,857,696 − 1,741,687,040 = 4,038,170,656.
  assert.equal(prefillWorkspaceBytes(c, 4096, false), 4_038_170_656);
});

test('the prefill workspace of an 8192-token slice, the longest the plan takes where it fits', async () => {
  const c = await published();
  // Layer buffers 137,584 × 8192 = 1,127,088,128 + lm_head 10,485,760 = 1,137,573,888 floats × 4 = 4,550,295,552, + 6,912.
  // MoE: n = 65,536, rows = 65,536 + 16,384 = 81,920; align256(4 × (771 + 131,072) = 527,372) = 527,616; 12,288;
  //   4 × 81,920 × (2048 + 1024 + 2304) = 1,761,607,680 → 1,762,147,584.
  // MLA: (2 × 8192 × 32 + 32 × 256) = 532,480 rows × 2056 = 1,094,778,880.
  // hidden/normed 2 × 8192 × 2304 × 4 = 150,994,944; ids 32,768.
  // Tensor cores: 2^30 + 8192 × 32 × 576 × 2 = 301,989,888 + 8192 × 16,384 × 2 = 268,435,456 + 768
  //   + flash MLA 310,378,496 + 4,194,304 + 8192 × 32 × 130 × 4 = 136,314,880 + 1536 = 2,095,057,152.
  // Sampling 53,477,408. Sum: 4,550,302,464 + 1,762,147,584 + 1,094,778,880 + 150,994,944 + 32,768 + 2,095,057,152
  //   + 53,477,408 = 9,706,791,200 (3,926,933,504 more than at 4096; the H100 at 128k measured +3.5 GB of peak).
  assert.equal(prefillWorkspaceBytes(c, 8192, true), 9_706_791_200);
  assert.equal(prefillWorkspaceBytes(c, 8192, false), 9_706_791_200 - 2_095_057_152);
});

const request = (contextTokens: number, gb: number, extra: Partial<PlanRequest> = {}): PlanRequest => ({ contextTokens, forks: 8, quantization: 'auto', gpuMemory: gb * GB, ...extra });

test('141 GB at 1M tokens, bf16, 8 forks: every component and the total', async () => {
  const p = planMemory(await published(), request(1_048_576, 141));
  // 98,278,444,544 + bf16 cache 9,395,240,960 + 44,892,160 + 8 × 103,612,416 = 828,899,328 + workspace of an
  //   8192-token slice 9,706,791,200 = 118,254,268,192 ≤ 0.95 × 141 GB = 133.95 GB.
  assert.deepEqual(
    { fits: p.fits, quantization: p.quantization, slice: p.sliceTokens, offloaded: p.offloadedLayers, host: p.host.experts },
    { fits: true, quantization: 'none', slice: 8192, offloaded: [], host: 0 },
  );
  assert.deepEqual(p.gpu, { weights: 98_278_444_544, mlaCache: 9_395_240_960, kdaState: 44_892_160, forks: 828_899_328, workspace: 9_706_791_200, total: 118_254_268_192 });
  assert.equal(p.usable, 133.95e9);
});

test('exact mode (no tensor cores) plans fp32 MLA rows and no staging', async () => {
  const p = planMemory(await published(), request(1_048_576, 141, { tensorCores: false }));
  // 98,278,444,544 + fp32 cache 17,850,957,824 + 44,892,160 + 8 × 132,972,544 = 1,063,780,352 + workspace of an
  //   8192-token slice without staging 7,611,734,048 = 124,849,808,928.
  assert.deepEqual(p.gpu, { weights: 98_278_444_544, mlaCache: 17_850_957_824, kdaState: 44_892_160, forks: 1_063_780_352, workspace: 7_611_734_048, total: 124_849_808_928 });
  assert.equal(p.fits, true);
});

test('what auto picks on 24/32/48/80/141 GB at 128k and 1M tokens with 8 forks', async () => {
  const c = await published();
  const pick = (tokens: number, gb: number) => {
    const p = planMemory(c, request(tokens, gb));
    return `${p.fits ? 'fits' : 'no'} ${p.quantization} ${p.offloadedLayers.length} ${p.sliceTokens}`;
  };
  // Each scheme tries an 8192-token slice first (3,926,933,504 more than 4096, above), then 4096: the longer slice
  //   never costs a scheme or an offloaded layer, and is taken where it fits too.
  // 128k, everything but the weights at a 4096 slice: 1,996,488,704 + 44,892,160 + 828,899,328 + 5,779,857,696 = 8,650,137,888;
  //   quantized weights add the dequantization buffer, 452,984,832 (dequant-buffer.test.ts): 9,103,122,720.
  //   141 GB: bf16 98.28 + 8.65 = 106.93 GB ≤ 133.95.  80 GB: bf16 no; fp8 50.02 + 9.10 = 59.12 ≤ 76.
  //   48 GB: fp8 59.12 > 45.6; int4 26.55 + 9.10 = 35.66 ≤ 45.6.
  //   32 GB (30.4 usable): int4 35.66 no. Offloading tries slices of 1024 tokens and more at every layer count before
  //     512 (MIN_OFFLOAD_SLICE). At 1024-token slices (workspace 2,834,657,568, below) everything but the weights is
  //     5,704,937,760 + 452,984,832 = 6,157,922,592. Offloading adds the staging buffer of one layer's experts
  //     (934,281,216) once and takes 934,281,216 per layer: 26,552,952,064 + 934,281,216 + 6,157,922,592
  //     = 33,645,155,872 − k × 934,281,216: 3 layers → 30,842,312,224 no, 4 → 29,908,031,008 ≤ 30.4e9 (at 2048,
  //     workspace 3,816,390,944: 30,889,764,384 no).
  //   24 GB (22.8 usable): 11 layers → 23,368,062,496 no; 12 → 22,433,781,280 fits.
  //   8192-token slices: 141: 106.93 + 3.93 = 110.86 ≤ 133.95; 80: 59.12 + 3.93 = 63.05 ≤ 76; 48: 35.66 + 3.93
  //   = 39.59 ≤ 45.6. Offloaded ones stay at 1024: 4 layers at 2048 do not fit, 8192 even less.
  assert.equal(pick(131_072, 141), 'fits none 0 8192');
  assert.equal(pick(131_072, 80), 'fits fp8 0 8192');
  assert.equal(pick(131_072, 48), 'fits int4 0 8192');
  assert.equal(pick(131_072, 32), 'fits int4 4 1024');
  assert.equal(pick(131_072, 24), 'fits int4 12 1024');
  assert.equal(planMemory(c, request(131_072, 24)).gpu.workspace, 2_834_657_568 + 452_984_832 + 934_281_216);
  // The 1024-token workspace: layer 137,584 × 1024 + 10,485,760 floats × 4 + 6,912 = 605,494,016; MoE (24,576 rows)
  //   68,864 + 12,288 + 201,326,592 + 100,663,296 + 226,492,416 = 528,563,456; MLA 73,728 × 2056 = 151,584,768;
  //   hidden 18,874,368 + ids 4096; staging 2^30 + 37,748,736 + 33,554,432 + 768 + 331,613,696 = 1,476,659,456;
  //   sampling 53,477,408 → 2,834,657,568.
  assert.equal(prefillWorkspaceBytes(c, 1024, true), 2_834_657_568);
  // 1M, everything but the weights at 4096: 9,395,240,960 + 44,892,160 + 828,899,328 + 5,779,857,696 = 16,048,890,144;
  //   with the dequantization buffer 16,501,874,976.
  //   141: bf16 114.33 ≤ 133.95.  80: fp8 50,017,362,304 + 16,501,874,976 = 66,519,237,280 ≤ 76e9.
  //   48 (45.6): int4 26,552,952,064 + 16,501,874,976 = 43,054,827,040 ≤ 45.6e9.
  //   At 1024 slices the rest is 12,612,823,328 (at 512) + 490,866,688 + 452,984,832 = 13,556,674,848; with the
  //     staging buffer 26,552,952,064 + 934,281,216 + 13,556,674,848 = 41,043,908,128 − k × 934,281,216.
  //   32 (30.4): 11 layers → 30,766,814,752 no; 12 → 29,832,533,536 ≤ 30.4e9.
  //   24 (22.8): 19 layers → 23,292,565,024 no; 20 → 22,358,283,808 ≤ 22.8e9.
  //   8192-token slices: 141: 114.33 + 3.93 = 118.25 ≤ 133.95; 80: 66.52 + 3.93 = 70.45 ≤ 76; 48: 43.05 + 3.93
  //   = 46.98 > 45.6, so 4096.
  assert.equal(pick(1_048_576, 141), 'fits none 0 8192');
  assert.equal(pick(1_048_576, 80), 'fits fp8 0 8192');
  assert.equal(pick(1_048_576, 48), 'fits int4 0 4096');
  assert.equal(pick(1_048_576, 32), 'fits int4 12 1024');
  assert.equal(pick(1_048_576, 24), 'fits int4 20 1024');
});

test('offloading moves the last MoE layers\' experts to the host', async () => {
  const p = planMemory(await published(), request(1_048_576, 24));
  assert.deepEqual(p.offloadedLayers, [7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26]);
  // 20 × 934,281,216 = 18,685,624,320; 26,552,952,064 − 18,685,624,320 = 7,867,327,744 on the GPU.
  assert.equal(p.host.experts, 18_685_624_320);
  assert.equal(p.gpu.weights, 7_867_327_744);
  // 1024-token slices: 7,867,327,744 + 9,395,240,960 + 44,892,160 + 828,899,328 + 2,834,657,568 + dequantization
  //   452,984,832 + staging 934,281,216 = 22,358,283,808 ≤ 22.8e9 (2048 needs 981,733,376 more). 19 layers need
  //   23,292,565,024 at 1024-token slices and 22,801,698,336 at 512: neither fits.
  assert.equal(p.sliceTokens, 1024);
  assert.equal(p.gpu.total, 22_358_283_808);
});

test('a plan that does not fit says what to change, with numbers', async () => {
  const c = await published();
  const p = planMemory(c, request(1_048_576, 14));
  assert.equal(p.fits, false);
  // int4, every expert offloaded (26,552,952,064 − 26 × 934,281,216 = 2,261,640,448 of weights), 512-token slices, the
  //   dequantization buffer 452,984,832 and the staging buffer 934,281,216: 2,261,640,448 + 9,395,240,960 + 44,892,160
  //   + 828,899,328 + 2,343,790,880 + 452,984,832 + 934,281,216 = 16,261,729,824 > 13.3e9 usable.
  // Largest context: all but the cache granules is 2,261,640,448 + 7 × 134,217,728 + 44,892,160 + 828,899,328
  //   + 2,343,790,880 + 452,984,832 + 934,281,216 = 7,806,012,960, leaving 5,493,987,040 / 7 = 784,855,291 per layer:
  //   374 granules (784,334,848), 680,846 rows of 1152 bytes; in 1024-token steps 679,936.
  // Fewer forks do not help: 0 forks still need 16,261,729,824 − 828,899,328 = 15,432,830,496.
  // A bigger GPU: 16,261,729,824 / 0.95 = 17,117,610,341 → rounded up to 10 MB: 17.12 GB.
  assert.equal(
    p.advice,
    'does not fit: needs 16.26 GB at int4, but 13.30 GB of 14.00 GB is usable. Change one of: fewer tokens: at most 679936 fit at int4 (--context 679936); a bigger GPU: at least 17.12 GB.',
  );
  assert.equal(largestContext(c, { forks: 8, quantization: 'auto', gpuMemory: 14 * GB }), 679_936);
});

test('an explicit scheme that does not fit points at a lighter scheme and fewer forks', async () => {
  const c = await published();
  // 10 GB (9.5e9 usable), 128k, bf16, 8 forks. bf16 experts stay on the GPU (the CPU kernels run FP8/INT8/INT4 only),
  //   so the smallest arrangement is 512-token slices: 98,278,444,544 + 1,996,488,704 + 44,892,160 + 828,899,328
  //   + 2,343,790,880 = 103,492,515,616 > 9.5e9. Without forks 102,663,616,288 > 9.5e9: no forks advice.
  //   The rest at 1024-token slices with the dequantization buffer: 5,704,937,760 + 452,984,832 = 6,157,922,592.
  //   fp8 and int8 (1 byte per weight), every expert offloaded: 50,017,362,304 − 26 × 1,814,167,552 = 2,849,005,952
  //   + 6,157,922,592 + staging 1,814,167,552 = 10,821,096,096 > 9.5e9, and at 512 (−490,866,688) 10,330,229,408.
  //   int4: 2,261,640,448 + 6,157,922,592 + 934,281,216 = 9,353,844,256 ≤ 9.5e9; 25 layers would add 0.93 GB.
  const p = planMemory(c, request(131_072, 10, { quantization: 'none' }));
  assert.equal(p.fits, false);
  assert.equal(p.quantization, 'none');
  assert.deepEqual(p.offloadedLayers, []);
  assert.equal(p.gpu.total, 103_492_515_616);
  assert.match(p.advice, /^does not fit: needs 103\.49 GB at none/);
  assert.match(p.advice, /a quantized model: --quantization int4 needs 9\.35 GB with the experts of 26 layers in host memory/);
  assert.doesNotMatch(p.advice, /fewer forks/);
  // 16.5 GB (15.675e9 usable), 1M, int4, every expert offloaded: 8 forks 16,261,729,824 no; k forks
  //   15,432,830,496 + k × 103,612,416: 3 → 15,743,667,744 no, 2 → 15,640,055,328 ≤ 15.675e9 → "--forks 2".
  const f = planMemory(c, request(1_048_576, 16.5, { quantization: 'int4' }));
  assert.equal(f.fits, false);
  assert.match(f.advice, /fewer forks: --forks 2/);
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
