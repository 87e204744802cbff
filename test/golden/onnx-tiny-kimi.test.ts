/**
 * The ONNX Runtime backend against transformers 5.17 on the golden tiny-kimi-public checkpoint:
 * the same cases and tolerance (1e-4 of the reference's largest magnitude, fp32) as
 * tiny-kimi.test.ts, plus `klc forward --backend onnx` in one pass and with --split.
 */
import { before, after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { loadModel, type Model } from '../../src/engine/model/model';
import { SafetensorsFile } from '../../src/engine/model/safetensors';
import type { KdaLayerState, MlaLayerState } from '../../src/engine/state/types';
import { relError, TINY_DIR } from './golden-data';

const TOL = 1e-4;
let model: Model;
let ref: SafetensorsFile;
const logged: string[] = [];

before(async () => {
  model = await loadModel(TINY_DIR, { backend: 'onnx', log: (l) => logged.push(l) });
  ref = await SafetensorsFile.open(join(TINY_DIR, 'reference.safetensors'));
});

after(async () => {
  await ref.close();
  await model.dispose();
});

function close(name: string, got: Float32Array, want: Float32Array): void {
  const e = relError(got, want);
  assert.ok(e < TOL, `${name}: relative error ${e.toExponential(2)} ≥ ${TOL}`);
}

test('the onnx backend loads and says which execution provider runs', () => {
  assert.equal(model.backend.name, 'onnx');
  assert.ok(logged.some((l) => /^backend onnx: (CPU|CUDA) execution provider \(.+\)$/.test(l)), logged.join('\n'));
});

for (const n of [1, 5, 64, 65, 200]) {
  test(`logits of a ${n}-token forward match at every position`, async () => {
    const ids = await ref.readInts(`input_ids.len${n}`);
    const logits = await model.prefill(model.newState(), ids, { logits: 'all' });
    close(`logits.len${n}`, logits, await ref.readF32(`logits.len${n}`));
  });
}

test('len200: per-layer outputs, router choices and end states match', async () => {
  const ids = await ref.readInts('input_ids.len200');
  const got = new Map<string, Float32Array>();
  const state = model.newState();
  await model.prefill(state, ids, { logits: 'none', capture: (name, t) => got.set(name, t) });
  const cfg = model.config;

  const compared: string[] = [];
  for (const [name, t] of got) {
    const refName = `${name}.len200`;
    if (!ref.header.tensors.has(refName)) continue;
    if (name.startsWith('router_idx.')) {
      assert.deepEqual(Array.from(t), Array.from(await ref.readInts(refName)), `${refName}: chosen experts differ`);
    } else {
      close(refName, t, await ref.readF32(refName));
    }
    compared.push(name);
  }
  const wanted = ['embed', 'final_norm', ...cfg.layers.flatMap((l, i) => [`attn_out.${i}`, `mlp_out.${i}`, `hidden.${i}`, ...(l.ffn === 'moe' ? [`router_logits.${i}`, `router_idx.${i}`, `router_w.${i}`] : [])])];
  assert.deepEqual(compared.sort(), wanted.sort(), 'every captured reference tensor was compared');

  assert.equal(state.length, 200);
  const { numHeads: H, headDim: K, convKernel: W } = cfg.kda;
  const P = 3 * H * K;
  for (const [i, ls] of state.layers.entries()) {
    if (ls.kind === 'kda') {
      close(`kda_state.${i}`, (ls as KdaLayerState).S, await ref.readF32(`kda_state.${i}.len200`));
      const full = await ref.readF32(`conv_state.${i}.len200`);
      const tail = new Float32Array(P * (W - 1));
      for (let c = 0; c < P; c++) tail.set(full.subarray(c * W + 1, (c + 1) * W), c * (W - 1));
      close(`conv_state.${i}`, (ls as KdaLayerState).conv, tail);
    } else {
      const { kvLoraRank: L, qkRopeHeadDim: r } = cfg.mla;
      const rows = (ls as MlaLayerState).cache.toArray();
      assert.equal(rows.length, 200 * (L + r));
      const kv = new Float32Array(200 * L);
      const krot = new Float32Array(200 * r);
      for (let t = 0; t < 200; t++) {
        kv.set(rows.subarray(t * (L + r), t * (L + r) + L), t * L);
        krot.set(rows.subarray(t * (L + r) + L, (t + 1) * (L + r)), t * r);
      }
      close(`mla_kv.${i}`, kv, await ref.readF32(`mla_kv.${i}.len200`));
      close(`mla_krot.${i}`, krot, await ref.readF32(`mla_krot.${i}.len200`));
    }
  }
});

test('b2x33: each sequence of the batch matches', async () => {
  const ids = await ref.readInts('input_ids.b2x33');
  const want = await ref.readF32('logits.b2x33');
  const V = model.config.vocabSize;
  for (let b = 0; b < 2; b++) {
    const logits = await model.prefill(model.newState(), ids.subarray(b * 33, (b + 1) * 33), { logits: 'all' });
    close(`logits.b2x33[${b}]`, logits, want.subarray(b * 33 * V, (b + 1) * 33 * V));
  }
});

test('cont: 70 tokens, then 50 more from the saved state, match both references', async () => {
  const ids = await ref.readInts('input_ids.cont');
  const full = await model.prefill(model.newState(), ids, { logits: 'all' });
  close('logits.cont.full', full, await ref.readF32('logits.cont.full'));

  const state = model.newState();
  await model.prefill(state, ids.subarray(0, 70), { logits: 'none' });
  const tail = await model.prefill(state, ids.subarray(70), { logits: 'all' });
  close('logits.cont.tail', tail, await ref.readF32('logits.cont.tail'));
  assert.equal(state.length, 120);
});

test('greedy: 16 decoded tokens are exactly the reference tokens', async () => {
  const prompt = await ref.readInts('input_ids.greedy');
  const wantIds = Array.from(await ref.readInts('generated_ids.greedy'));
  const wantLogits = await ref.readF32('logits.greedy');
  const V = model.config.vocabSize;
  const state = model.newState();
  let logits = await model.prefill(state, prompt, { logits: 'last' });
  const got: number[] = [];
  for (let s = 0; s < wantIds.length; s++) {
    close(`logits.greedy step ${s}`, logits, wantLogits.subarray(s * V, (s + 1) * V));
    let best = 0;
    for (let v = 1; v < V; v++) if (logits[v] > logits[best]) best = v;
    got.push(best);
    logits = await model.decode(state, wantIds[s]);
  }
  assert.deepEqual(got, wantIds);
});

const root = resolve(__dirname, '..', '..');

async function klcForward(ids: number[][], extra: string[]): Promise<Float32Array[]> {
  const dir = mkdtempSync(join(tmpdir(), 'klc-onnx-forward-'));
  writeFileSync(join(dir, 'ids.json'), JSON.stringify(ids));
  const r = spawnSync(
    process.execPath,
    ['--import', 'tsx', join(root, 'src', 'cli.ts'), 'forward', '--model', TINY_DIR, '--input-ids', join(dir, 'ids.json'), '--out', join(dir, 'out.safetensors'), '--backend', 'onnx', ...extra],
    { cwd: root, encoding: 'utf8' },
  );
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /\(onnx\)/);
  const out = await SafetensorsFile.open(join(dir, 'out.safetensors'));
  try {
    return await Promise.all(ids.map((_, i) => out.readF32(`logits.${i}`)));
  } finally {
    await out.close();
  }
}

test('klc forward --backend onnx, in one pass and with --split 70 through a saved state, gives the official logits', async () => {
  const ids = Array.from(await ref.readInts('input_ids.cont'));
  const full = await ref.readF32('logits.cont.full');
  const [oneShot] = await klcForward([ids], []);
  const [split] = await klcForward([ids], ['--split', '70']);
  close('one pass', oneShot, full);
  close('split', split, full);
  assert.ok(relError(split, oneShot) < 1e-5, `split vs one pass: ${relError(split, oneShot)}`);
});
