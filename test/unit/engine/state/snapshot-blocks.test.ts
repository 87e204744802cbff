/**
 * The repository store keeps MLA rows as content-addressed blocks in blocks/: a snapshot after an
 * edit near the end refers to the unchanged prefix's blocks and writes only the tail's. States
 * here come from a toy causal "model" (row t depends on ids[0..t] only), so the state of any ids
 * can be computed from scratch and compared with what the store restores; expected block names
 * are sha256 sums of those rows computed here, and expected counts are worked out from positions.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LatentCache } from '../../../../src/engine/state/latent-cache';
import { RepoStateStore } from '../../../../src/engine/state/repo-store';
import { openStateFile, shapeOf, writeStateFile, type LatentReader, type StateKey } from '../../../../src/engine/state/state-file';
import type { MlaLayerState, SequenceState } from '../../../../src/engine/state/types';
import { seededRandom } from '../../../../src/engine/sampler';

const key: StateKey = { modelId: 'm1', packerVersion: 'p1', tokenizerId: 't1' };
const W = 5;
const ROWS_PER_BLOCK = 4096;
const MLA = [1, 3];
const tmp = () => mkdtempSync(join(tmpdir(), 'klc-blocks-'));
const idsOf = (n: number, salt = 0) => Int32Array.from({ length: n }, (_, i) => (i * 7 + salt) % 1000);

/** Running hashes of the prefixes of `ids`: prefixHash[t] covers ids[0..t]. */
function prefixHashes(ids: ArrayLike<number>, length: number): number[] {
  const out: number[] = [];
  let h = 17;
  for (let t = 0; t < length; t++) {
    h = (Math.imul(h, 31) + ids[t] + 1) >>> 0;
    out.push(h);
  }
  return out;
}

/** The toy model's MLA rows of layer `layer` for the first `length` ids. */
function rowsOf(ids: ArrayLike<number>, length: number, layer: number): Float32Array {
  const rows = new Float32Array(length * W);
  prefixHashes(ids, length).forEach((h, t) => {
    const r = seededRandom(h ^ (layer * 7919));
    for (let j = 0; j < W; j++) rows[t * W + j] = r() * 2 - 1;
  });
  return rows;
}

/** The toy model's state after the first `length` ids, computed from scratch. */
function scratch(ids: ArrayLike<number>, length: number): SequenceState {
  const r = seededRandom(length === 0 ? 1 : prefixHashes(ids, length)[length - 1]);
  const fill = (n: number) => Float32Array.from({ length: n }, () => r() * 2 - 1);
  return {
    length,
    layers: [0, 1, 2, 3].map((i) => (MLA.includes(i) ? { kind: 'mla', cache: LatentCache.fromArray(W, rowsOf(ids, length, i)) } : { kind: 'kda', conv: fill(24), S: fill(16) })),
  };
}

const blocksDir = (store: RepoStateStore) => join(store.dir, 'blocks');

/** The block files with what tells a rewrite apart: inode and modification time. */
function listBlocks(store: RepoStateStore): Map<string, string> {
  const dir = blocksDir(store);
  if (!existsSync(dir)) return new Map();
  return new Map(readdirSync(dir).map((n) => {
    const st = statSync(join(dir, n), { bigint: true });
    return [n, `${st.ino}:${st.mtimeNs}`];
  }));
}

/** The name a block of these rows (f32) must have: the sha256 of their bytes. */
function blockName(rows: Float32Array): string {
  return `${createHash('sha256').update(Buffer.from(rows.buffer, rows.byteOffset, rows.byteLength)).digest('hex')}.blk`;
}

function assertSameState(actual: SequenceState, expected: SequenceState): void {
  assert.equal(actual.length, expected.length);
  actual.layers.forEach((l, i) => {
    const e = expected.layers[i];
    if (l.kind === 'kda' && e.kind === 'kda') {
      assert.deepEqual(l.conv, e.conv, `layer ${i} conv`);
      assert.deepEqual(l.S, e.S, `layer ${i} S`);
    } else if (l.kind === 'mla' && e.kind === 'mla') {
      assert.deepEqual(l.cache.toArray(), e.cache.toArray(), `layer ${i} rows`);
    } else {
      assert.fail(`layer ${i} is ${l.kind}, expected ${e.kind}`);
    }
  });
}

/** A reader of a state's host rows that records every call. */
function countingReader(state: SequenceState, calls: [number, number, number][]): LatentReader {
  return (layer, from, count) => {
    calls.push([layer, from, count]);
    return (state.layers[layer] as MlaLayerState).cache.rows(from, count);
  };
}

