/**
 * Dummy weights (--load-format dummy): the generator's values against an independent BigInt
 * evaluation of the definition, their distribution, and the same dummy model on the reference and
 * onnx backends (independent implementations of the forward pass) through the CLI contract.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfigFile } from '../../../src/engine/model/config';
import { DummyWeights, normalValue } from '../../../src/engine/model/dummy-weights';
import { SafetensorsFile } from '../../../src/engine/model/safetensors';
import { relError } from '../../golden/golden-data';

const ROOT = join(__dirname, '..', '..', '..');
const TINY_CONFIG = join(ROOT, 'assets', 'tiny-model', 'config.json');
const BIG_CONFIG = join(ROOT, 'assets', 'configs', 'kimi-linear-48b-a3b-instruct.json');

/** lowbias32 in BigInt arithmetic: the finaliser as the definition writes it, without Math.imul tricks. */
function mix(x: bigint): bigint {
  const M = 0xffffffffn;
  x ^= x >> 16n;
  x = (x * 0x7feb352dn) & M;
  x ^= x >> 15n;
  x = (x * 0x846ca68bn) & M;
  x ^= x >> 16n;
  return x;
}

/** Element i per the definition: eight 16-bit halves of four hashes, centred, scaled, rounded to fp32 then bf16. */
function byDefinition(key: number, key2: number, scale: number, i: number): number {
  const base = mix(BigInt(i) ^ BigInt(key));
  let s = 0n;
  for (let j = 0n; j < 4n; j++) {
    const r = mix(base ^ ((BigInt(key2) + j * 0x9e3779b9n) & 0xffffffffn));
    s += (r & 0xffffn) + (r >> 16n);
  }
  const f = new Float32Array([Number(s - 262140n) * scale]);
  const bits = new DataView(f.buffer).getUint32(0, true);
  const rounded = Number((BigInt(bits) + 0x7fffn + ((BigInt(bits) >> 16n) & 1n)) >> 16n) << 16;
  const out = new DataView(new ArrayBuffer(4));
  out.setUint32(0, rounded >>> 0, true);
  return out.getFloat32(0, true);
}

test('dummy normal values equal the definition evaluated independently (BigInt hash, explicit bf16 rounding)', async () => {
  const w = new DummyWeights(await loadConfigFile(TINY_CONFIG), 7, TINY_CONFIG);
  const name = 'model.layers.1.self_attn.q_proj.weight';
  const fill = w.deviceFill(name)!;
  assert.ok(fill, 'a projection is a normal tensor');
  const t = await w.tensor(name);
  for (const i of [0, 1, 2, 1000, 12345, t.length - 1]) {
    assert.equal(t[i], byDefinition(fill.key, fill.key2, fill.scale, i), `element ${i}`);
    assert.equal(normalValue(fill, i), t[i]);
  }
  // Indices beyond 2^31 (the embedding of the 48B config has 3.8e8 elements; the kernel's index is 32-bit).
  for (const i of [2 ** 31 + 5, 2 ** 32 - 1]) assert.equal(normalValue(fill, i), byDefinition(fill.key, fill.key2, fill.scale, i), `element ${i}`);
});

