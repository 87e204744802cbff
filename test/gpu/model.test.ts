// Device-only: the whole model on the CUDA backend. Against transformers' goldens
// (../shared/golden/tiny-kimi-public, fp32 weights rounded to bf16 on upload): logits within 2e-2
// of the reference's scale. Against the reference backend on the bundled bf16 checkpoint: prefill
// logits, 64 greedy tokens, a continuation through an exported and re-imported state.
// Bundled and run by test/gpu/run-model.sh; skipped (with the reason) where no GPU is usable.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { join, resolve } from 'node:path';
import type { CudaBackend } from '../../src/engine/backends/cuda/backend';
import { loadCudaBackend } from '../../src/engine/backends/cuda/loader';
import { loadModel, type Model } from '../../src/engine/model/model';
import { SafetensorsFile } from '../../src/engine/model/safetensors';
import type { MlaLayerState, SequenceState } from '../../src/engine/state/types';
import { argmax, pickToken, seededRandom, type TokenPick } from '../../src/engine/sampler';
import { relError } from '../golden/golden-data';
import { promises as fs } from 'node:fs';
import { tmpdir } from 'node:os';
import { loadConfigFile } from '../../src/engine/model/config';
import { DummyWeights, normalValue } from '../../src/engine/model/dummy-weights';
import { openStateFile, writeStateFile } from '../../src/engine/state/state-file';
import { deviceSkip } from './device';
import { copyNeutral, forksAgainstCopies } from './fork-check';

const GOLDEN = resolve(process.env.KLC_GOLDEN_DIR ?? join(__dirname, '..', '..', 'shared', 'golden'));
const TINY_PUBLIC = join(GOLDEN, 'tiny-kimi-public');
const BUNDLED = resolve(process.env.KLC_TINY_MODEL ?? join(__dirname, '..', 'assets', 'tiny-model'));
const cuda = loadCudaBackend();
const skip = deviceSkip(cuda);

function report(line: string): void {
  process.stdout.write(`figure: ${line}\n`);
}

let gpu: Model;
let ref: Model;
let golden: SafetensorsFile;

before(async () => {
  if (skip) return;
  golden = await SafetensorsFile.open(join(TINY_PUBLIC, 'reference.safetensors'));
});

after(async () => {
  await golden?.close();
  await gpu?.dispose();
  await ref?.dispose();
});

test('the native library loads on a machine with a GPU', { skip }, () => {
  assert.ok(cuda.ok, cuda.ok ? '' : cuda.reason);
});

test('golden: tiny-kimi-public logits on the GPU within 2e-2 of transformers', { skip }, async () => {
  const m = await loadModel(TINY_PUBLIC, { backend: 'cuda' });
  try {
    assert.equal(m.backend.name, 'cuda');
    for (const n of [1, 5, 64, 65, 200]) {
      const ids = await golden.readInts(`input_ids.len${n}`);
      const logits = await m.prefill(m.newState(), ids, { logits: 'all' });
      const e = relError(logits, await golden.readF32(`logits.len${n}`));
      report(`golden logits len${n} relative error ${e.toExponential(2)}`);
      assert.ok(e < 2e-2, `len${n}: relative error ${e} ≥ 2e-2`);
    }
    // Greedy decoding, fed transformers' tokens so that one differing step cannot hide the rest:
    // every step's logits are within the same 2e-2, and the GPU's top token is transformers' own
    // unless transformers' logits for the two differ by less than that error (a near tie that
    // bf16 weights may flip).
    const ids = await golden.readInts('input_ids.greedy');
    const want = Array.from(await golden.readInts('generated_ids.greedy'));
    const wantLogits = await golden.readF32('logits.greedy');
    const V = m.config.vocabSize;
    const state = m.newState();
    let logits = await m.prefill(state, ids);
    let equal = 0;
    for (let i = 0; i < want.length; i++) {
      const ref = wantLogits.subarray(i * V, (i + 1) * V);
      const e = relError(logits, ref);
      assert.ok(e < 2e-2, `greedy step ${i}: relative error ${e} ≥ 2e-2`);
      const got = argmax(logits);
      if (got === want[i]) equal++;
      else {
        const scale = ref.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
        const margin = ref[want[i]] - ref[got];
        assert.ok(margin <= 2e-2 * scale, `greedy step ${i}: GPU picked ${got}, transformers ${want[i]} by a margin of ${margin} (${(margin / scale).toExponential(2)} of the scale), not a near tie`);
      }
      logits = await m.decode(state, want[i]);
    }
    report(`golden greedy: ${equal} of ${want.length} tokens equal to transformers' (the rest near ties)`);
  } finally {
    await m.dispose();
  }
});