/** What an ingest does after a resume: compute the rest of `ids` onto the restored state, writing the snapshot as it goes. */
async function ingestRest(store: RepoStateStore, restored: SequenceState, ids: Int32Array, calls: [number, number, number][]): Promise<SequenceState> {
  const from = restored.length;
  const writer = await store.openSnapshot({ ...shapeOf(restored), length: ids.length }, ids, undefined, 'f32', from);
  const done = scratch(ids, ids.length);
  const state: SequenceState = { length: from, layers: restored.layers.map((l, i) => (l.kind === 'kda' ? done.layers[i] : l)) };
  const read = countingReader(state, calls);
  await writer.putLatent(from, read);
  for (const i of MLA) (state.layers[i] as MlaLayerState).cache.append(rowsOf(ids, ids.length, i).subarray(from * W), ids.length - from);
  state.length = ids.length;
  await writer.commit(state, read);
  return state;
}

/** A snapshot of 20,000 tokens (blocks of 4096: four full, one of 3616 rows, per MLA layer) with checkpoints. */
async function savedStore(lines: string[] = []): Promise<{ store: RepoStateStore; ids: Int32Array }> {
  const store = new RepoStateStore(tmp(), key, (l) => lines.push(l));
  const ids = idsOf(20_000);
  for (const p of [8000, 17_000]) await store.saveCheckpoint(scratch(ids, p), ids);
  await store.saveSnapshot(scratch(ids, 20_000), ids);
  return { store, ids };
}

/** `ids` up to `at`, then a different tail, `length` ids in all. */
function edited(ids: Int32Array, at: number, length: number): Int32Array {
  const out = idsOf(length, 3);
  out.set(ids.subarray(0, at));
  return out;
}

test('a resume after an edit near the end writes only the blocks from the edit on, reads no unchanged row, and restores the from-scratch state', async () => {
  const lines: string[] = [];
  const { store, ids } = await savedStore(lines);
  const before = listBlocks(store);
  assert.equal(before.size, 2 * 5, 'five blocks per MLA layer');

  const next = edited(ids, 17_500, 20_300);
  const r = await store.resume(next);
  assert.ok(r);
  assert.equal(r.from, 'checkpoint');
  assert.equal(r.position, 17_000);
  const calls: [number, number, number][] = [];
  lines.length = 0;
  await ingestRest(store, r.state, next, calls);

  // Full blocks wholly below 17,000: floor(17000 / 4096) = 4, rows [0, 16384). The rest, rows
  // [16384, 20300), is one block of 3916 rows per layer, read once each, and nothing else is read.
  assert.deepEqual(calls, [[1, 16_384, 3916], [3, 16_384, 3916]]);
  const after = listBlocks(store);
  const created = [...after.keys()].filter((n) => !before.has(n)).sort();
  const removed = [...before.keys()].filter((n) => !after.has(n)).sort();
  assert.deepEqual(created, MLA.map((i) => blockName(rowsOf(next, 20_300, i).subarray(16_384 * W))).sort(), 'the new tail blocks, one per layer');
  assert.deepEqual(removed, MLA.map((i) => blockName(rowsOf(ids, 20_000, i).subarray(16_384 * W))).sort(), 'the old partial blocks, no longer referred to');
  for (const [name, identity] of after) if (before.has(name)) assert.equal(identity, before.get(name), `${name} is not rewritten`);
  assert.equal(after.size, 10);
  assert.match(lines.join('\n'), /state: snapshot written: 2 blocks \(0\.2 MB\) new, 8 reused/);

  const back = await new RepoStateStore(store.dir, key).resume(next);
  assert.ok(back);
  assert.equal(back.from, 'snapshot');
  assertSameState(back.state, scratch(next, 20_300));
});

test('an edit in the second block keeps only the first: every later block is read and written', async () => {
  const { store, ids } = await savedStore();
  const next = edited(ids, 8500, 20_000);
  const r = await store.resume(next);
  assert.ok(r);
  assert.equal(r.position, 8000);
  const calls: [number, number, number][] = [];
  await ingestRest(store, r.state, next, calls);
  // floor(8000 / 4096) = 1 block kept per layer; blocks 1..4 of each are read.
  assert.deepEqual(calls.map((c) => c.slice(1)), [[4096, 4096], [8192, 4096], [12_288, 4096], [16_384, 3616], [4096, 4096], [8192, 4096], [12_288, 4096], [16_384, 3616]]);
  assertSameState((await new RepoStateStore(store.dir, key).resume(next))!.state, scratch(next, 20_000));
});

test('a missing or corrupt block makes the saved state unusable: reported, removed, never used, no crash', async () => {
  for (const damage of ['missing', 'corrupt'] as const) {
    const lines: string[] = [];
    const { store, ids } = await savedStore(lines);
    const name = blockName(rowsOf(ids, 20_000, 3).subarray(4096 * W, 8192 * W));
    const file = join(blocksDir(store), name);
    if (damage === 'missing') rmSync(file);
    else {
      const bytes = readFileSync(file);
      bytes[100] ^= 0x20;
      writeFileSync(file, bytes);
    }
    lines.length = 0;
    assert.equal(await store.resume(ids), null, damage);
    const expected = damage === 'missing' ? `block ${file} of layer.3.latent.1 is missing` : `checksum mismatch in layer.3.latent.1 (block ${file})`;
    assert.ok(lines.some((l) => l.includes(expected) && l.includes('unusable')), `${damage}: ${lines.join('\n')}`);
    assert.equal(existsSync(store.snapshotPath), false);
    assert.deepEqual(await store.checkpointPositions(), []);
  }
});

