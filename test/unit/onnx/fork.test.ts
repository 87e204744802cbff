/**
 * Copy-on-write forks on the onnx backend (OnnxBackend.forkState): a fork of a long state, a
 * source that keeps going after it was forked, and a fork of a fork each give the logits of an
 * independent state rebuilt from copies of the neutral arrays (on onnx) and of the reference
 * backend running the same tokens; a fork's private arrays do not grow with the shared prefix.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { loadModel, type Model } from '../../../src/engine/model/model';
import type { OnnxBackend } from '../../../src/engine/backends/onnx/backend';
import { LatentCache } from '../../../src/engine/state/latent-cache';
import type { SequenceState } from '../../../src/engine/state/types';
import { relError, TINY_DIR } from '../../golden/golden-data';

let onnx: Model;
let ref: Model;

before(async () => {
  onnx = await loadModel(TINY_DIR, { backend: 'onnx', log: () => {} });
  ref = await loadModel(TINY_DIR, { backend: 'reference' });
});

after(async () => {
  await onnx.dispose();
  await ref.dispose();
});

const tokens = (n: number, seed: number) => Int32Array.from({ length: n }, (_, i) => (i * 53 + seed * 131 + 7) % 1024);

/** An independent state with the same content: every neutral array copied, nothing shared. */
function copyOf(s: SequenceState): SequenceState {
  return {
    length: s.length,
    layers: s.layers.map((l) =>
      l.kind === 'kda' ? { kind: 'kda', conv: l.conv.slice(), S: l.S.slice() } : { kind: 'mla', cache: LatentCache.fromArray(l.cache.width, l.cache.toArray()) },
    ),
  };
}

/** A question on a state: a multi-token prompt (prefill), then two decode steps; every logit row. */
async function continueWith(m: Model, s: SequenceState, seed: number): Promise<Float32Array[]> {
  const out = [await m.prefill(s, tokens(23, seed), { logits: 'all' })];
  out.push(await m.decode(s, (seed * 17) % 1024));
  out.push(await m.decode(s, (seed * 29) % 1024));
  return out;
}

function assertSame(got: Float32Array[], want: Float32Array[], what: string, tol: number): void {
  assert.equal(got.length, want.length);
  got.forEach((g, i) => {
    assert.equal(g.length, want[i].length, `${what}, step ${i}: sizes`);
    assert.ok(relError(g, want[i]) < tol, `${what}, step ${i}: relative error ${relError(g, want[i])}`);
  });
}

async function longState(m: Model, n: number): Promise<SequenceState> {
  const s = m.newState();
  await m.prefill(s, tokens(n, 1), { logits: 'none' });
  return s;
}

test('forks of a long state continued with different tokens equal independent copies and the reference', async () => {
  const base = await longState(onnx, 700);
  const copies = [copyOf(base), copyOf(base)];
  const forks = [onnx.forkState(base), onnx.forkState(base)];
  const refBase = await longState(ref, 700);
  for (const [i, fork] of forks.entries()) {
    const got = await continueWith(onnx, fork, i + 2);
    assertSame(got, await continueWith(onnx, copies[i], i + 2), `fork ${i} vs a copy on onnx`, 1e-6);
    assertSame(got, await continueWith(ref, ref.forkState(refBase), i + 2), `fork ${i} vs the reference`, 1e-5);
  }
  // Two different continuations really differ, so the comparisons above can tell forks apart.
  const [a, b] = [await onnx.decode(onnx.forkState(base), 5), await onnx.decode(onnx.forkState(base), 6)];
  assert.ok(relError(a, b) > 1e-3);
});

test('a source that keeps going after the fork (in its room, then past it) does not change what the fork sees', async () => {
  const base = await longState(onnx, 300);
  const fork = onnx.forkState(base);
  const copy = copyOf(base);
  const want = await continueWith(onnx, copy, 4);
  const refBase = await longState(ref, 300);
  const refFork = ref.forkState(refBase);

  // The fork takes one step, the source appends rows right past the fork point, then the fork goes on.
  const got = [await onnx.prefill(fork, tokens(23, 4), { logits: 'all' })];
  await onnx.prefill(base, tokens(100, 9), { logits: 'none' });
  got.push(await onnx.decode(fork, (4 * 17) % 1024));
  await onnx.prefill(base, tokens(600, 10), { logits: 'none' });
  got.push(await onnx.decode(fork, (4 * 29) % 1024));
  assertSame(got, want, 'fork while its source appends', 1e-6);
  assertSame(got, await continueWith(ref, refFork, 4), 'fork vs the reference', 1e-5);

  // The source itself went on correctly.
  await ref.prefill(refBase, tokens(100, 9), { logits: 'none' });
  await ref.prefill(refBase, tokens(600, 10), { logits: 'none' });
  assertSame([await onnx.decode(base, 3)], [await ref.decode(refBase, 3)], 'source after the fork', 1e-5);
});