test('dummy matrices are N(0, 0.02)-like, bf16-exact and independent across tensors and seeds', async () => {
  const cfg = await loadConfigFile(BIG_CONFIG);
  const w = new DummyWeights(cfg, 0, BIG_CONFIG);
  const a = await w.tensor('model.layers.3.self_attn.kv_a_proj_with_mqa.weight'); // 576 × 2304 = 1.3M values
  let sum = 0;
  let sq = 0;
  let tail = 0;
  for (const v of a) {
    sum += v;
    sq += v * v;
    if (Math.abs(v) > 0.04) tail++;
  }
  const mean = sum / a.length;
  const std = Math.sqrt(sq / a.length - mean * mean);
  assert.ok(Math.abs(mean) < 1e-4, `mean ${mean}`);
  assert.ok(Math.abs(std - 0.02) < 0.0002, `std ${std}`);
  // A normal has 4.55% beyond 2σ; eight uniforms give 4.6%.
  assert.ok(Math.abs(tail / a.length - 0.0455) < 0.003, `beyond 2σ: ${tail / a.length}`);
  assert.ok(Math.max(...a.subarray(0, 100000).map(Math.abs)) < 0.02 * Math.sqrt(12 * 8) / 2 + 1e-9, 'bounded by the uniform sum');
  const bits = new Uint32Array(a.buffer);
  assert.ok(bits.every((b) => (b & 0xffff) === 0), 'every value is a bf16 number');

  const b = await w.tensor('model.layers.3.self_attn.o_proj.weight');
  const other = await new DummyWeights(cfg, 1, BIG_CONFIG).tensor('model.layers.3.self_attn.kv_a_proj_with_mqa.weight');
  const corr = (x: Float32Array, y: Float32Array) => {
    let xy = 0;
    const n = Math.min(x.length, y.length, 1_000_000);
    for (let i = 0; i < n; i++) xy += x[i] * y[i];
    return xy / n / (0.02 * 0.02);
  };
  assert.ok(Math.abs(corr(a, b)) < 0.005, `tensors correlate: ${corr(a, b)}`);
  assert.ok(Math.abs(corr(a, other)) < 0.005, `seeds correlate: ${corr(a, other)}`);
  const again = await new DummyWeights(cfg, 0, BIG_CONFIG).tensor('model.layers.3.self_attn.kv_a_proj_with_mqa.weight');
  assert.deepEqual(again.subarray(0, 1000), a.subarray(0, 1000));
});

test('dummy norms are 1, KDA gates in fla ranges, the published config has 49,122,681,728 parameters', async () => {
  const w = new DummyWeights(await loadConfigFile(BIG_CONFIG), 0, BIG_CONFIG);
  assert.equal(w.parameters, 49_122_681_728);
  assert.ok((await w.tensor('model.norm.weight')).every((v) => v === 1));
  assert.ok((await w.tensor('model.layers.0.self_attn.o_norm.weight')).every((v) => v === 1));
  assert.ok((await w.tensor('model.layers.1.block_sparse_moe.gate.e_score_correction_bias')).every((v) => v === 0));
  const aLog = await w.tensor('model.layers.0.self_attn.A_log');
  assert.ok(aLog.every((v) => v >= 0 && v <= Math.log(16) + 1e-2), 'A_log = log U(1, 16)');
  const dt = Array.from(await w.tensor('model.layers.0.self_attn.dt_bias'), (v) => Math.log1p(Math.exp(v)));
  assert.ok(dt.every((v) => v > 9e-4 && v < 0.11), `softplus(dt_bias) in [1e-3, 1e-1]: ${Math.min(...dt)} … ${Math.max(...dt)}`);
  assert.equal(w.deviceFill('model.layers.0.self_attn.A_log'), null, 'gates are made on the host for every backend');
});

test('klc forward --load-format dummy: the reference and onnx backends give the same logits; bad options are user errors', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'klc-dummy-'));
  try {
    const ids = join(dir, 'ids.json');
    writeFileSync(ids, JSON.stringify([[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 300, 301, 302]]));
    const logits: Float32Array[] = [];
    for (const backend of ['reference', 'onnx']) {
      const out = join(dir, `${backend}.safetensors`);
      execFileSync(process.execPath, ['--import', 'tsx', join(ROOT, 'src', 'cli.ts'), 'forward', '--load-format', 'dummy', '--model-config', TINY_CONFIG,
        '--seed', '3', '--input-ids', ids, '--out', out, '--backend', backend, '--split', '6'], { stdio: ['ignore', 'ignore', 'pipe'] });
      const f = await SafetensorsFile.open(out);
      try {
        logits.push(await f.readF32('logits.0'));
      } finally {
        await f.close();
      }
    }
    const [r, o] = logits;
    assert.ok(r.some((v) => v !== 0));
    assert.ok(relError(o, r) < 1e-4, `onnx vs reference ${relError(o, r)}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const bad = spawnSync(process.execPath, ['--import', 'tsx', join(ROOT, 'src', 'cli.ts'), 'forward', '--load-format', 'dummy', '--input-ids', 'x', '--out', 'y'], { encoding: 'utf8' });
  assert.notEqual(bad.status, 0);
  assert.match(bad.stderr, /--load-format dummy needs --model-config/);
});
