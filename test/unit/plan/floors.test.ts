/**
 * The speed floors of the published Kimi-Linear-48B-A3B-Instruct config against numbers worked out
 * by hand from its shapes (d 2304, vocab 163840, 20 KDA + 7 MLA layers, layer 0 dense 9216, 26 MoE
 * layers of 256 experts of 1024, top-8, 1 shared; KDA 32 heads × 128; MLA 32 heads, nope 128,
 * rope 64, v 128, kv_lora_rank 512). The expectations are literals, never the implementation's helpers.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { loadConfigFile } from '../../../src/engine/model/config';
import { decodeStepBytes, expectedExperts, prefillFlops } from '../../../src/engine/plan/floors';

const PUBLISHED = join(__dirname, '..', '..', '..', 'assets', 'configs', 'kimi-linear-48b-a3b-instruct.json');

// Per KDA layer: q, k, v 3·4096·2304 = 28,311,552; f_a, g_a 128·2304 = 294,912 each; f_b, g_b
// 4096·128 = 524,288 each; beta 32·2304 = 73,728; o 2304·4096 = 9,437,184: 39,460,864.
// Per MLA layer: q 6144·2304 = 14,155,776; kv_a 576·2304 = 1,327,104; kv_b 8192·512 = 4,194,304;
// o 9,437,184: 29,114,368.
// Every token: 20·39,460,864 + 7·29,114,368 + dense 3·9216·2304 (63,700,992) + 26 shared experts
// 3·1024·2304 (184,025,088) = 1,240,743,936 bf16 weights; 8 routed experts in 26 layers
// 8·26·7,077,888 = 1,472,200,704; lm_head 163840·2304 = 377,487,360; routers 26·256·2304 fp32.
test('one answer at no context reads the ~3.1 B active weights once and each KDA state twice', async () => {
  const c = await loadConfigFile(PUBLISHED);
  // (1,240,743,936 + 1,472,200,704 + 377,487,360)·2 + 15,335,424·4 = 6,242,205,696 weight bytes;
  // KDA states read and written: 20·2·32·128·128·4 = 83,886,080.
  assert.equal(decodeStepBytes(c, 0), 6_326_091_776);
  // Each MLA layer reads 4096 rows of 576 bf16 latents (tensor-core mode): + 7·4096·576·2 = 33,030,144.
  assert.equal(decodeStepBytes(c, 4096), 6_359_121_920);
  // In exact mode the latents are fp32: + 7·4096·576·4 = 66,060,288.
  assert.equal(decodeStepBytes(c, 4096, 1, { tensorCores: false }), 6_392_152_064);
});

test('eight answers read the experts any of them chose once, and their own states each', async () => {
  const c = await loadConfigFile(PUBLISHED);
  // Distinct experts of 8 independent top-8 draws from 256: 256·(1 − (31/32)^8).
  const distinct = 256 * (1 - (31 / 32) ** 8);
  assert.ok(Math.abs(expectedExperts(c, 8) - distinct) < 1e-9);
  assert.equal(expectedExperts(c, 1), 8);
  const weights = (1_240_743_936 + 26 * distinct * 7_077_888 + 377_487_360) * 2 + 15_335_424 * 4;
  const perAnswer = 83_886_080 + 7 * 131_072 * 576 * 2;
  assert.ok(Math.abs(decodeStepBytes(c, 131_072, 8) - (weights + 8 * perAnswer)) < 1);
  // Forks of one repository state share its rows: 131,072 − 100 of each answer's are read once, the last 100 each.
  const kda = 83_886_080;
  const shared = 7 * 130_972 * 576 * 2 + 8 * (kda + 7 * 100 * 576 * 2);
  assert.ok(Math.abs(decodeStepBytes(c, 131_072, 8, { shared: 130_972 }) - (weights + shared)) < 1);
});

test('quantized weights: the floor counts their codes and scales, with lm_head, KDA b_proj, MLA kv_b and the routers as stored', async () => {
  const c = await loadConfigFile(PUBLISHED);
  // Of the 1,240,743,936 every-token weights, kv_b (7·8192·512 = 29,360,128) and b_proj (20·32·2304 = 1,474,560) stay
  // bf16 (61,669,376 B): 1,209,909,248 quantized. Their output rows, each with a bf16 scale: KDA 23,040·20 = 460,800,
  // MLA (6144 + 576 + 2304)·7 = 63,168, dense 20,736, shared experts (1024 + 1024 + 2304)·26 = 113,152: 657,856.
  // Fixed: lm_head 754,974,720 B, routers 61,341,696 B, KDA states 83,886,080 B: 900,202,496.
  // int8: 1,209,909,248 + 657,856·2 + 61,669,376 + 208 routed experts × (7,077,888 + 4352·2) + 900,202,496 = 3,647,107,968.
  assert.equal(decodeStepBytes(c, 0, 1, { quantization: 'int8' }), 3_647_107_968);
  assert.equal(decodeStepBytes(c, 0, 1, { quantization: 'fp8' }), 3_647_107_968);
  // int4 (a bf16 scale per 128 inputs: elements / 64 bytes): 1,209,909,248·(1/2 + 1/64) + 61,669,376
  //   + 208 × 7,077,888·(1/2 + 1/64) + 900,202,496 = 2,344,834,816.
  assert.equal(decodeStepBytes(c, 0, 1, { quantization: 'int4' }), 2_344_834_816);
  // The MLA cache does not depend on the weights' scheme.
  assert.equal(decodeStepBytes(c, 4096, 1, { quantization: 'int4' }) - decodeStepBytes(c, 0, 1, { quantization: 'int4' }), 7 * 4096 * 576 * 2);
});

test('prefill FLOPs of 4096 tokens: the active weights twice per token, causal MLA, KDA chunks', async () => {
  const c = await loadConfigFile(PUBLISHED);
  // Weights: 2·(1,240,743,936 + 15,335,424 + 1,472,200,704) = 5,456,560,128 per token, ·4096 =
  // 22,350,070,284,288. MLA: keys attended 4096·4097/2 = 8,390,656, ·2·32·320·7 = 1,202,884,444,160.
  // KDA: 4096·32·(4·128² + 4·64·128) = 12,884,901,888 per layer, ·20 = 257,698,037,760.
  assert.equal(prefillFlops(c, 0, 4096), 23_810_652_766_208);
  // The same 4096 tokens after a cached 1M prefix only add attention: keys (1,048,577 + 1,052,672)·4096/2.
  const keys = ((1_048_577 + 1_052_672) * 4096) / 2;
  assert.equal(prefillFlops(c, 1_048_576, 1_052_672) - prefillFlops(c, 0, 4096), 7 * 2 * 32 * 320 * (keys - 8_390_656));
});