test('bundled checkpoint: prefill logits equal the reference backend', { skip }, async () => {
  gpu = await loadModel(BUNDLED, { backend: 'cuda' });
  ref = await loadModel(BUNDLED, { backend: 'reference' });
  for (const T of [1, 7, 64, 65, 300]) {
    const ids = Int32Array.from({ length: T }, (_, i) => (i * 7919 + 13) % 3800);
    const a = await gpu.prefill(gpu.newState(), ids, { logits: 'all' });
    const b = await ref.prefill(ref.newState(), ids, { logits: 'all' });
    const e = relError(a, b);
    report(`bundled prefill T=${T} relative error vs reference ${e.toExponential(2)}`);
    assert.ok(e < 1e-4, `T=${T}: ${e}`);
  }
});

test('bundled checkpoint: 64 greedy tokens identical to the reference backend', { skip }, async () => {
  const prompt = Int32Array.from({ length: 40 }, (_, i) => (i * 104729 + 7) % 3800);
  const run = async (m: Model): Promise<{ tokens: number[]; last: Float32Array }> => {
    const s = m.newState();
    let logits = await m.prefill(s, prompt);
    const tokens: number[] = [];
    for (let i = 0; i < 64; i++) {
      tokens.push(argmax(logits));
      logits = await m.decode(s, tokens[i]);
    }
    return { tokens, last: logits };
  };
  let t0 = performance.now();
  const a = await run(gpu);
  const gpuMs = performance.now() - t0;
  t0 = performance.now();
  const b = await run(ref);
  report(`40-token prompt + 64 greedy tokens: cuda ${gpuMs.toFixed(0)} ms, reference ${(performance.now() - t0).toFixed(0)} ms`);
  report(`greedy tokens (cuda) ${a.tokens.join(' ')}`);
  assert.deepEqual(a.tokens, b.tokens);
  const e = relError(a.last, b.last);
  report(`logits after 64 decode steps relative error ${e.toExponential(2)}`);
  assert.ok(e < 1e-4);
});

test('bundled checkpoint: a split run through an exported state equals one pass, and the state matches the reference', { skip }, async () => {
  const ids = Int32Array.from({ length: 180 }, (_, i) => (i * 31337 + 5) % 3800);
  const whole = await gpu.prefill(gpu.newState(), ids, { logits: 'all' });
  const first = gpu.newState();
  await gpu.prefill(first, ids.subarray(0, 70), { logits: 'none' });
  gpu.backend.exportState(first);
  const refState = ref.newState();
  await ref.prefill(refState, ids.subarray(0, 70), { logits: 'none' });
  first.layers.forEach((l, i) => {
    const r = refState.layers[i];
    if (l.kind === 'kda' && r.kind === 'kda') {
      assert.ok(relError(l.S, r.S) < 1e-4, `layer ${i} S`);
      assert.ok(relError(l.conv, r.conv) < 1e-5, `layer ${i} conv`);
    } else if (l.kind === 'mla' && r.kind === 'mla') {
      assert.ok(relError(l.cache.toArray(), r.cache.toArray()) < 1e-5, `layer ${i} latents`);
    }
  });
  const restored = copyNeutral(first);
  gpu.backend.importState(restored);
  const rest = await gpu.prefill(restored, ids.subarray(70), { logits: 'all' });
  const V = gpu.config.vocabSize;
  const e = relError(rest, whole.subarray(70 * V));
  report(`split at 70 of 180: continuation relative error vs one pass ${e.toExponential(2)}`);
  assert.ok(e < 1e-5, `${e}`);
});