test('a failed or cancelled snapshot leaves the previous one readable with all its blocks, and its own new blocks go', async () => {
  const { store, ids } = await savedStore();
  const before = listBlocks(store);
  const next = edited(ids, 17_500, 30_000);
  const r = await store.resume(next);
  assert.ok(r);

  // Cancelled after writing some of its blocks.
  const cancelled = await store.openSnapshot({ ...shapeOf(r.state), length: next.length }, next, undefined, 'f32', r.position);
  const full = scratch(next, next.length);
  await cancelled.putLatent(next.length, countingReader(full, []));
  // Blocks are stored in the background as they are put: wait until some are there.
  for (let i = 0; i < 200 && listBlocks(store).size === before.size; i++) await new Promise((r) => setTimeout(r, 10));
  assert.ok(listBlocks(store).size > before.size, 'new blocks were stored before the commit');
  await cancelled.abort();
  assert.deepEqual(listBlocks(store), before);

  // Failed: the reader breaks in the middle of the commit.
  const failing = await store.openSnapshot({ ...shapeOf(r.state), length: next.length }, next, undefined, 'f32', r.position);
  let reads = 0;
  const breaking: LatentReader = (layer, from, count) => {
    if (++reads === 3) throw new Error('device lost');
    return (full.layers[layer] as MlaLayerState).cache.rows(from, count);
  };
  await assert.rejects(failing.commit(full, breaking), /device lost/);
  await failing.abort();
  assert.deepEqual(listBlocks(store), before);

  const back = await new RepoStateStore(store.dir, key).resume(ids);
  assert.ok(back);
  assert.equal(back.from, 'snapshot');
  assertSameState(back.state, scratch(ids, 20_000));
});

test('collection removes only blocks no snapshot refers to, and none that an open state file still reads', async () => {
  const lines: string[] = [];
  const { store, ids } = await savedStore(lines);
  const oldBlocks = [...listBlocks(store).keys()];
  const stray = `${'f'.repeat(64)}.blk`;
  writeFileSync(join(blocksDir(store), stray), 'left by a crash');
  writeFileSync(join(blocksDir(store), 'notes.txt'), 'not a block');

  const reader = await openStateFile(store.snapshotPath);
  const other = idsOf(9000, 5);
  await store.saveSnapshot(scratch(other, 9000), other);
  const newBlocks = MLA.flatMap((i) => [0, 1, 2].map((b) => blockName(rowsOf(other, 9000, i).subarray(b * ROWS_PER_BLOCK * W, Math.min(9000, (b + 1) * ROWS_PER_BLOCK) * W))));
  let names = readdirSync(blocksDir(store)).sort();
  assert.deepEqual(names, [...new Set([...oldBlocks, ...newBlocks, 'notes.txt'])].sort(), 'the stray block went; the open reader keeps the old ones');
  assertSameState(await reader.readState(), scratch(ids, 20_000));
  await reader.close();

  await store.saveSnapshot(scratch(other, 9000), other);
  names = readdirSync(blocksDir(store)).sort();
  assert.deepEqual(names, [...newBlocks, 'notes.txt'].sort(), 'once closed, the old blocks go at the next commit');
  assert.match(lines.join('\n'), /state: snapshot written: 0 blocks \(0\.0 MB\) new, 6 reused, .*; 10 blocks no longer used removed/);
  assertSameState((await store.resume(other))!.state, scratch(other, 9000));
});

test('a snapshot saved before blocks existed (version 2, every row in the file) still resumes, and the next one writes every block', async () => {
  const store = new RepoStateStore(tmp(), key);
  const ids = idsOf(10_000);
  await store.saveCheckpoint(scratch(ids, 9000), ids);
  await writeStateFile(store.snapshotPath, scratch(ids, 10_000), { key, ids });
  const bytes = readFileSync(store.snapshotPath);
  bytes.writeUInt32LE(2, 8);
  writeFileSync(store.snapshotPath, bytes);

  const next = edited(ids, 9500, 10_100);
  const r = await store.resume(next);
  assert.ok(r);
  assert.equal(r.position, 9000);
  const calls: [number, number, number][] = [];
  await ingestRest(store, r.state, next, calls);
  // Nothing to refer to: blocks 0 and 1 of each layer are read as the resumed rows are put, block 2 (1908 rows) at the commit.
  assert.deepEqual(calls, [...MLA.flatMap((i) => [[i, 0, 4096], [i, 4096, 4096]]), ...MLA.map((i) => [i, 8192, 1908])]);
  assert.equal(listBlocks(store).size, 6);
  assert.equal(readFileSync(store.snapshotPath).readUInt32LE(8), 3);
  assertSameState((await new RepoStateStore(store.dir, key).resume(next))!.state, scratch(next, 10_100));
});