test('a fork of a fork: both continue independently, and the first fork keeps going after it was forked', async () => {
  const base = await longState(onnx, 500);
  const first = onnx.forkState(base);
  await onnx.prefill(first, tokens(40, 5), { logits: 'none' });
  const second = onnx.forkState(first);
  const third = onnx.forkState(second);
  const copies = [copyOf(first), copyOf(second), copyOf(third)];
  const got = [];
  for (const [i, s] of [first, second, third].entries()) got.push(await continueWith(onnx, s, 11 + i));
  for (const [i, c] of copies.entries()) assertSame(got[i], await continueWith(onnx, c, 11 + i), `fork level ${i + 1} vs a copy`, 1e-6);

  const refFirst = ref.forkState(await longState(ref, 500));
  await ref.prefill(refFirst, tokens(40, 5), { logits: 'none' });
  assertSame(got[2], await continueWith(ref, ref.forkState(ref.forkState(refFirst)), 13), 'fork of a fork of a fork vs the reference', 1e-5);
});

test('exportState then the host cache give a fork its whole cache: the shared prefix and its own rows', async () => {
  const base = await longState(onnx, 300);
  const fork = onnx.forkState(base);
  await onnx.prefill(fork, tokens(30, 6), { logits: 'none' });
  const refFork = ref.forkState(await longState(ref, 300));
  await ref.prefill(refFork, tokens(30, 6), { logits: 'none' });
  const layer = fork.layers.findIndex((l) => l.kind === 'mla');
  const ls = fork.layers[layer];
  const refLs = refFork.layers[layer];
  assert.ok(ls.kind === 'mla' && refLs.kind === 'mla');
  const rows = onnx.latentRows(fork, ls, 0, 330);
  assert.equal(rows.length, 330 * ls.cache.width);
  assert.ok(relError(rows, refLs.cache.rows(0, 330)) < 1e-5, `${relError(rows, refLs.cache.rows(0, 330))}`);
});

test("a fork's private arrays do not grow with the prefix it shares", async () => {
  const backend = onnx.backend as OnnxBackend;
  const width = onnx.config.mla.kvLoraRank + onnx.config.mla.qkRopeHeadDim;
  const mlaLayers = onnx.config.layers.filter((l) => l.attention === 'mla').length;
  const sizes = [];
  for (const n of [300, 1200]) {
    const base = await longState(onnx, n);
    const fork = onnx.forkState(base);
    const atFork = backend.stateBytes(fork);
    assert.equal(atFork.shared, n * width * 4 * mlaLayers, `the fork of ${n} tokens views all of its source's rows`);
    await onnx.prefill(fork, tokens(30, 8), { logits: 'none' });
    const afterQuestion = backend.stateBytes(fork);
    assert.equal(afterQuestion.shared, atFork.shared);
    const forkOfFork = backend.stateBytes(onnx.forkState(fork));
    assert.equal(forkOfFork.shared, atFork.shared, 'a fork of a fork shares the same prefix');
    sizes.push({ atFork: atFork.private, afterQuestion: afterQuestion.private, forkOfFork: forkOfFork.private, source: backend.stateBytes(base).private });
  }
  const [short, long] = sizes;
  assert.equal(long.atFork, short.atFork);
  assert.equal(long.afterQuestion, short.afterQuestion);
  assert.equal(long.forkOfFork, short.forkOfFork);
  // The source's own rows do grow with its length: the measure can tell.
  assert.ok(long.source >= short.source + 900 * width * 4 * mlaLayers);
});

test('releaseState drops a state but not the rows its forks share', async () => {
  const base = await longState(onnx, 300);
  const fork = onnx.forkState(base);
  const copy = copyOf(base);
  onnx.releaseState(base);
  assertSame(await continueWith(onnx, fork, 12), await continueWith(onnx, copy, 12), 'fork after its source was released', 1e-6);
});

test('forkPrefix takes the first rows of a held state (and of a fork of it) with a checkpoint KDA state', async () => {
  const base = await longState(onnx, 300);
  const at300 = copyOf(base);
  await onnx.prefill(base, tokens(200, 3), { logits: 'none' });
  const fork = onnx.forkState(base);
  await onnx.prefill(fork, tokens(20, 4), { logits: 'none' });
  const at520 = copyOf(fork);
  await onnx.prefill(fork, tokens(20, 5), { logits: 'none' });

  const cases: [string, SequenceState, number, SequenceState][] = [
    ['300 rows of the source', base, 300, at300],
    ['300 rows of a fork (inside its shared prefix)', fork, 300, at300],
    ['520 rows of a fork (its shared prefix and some of its own rows)', fork, 520, at520],
  ];
  for (const [what, from, n, kda] of cases) {
    const got = await continueWith(onnx, onnx.forkPrefix(from, n, copyOf(kda)), 14);
    assertSame(got, await continueWith(onnx, copyOf(kda), 14), what, 1e-6);
  }
});