test('a token id outside the vocabulary is a user error, and the backend keeps working', { skip }, async () => {
  await assert.rejects(gpu.prefill(gpu.newState(), Int32Array.of(1, 999999)), /outside the model's vocabulary/);
  const again = await gpu.prefill(gpu.newState(), Int32Array.of(1, 2, 3));
  assert.equal(again.length, gpu.config.vocabSize);
});

/** Three states forked from one prefix and continued differently (lengths 40, 41, 43), plus an independent twin of each. */
async function forkedTriple(m: Model): Promise<{ batch: SequenceState[]; twins: SequenceState[] }> {
  const base = m.newState();
  await m.prefill(base, Int32Array.from({ length: 40 }, (_, i) => (i * 613 + 29) % 3800), { logits: 'none' });
  const batch: SequenceState[] = [];
  for (const ids of [[], [7], [12, 99, 401]]) {
    const s = m.forkState(base);
    for (const id of ids) await m.decode(s, id);
    batch.push(s);
  }
  return { batch, twins: batch.map((s) => m.forkState(s)) };
}

test('bundled checkpoint: decodeBatch of 3 sequences on the GPU equals 3 single decodes and the reference batch', { skip }, async () => {
  const { batch, twins } = await forkedTriple(gpu);
  const refStates = (await forkedTriple(ref)).batch;
  const V = gpu.config.vocabSize;
  let worst = 0;
  let worstRef = 0;
  for (const ids of [Int32Array.of(5, 17, 230), Int32Array.of(64, 3, 777), Int32Array.of(1, 2, 3)]) {
    const together = await gpu.decodeBatch(batch, ids);
    const reference = await ref.decodeBatch(refStates, ids);
    for (let i = 0; i < 3; i++) {
      const alone = await gpu.decode(twins[i], ids[i]);
      worst = Math.max(worst, relError(together.subarray(i * V, (i + 1) * V), alone));
    }
    worstRef = Math.max(worstRef, relError(together, reference));
  }
  report(`decodeBatch B=3 vs 3 decode calls: relative error ${worst.toExponential(2)}; vs the reference backend ${worstRef.toExponential(2)}`);
  assert.ok(worst < 1e-5, `batch vs single: ${worst}`);
  assert.ok(worstRef < 1e-4, `batch vs reference: ${worstRef}`);
  batch.forEach((s, i) => {
    gpu.backend.exportState(s);
    gpu.backend.exportState(twins[i]);
    s.layers.forEach((l, j) => {
      const t = twins[i].layers[j];
      if (l.kind === 'kda' && t.kind === 'kda') assert.ok(relError(l.S, t.S) < 1e-5, `sequence ${i} layer ${j} S`);
      else if (l.kind === 'mla' && t.kind === 'mla') assert.ok(relError(l.cache.toArray(), t.cache.toArray()) < 1e-6, `sequence ${i} layer ${j} latents`);
    });
  });
});

test('bundled checkpoint: decode steps replayed from CUDA graphs follow the reference backend across the 256-key re-plan', { skip }, async () => {
  // Lengths 229, 236 and 250 after prefill: 40 steps take each past 256, where the MLA split plan a
  // graph was recorded with runs out and the step is recorded again.
  const prompts = [229, 236, 250].map((n, k) => Int32Array.from({ length: n }, (_, i) => (i * 7919 + 31 * k + 5) % 3800));
  // One prefill after another: a backend runs one forward at a time.
  const start = async (m: Model) => {
    const states = [];
    for (const p of prompts) {
      const s = m.newState();
      await m.prefill(s, p, { logits: 'none' });
      states.push(s);
    }
    return states;
  };
  const onGpu = await start(gpu);
  const onRef = await start(ref);
  const V = gpu.config.vocabSize;
  const cb = gpu.backend as CudaBackend;
  const replaysBefore = cb.decodeGraphReplays;
  const graphsWere = cb.setDecodeGraphs(true);
  let ids = Int32Array.of(11, 22, 33);
  let worst = 0;
  try {
    for (let step = 0; step < 40; step++) {
      const a = await gpu.decodeBatch(onGpu, ids);
      const b = await ref.decodeBatch(onRef, ids);
      worst = Math.max(worst, relError(a, b));
      // The reference's greedy tokens feed both, so one near tie cannot make the runs part.
      ids = Int32Array.from([0, 1, 2], (i) => argmax(b.subarray(i * V, (i + 1) * V)));
    }
  } finally {
    cb.setDecodeGraphs(graphsWere);
  }
  const replays = cb.decodeGraphReplays - replaysBefore;
  report(`40 decode steps of 3 sequences across length 256: ${replays} replayed from CUDA graphs; logits vs the reference backend ${worst.toExponential(2)}`);
  assert.ok(worst < 1e-4, `graph-replayed decode vs reference: ${worst}`);
  // Two plain and two recorded steps at most (the start and the re-plan at 256): the rest replay.
  assert.ok(replays >= 36, `only ${replays} of 40 steps were replayed`);
  assert.deepEqual(onGpu.map((s) => s.length), [269, 276, 290]);
});

test('bundled checkpoint: tokens picked on the GPU equal pickToken on the downloaded logits over 24 steps', { skip }, async () => {
  assert.ok(gpu.backend.sampleRows, 'the CUDA backend samples on the device');
  const { batch, twins } = await forkedTriple(gpu);
  const V = gpu.config.vocabSize;
  const random = seededRandom(20261128);
  const settings = [
    { temperature: 0, topP: 1, topK: 0 },
    { temperature: 0.9, topP: 0.9, topK: 0 },
    { temperature: 1.2, topP: 1, topK: 40 },
  ];
  let ids: Int32Array = Int32Array.of(5, 17, 230);
  const picked: number[][] = [];
  for (let step = 0; step < 24; step++) {
    // The last sequence may only pick below 3000, as a tokenizer smaller than the embedding would.
    const picks: TokenPick[] = settings.map((s, i) => ({ ...s, vocab: i === 2 ? 3000 : V, uniform: random() }));
    const onDevice = await gpu.decodeAndPick(batch, ids, picks);
    const logits = await gpu.decodeBatch(twins, ids);
    const onHost = picks.map((p, i) => pickToken(logits.subarray(i * V, (i + 1) * V), p));
    assert.deepEqual([...onDevice], onHost, `step ${step}`);
    assert.ok(onDevice[2] < 3000);
    picked.push([...onDevice]);
    ids = onDevice;
  }
  report(`device sampling: 24 steps x 3 sequences equal to host picks; sampled row ids ${picked.map((p) => p[1]).join(' ')}`);
});

// ---- issue 10: dummy weights, copy-on-write forks, streamed state files -----------------------

const TINY_CONFIG = join(BUNDLED, 'config.json');
const BIG_CONFIG = resolve(process.env.KLC_BIG_CONFIG ?? join(__dirname, '..', 'assets', 'configs', 'kimi-linear-48b-a3b-instruct.json'));

test('dummy weights: the GPU fills the same bf16 values as the host generator (48B embedding, indices up to 3.8e8)', { skip }, async () => {
  if (!cuda.ok) return;
  const { native } = cuda;
  const cfg = await loadConfigFile(BIG_CONFIG);
  const w = new DummyWeights(cfg, 11, BIG_CONFIG);
  const fill = w.deviceFill('model.embed_tokens.weight')!;
  const n = cfg.vocabSize * cfg.hiddenSize;
  const ctx = native.create(0);
  try {
    const p = native.alloc(ctx, n * 2);
    native.fillNormalBf16(ctx, p, n, fill.key, fill.key2, fill.scale);
    const got = new Uint16Array(n);
    native.download(ctx, p, got);
    native.free(ctx, p);
    const f = new Float32Array(1);
    const u = new Uint32Array(f.buffer);
    let checked = 0;
    for (let i = 0; i < n; i += 997) {
      f[0] = normalValue(fill, i);
      assert.equal(got[i], u[0] >>> 16, `element ${i}`);
      checked++;
    }
    for (let i = n - 5000; i < n; i++) {
      f[0] = normalValue(fill, i);
      assert.equal(got[i], u[0] >>> 16, `element ${i}`);
    }
    report(`dummy fill: ${checked + 5000} of ${n} embedding values checked bit for bit against the host generator`);
  } finally {
    native.destroy(ctx);
  }
});

test('dummy weights: the tiny config on the GPU (exact mode) equals the reference backend', { skip }, async () => {
  const dummy = { configFile: TINY_CONFIG, seed: 5 };
  const g = await loadModel(TINY_CONFIG, { backend: 'cuda', dummy });
  const r = await loadModel(TINY_CONFIG, { backend: 'reference', dummy });
  try {
    const ids = Int32Array.from({ length: 150 }, (_, i) => (i * 7919 + 13) % 3800);
    const e = relError(await g.prefill(g.newState(), ids, { logits: 'all' }), await r.prefill(r.newState(), ids, { logits: 'all' }));
    report(`dummy tiny model, 150 tokens: cuda vs reference relative error ${e.toExponential(2)}`);
    assert.ok(e < 1e-4, `${e}`);
  } finally {
    await g.dispose();
    await r.dispose();
  }
});

/**
 * Forks of a long state (more rows than one 2 MiB granule of the tiny model's 320-byte latents)
 * against twins rebuilt from the host arrays (independent buffers): equal logits while the forks
 * and their source go on appending different tokens, with the virtual-memory path and without it.
 */
for (const vmm of ['1', '0']) {
  test(`copy-on-write forks (KLC_VMM=${vmm}) continue exactly like independent copies while their source goes on`, { skip }, async () => {
    process.env.KLC_VMM = vmm;
    try {
      const ids = Int32Array.from({ length: 14000 }, (_, i) => (i * 104729 + 7) % 3800);
      const prompt = Int32Array.from({ length: 300 }, (_, i) => (i * 17 + 1) % 3800);
      const worst = await forksAgainstCopies(gpu, ids, prompt);
      report(`forks of a 14000-token state (KLC_VMM=${vmm}): logits vs independent copies, relative error ${worst.toExponential(2)}`);
      assert.ok(worst < 1e-6, `${worst}`);
    } finally {
      delete process.env.KLC_VMM;
    }
  });
}

/**
 * klc_vbuf at the sizes a real repository has: the fork point falls inside a physical extent (the
 * driver maps only whole extents, so the library splits it), the source grows after the fork, and a
 * second fork at a later point splits again. Every byte is checked against the host's copy.
 */
test('klc_vbuf: forks whose point falls inside an extent share the rows below it, and source and forks then write apart', { skip }, () => {
  if (!cuda.ok) throw new Error(cuda.reason);
  const n = cuda.native;
  const ctx = n.create(0);
  const bufs: ReturnType<typeof n.vbufCreate>[] = [];
  try {
    const MB = 2 ** 20;
    const pattern = (bytes: number, salt: number) => Uint32Array.from({ length: bytes / 4 }, (_, i) => (Math.imul(i + 1, 2654435761) ^ salt) >>> 0);
    const read = (base: bigint, bytes: number) => {
      const out = new Uint32Array(bytes / 4);
      n.download(ctx, base, out);
      return out;
    };
    const equal = (a: Uint32Array, b: Uint32Array, what: string) => {
      assert.equal(a.length, b.length, what);
      const i = a.findIndex((v, k) => v !== b[k]);
      assert.equal(i, -1, `${what}: word ${i} differs`);
    };
    const src = n.vbufCreate(ctx);
    bufs.push(src);
    // Grown in steps as an ingest does, so that it holds several extents of different sizes.
    let base = 0n;
    for (let mb = 3; mb <= 45; mb += 7) base = n.vbufReserve(ctx, src, mb * MB, 0);
    const firstUsed = 9 * MB + 4096 * 3;
    const first = pattern(firstUsed, 1);
    n.upload(ctx, base, first);
    const fork1 = n.vbufFork(ctx, src, firstUsed);
    bufs.push(fork1.buf);
    equal(read(fork1.base, firstUsed), first, 'the first fork');
    // Both write past the fork point; the source grows its address range too.
    const tail1 = pattern(4 * MB, 2);
    const fork1Base = n.vbufReserve(ctx, fork1.buf, firstUsed + 4 * MB, firstUsed);
    n.upload(ctx, fork1Base + BigInt(firstUsed), tail1);
    const grown = pattern(30 * MB, 3);
    base = n.vbufReserve(ctx, src, 120 * MB, firstUsed);
    n.upload(ctx, base + BigInt(firstUsed), grown);
    equal(read(base, firstUsed), first, 'the source below the first fork point');
    equal(read(fork1Base + BigInt(firstUsed), 4 * MB), tail1, 'the first fork past its point, after the source wrote there');
    equal(read(fork1Base, firstUsed), first, 'the first fork below its point, after the source grew');
    const secondUsed = firstUsed + 30 * MB;
    const fork2 = n.vbufFork(ctx, src, secondUsed);
    bufs.push(fork2.buf);
    equal(read(fork2.base, firstUsed), first, 'the second fork, first part');
    equal(read(fork2.base + BigInt(firstUsed), 30 * MB), grown, 'the second fork, grown part');
    equal(read(base + BigInt(firstUsed), 30 * MB), grown, 'the source after the second split');
    equal(read(fork1Base + BigInt(firstUsed), 4 * MB), tail1, 'the first fork after the second split');
    report(`klc_vbuf forks at ${firstUsed} and ${secondUsed} bytes of a ${n.vbufBytes(src)}-byte buffer: every byte as written`);
  } finally {
    for (const b of bufs.reverse()) n.vbufFree(ctx, b);
    n.destroy(ctx);
  }
});

test('state files stream MLA rows from and back to the GPU: a continuation after restore equals one pass', { skip }, async () => {
  const ids = Int32Array.from({ length: 9000 }, (_, i) => (i * 613 + 29) % 3800);
  const whole = await gpu.prefill(gpu.newState(), ids, { logits: 'last', slice: 4096 });
  const first = gpu.newState();
  await gpu.prefill(first, ids.subarray(0, 8500), { logits: 'none', slice: 4096 });
  gpu.syncState(first);
  const dir = await fs.mkdtemp(join(tmpdir(), 'klc-gpu-state-'));
  try {
    const file = join(dir, 'state.klcs');
    await writeStateFile(file, first, { key: { modelId: 'gpu-test', packerVersion: '', tokenizerId: '' }, ids, latent: gpu.latentReader(first) });
    const mla = first.layers.find((l): l is MlaLayerState => l.kind === 'mla')!;
    assert.equal(mla.cache.length, 0, 'the rows went from the GPU to the file without a host copy of the cache');
    const opened = await openStateFile(file);
    let restored: SequenceState;
    try {
      restored = await opened.readState(undefined, (ls, rows, count) => gpu.appendLatentRows(ls, rows, count));
    } finally {
      await opened.close();
    }
    gpu.backend.importState(restored);
    const rest = await gpu.prefill(restored, ids.subarray(8500), { logits: 'last' });
    const e = relError(rest, whole);
    report(`streamed save/restore at 8500 of 9000 tokens: last logits relative error vs one pass ${e.toExponential(2)}`);
    assert.ok(e < 1e-5, `${e}`);
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test('forkPrefix: the first rows of a long device state with a checkpoint\'s KDA parts continue like a state computed to that point', { skip }, async () => {
  const ids = Int32Array.from({ length: 14000 }, (_, i) => (i * 7001 + 3) % 3800);
  const long = gpu.newState();
  await gpu.prefill(long, ids, { logits: 'none', slice: 4096 });
  const upTo = gpu.newState();
  await gpu.prefill(upTo, ids.subarray(0, 9001), { logits: 'none', slice: 4096 });
  gpu.syncState(upTo);
  const checkpoint = copyNeutral(upTo);
  const resumed = gpu.forkPrefix(long, 9001, checkpoint);
  const rest = Int32Array.from({ length: 500 }, (_, i) => (i * 13 + 5) % 3800);
  const e = relError(await gpu.prefill(resumed, rest), await gpu.prefill(upTo, rest));
  report(`forkPrefix at 9001 of a 14000-token state: continuation relative error ${e.toExponential(2)}`);
  assert.ok(e < 1e-6, `${e}`);
  for (const s of [long, upTo, resumed]) gpu.releaseState(s);
});
