import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync, truncateSync, statSync, existsSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LatentCache } from '../../../../src/engine/state/latent-cache';
import { openStateFile, writeStateFile, StateFileError, StateFileWriter, shapeOf, hashIds, type StateKey } from '../../../../src/engine/state/state-file';
import { RepoStateStore } from '../../../../src/engine/state/repo-store';
import type { SequenceState } from '../../../../src/engine/state/types';
import { seededRandom } from '../../../../src/engine/sampler';

const key: StateKey = { modelId: 'm1', packerVersion: 'p1', tokenizerId: 't1' };
const W = 5;

function randomState(length: number, seed = 1): SequenceState {
  const r = seededRandom(seed);
  const fill = (n: number) => Float32Array.from({ length: n }, () => r() * 2 - 1);
  const cache = new LatentCache(W);
  cache.append(fill(length * W), length);
  return {
    length,
    layers: [
      { kind: 'kda', conv: fill(3 * 8 * 3), S: fill(2 * 4 * 4) },
      { kind: 'mla', cache },
    ],
  };
}

const tmp = () => mkdtempSync(join(tmpdir(), 'klc-state-'));
const idsOf = (n: number, salt = 0) => Int32Array.from({ length: n }, (_, i) => (i * 7 + salt) % 1000);

test('a state survives writing and reading bit for bit', async () => {
  const file = join(tmp(), 's.klcs');
  const state = randomState(5000);
  const ids = idsOf(5000);
  await writeStateFile(file, state, { key, ids });
  const f = await openStateFile(file);
  const back = await f.readState();
  const backIds = await f.readIds();
  await f.close();
  assert.equal(back.length, 5000);
  assert.deepEqual(backIds, ids);
  assert.equal(f.header.prefixHash, hashIds(ids));
  const [k0, m0] = state.layers;
  const [k1, m1] = back.layers;
  assert.ok(k0.kind === 'kda' && k1.kind === 'kda' && m0.kind === 'mla' && m1.kind === 'mla');
  assert.deepEqual(k1.conv, k0.conv);
  assert.deepEqual(k1.S, k0.S);
  assert.deepEqual(m1.cache.toArray(), m0.cache.toArray());
});

test('a flipped byte, a truncation and a foreign file are detected, never used', async () => {
  const dir = tmp();
  const file = join(dir, 's.klcs');
  await writeStateFile(file, randomState(300), { key, ids: idsOf(300) });
  const good = readFileSync(file);

  const flipped = Buffer.from(good);
  flipped[flipped.length - 10] ^= 0x40;
  writeFileSync(file, flipped);
  const f = await openStateFile(file);
  await assert.rejects(f.readState(), (e: unknown) => e instanceof StateFileError && /checksum mismatch in layer\.1\.latent\.0/.test((e as Error).message));
  await f.close();

  const badHeader = Buffer.from(good);
  badHeader[60] ^= 0x01;
  writeFileSync(file, badHeader);
  await assert.rejects(openStateFile(file), /header checksum mismatch/);

  writeFileSync(file, good);
  truncateSync(file, statSync(file).size - 3);
  await assert.rejects(openStateFile(file), /truncated or padded/);

  writeFileSync(file, 'hello, this is not a state file at all; not even close to one');
  await assert.rejects(openStateFile(file), /not a kimi-linear-code state file/);
});

test('writing replaces the file atomically and leaves no temp files', async () => {
  const dir = tmp();
  const file = join(dir, 's.klcs');
  await writeStateFile(file, randomState(10), { key, ids: idsOf(10) });
  await writeStateFile(file, randomState(20, 2), { key, ids: idsOf(20) });
  assert.deepEqual(readdirSync(dir), ['s.klcs']);
  const f = await openStateFile(file);
  assert.equal(f.header.length, 20);
  await f.close();
});

test('the store resumes from the whole snapshot when the new context extends it', async () => {
  const store = new RepoStateStore(tmp(), key);
  const ids = idsOf(100);
  await store.saveSnapshot(randomState(100), ids);
  const longer = Int32Array.from([...ids, 1, 2, 3]);
  const r = await store.resume(longer);
  assert.ok(r);
  assert.equal(r.from, 'snapshot');
  assert.equal(r.position, 100);
});

test('after an edit the store resumes from the last checkpoint before the first changed token', async () => {
  const store = new RepoStateStore(tmp(), key);
  const ids = idsOf(1000);
  const full = randomState(1000, 3);
  for (const p of [200, 500, 800]) {
    const at = randomState(p, p);
    await store.saveCheckpoint(at, ids);
  }
  await store.saveSnapshot(full, ids);
  const edited = Int32Array.from(ids);
  edited[650] = 999;
  const r = await store.resume(edited);
  assert.ok(r);
  assert.equal(r.from, 'checkpoint');
  assert.equal(r.position, 500);
  const kda = r.state.layers[0];
  const mla = r.state.layers[1];
  assert.ok(kda.kind === 'kda' && mla.kind === 'mla');
  const expectedKda = randomState(500, 500).layers[0];
  assert.ok(expectedKda.kind === 'kda');
  assert.deepEqual(kda.S, expectedKda.S, 'KDA parts come from the checkpoint');
  const snapMla = full.layers[1];
  assert.ok(snapMla.kind === 'mla');
  assert.equal(mla.cache.length, 500);
  assert.deepEqual(mla.cache.toArray(), snapMla.cache.toArray().subarray(0, 500 * W), 'MLA rows are the snapshot prefix');

  const early = Int32Array.from(ids);
  early[10] = 999;
  assert.equal(await store.resume(early), null, 'an edit before every checkpoint resumes from zero');
});

test('a checkpoint whose prefix differs from the new ids is not used', async () => {
  const store = new RepoStateStore(tmp(), key);
  const ids = idsOf(600);
  await store.saveCheckpoint(randomState(300), idsOf(600, 5));
  await store.saveSnapshot(randomState(600), ids);
  const edited = Int32Array.from(ids);
  edited[400] = 1;
  assert.equal(await store.resume(edited), null);
});

test('states of another model or packer, and corrupt snapshots, are reported and removed', async () => {
  const dir = tmp();
  const lines: string[] = [];
  const ids = idsOf(50);
  await new RepoStateStore(dir, { ...key, packerVersion: 'p0' }).saveSnapshot(randomState(50), ids);
  const store = new RepoStateStore(dir, key, (l) => lines.push(l));
  assert.equal(await store.resume(ids), null);
  assert.match(lines.join('\n'), /another model, tokenizer or packer version/);
  assert.equal(existsSync(store.snapshotPath), false);

  await store.saveSnapshot(randomState(50), ids);
  const bytes = readFileSync(store.snapshotPath);
  bytes[bytes.length - 1] ^= 0xff;
  writeFileSync(store.snapshotPath, bytes);
  lines.length = 0;
  assert.equal(await store.resume(ids), null);
  assert.match(lines.join('\n'), /checksum mismatch/);
  assert.equal(existsSync(store.snapshotPath), false);
});

test('a forked latent cache shares full pages and copies only the partial one', () => {
  const P = LatentCache.PAGE_TOKENS;
  const c = new LatentCache(2);
  c.append(Float32Array.from({ length: (P + 10) * 2 }, (_, i) => i));
  const f = c.fork();
  assert.ok(c.sharesPageWith(f, 0));
  assert.ok(!c.sharesPageWith(f, 1));
  f.append(Float32Array.from([-1, -2]));
  c.append(Float32Array.from([7, 8]));
  assert.equal(f.length, P + 11);
  assert.deepEqual(Array.from(f.row(P + 10)), [-1, -2]);
  assert.deepEqual(Array.from(c.row(P + 10)), [7, 8]);
  assert.deepEqual(Array.from(c.row(P + 9)), [(P + 9) * 2, (P + 9) * 2 + 1]);
});

test('a state streamed while it grows reads back as the finished state, and no row is read before it exists', async () => {
  const dir = tmp();
  const file = join(dir, 's.klcs');
  const final = randomState(10_000, 3);
  const finalRows = (final.layers[1] as { cache: LatentCache }).cache.toArray();
  const ids = idsOf(10_000);
  // The growing state: its MLA cache receives the final rows slice by slice, as a prefill appends them.
  const growing = new LatentCache(W);
  const state: SequenceState = { length: 0, layers: [{ kind: 'kda', conv: new Float32Array(72), S: new Float32Array(32) }, { kind: 'mla', cache: growing }] };
  const writer = await StateFileWriter.open(file, { ...shapeOf(state), length: 10_000 }, { key, ids });
  const reads: [number, number][] = [];
  const read = (layer: number, from: number, count: number) => {
    assert.equal(layer, 1);
    assert.ok(from + count <= growing.length, `rows ${from}..${from + count} read while only ${growing.length} exist`);
    reads.push([from, count]);
    return growing.rows(from, count);
  };
  for (const end of [3000, 4096, 9000, 10_000]) {
    growing.append(finalRows.subarray(state.length * W, end * W), end - state.length);
    state.length = end;
    await writer.putLatent(end, read);
  }
  // Blocks of 4096 rows, each read once, the last one shorter, written only when whole or final.
  assert.deepEqual(reads, [[0, 4096], [4096, 4096], [8192, 1808]]);
  assert.equal(existsSync(file), false, 'nothing replaces the target before commit');
  state.layers[0] = final.layers[0];
  await writer.commit(state, read);
  const f = await openStateFile(file);
  const back = await f.readState();
  assert.deepEqual(await f.readIds(), ids);
  await f.close();
  const [k, m] = back.layers;
  assert.ok(k.kind === 'kda' && m.kind === 'mla');
  assert.deepEqual(k.S, (final.layers[0] as { S: Float32Array }).S);
  assert.deepEqual(m.cache.toArray(), finalRows);
  assert.deepEqual(readdirSync(dir), ['s.klcs']);
});

test('an aborted stream leaves the previous file as it was and no temp file; an unfinished one cannot commit', async () => {
  const dir = tmp();
  const file = join(dir, 's.klcs');
  await writeStateFile(file, randomState(100), { key, ids: idsOf(100) });
  const before = readFileSync(file);
  const next = randomState(5000, 9);
  const read = (_: number, from: number, count: number) => (next.layers[1] as { cache: LatentCache }).cache.rows(from, count);
  const aborted = await StateFileWriter.open(file, shapeOf(next), { key, ids: idsOf(5000) });
  await aborted.putLatent(4096, read);
  await aborted.abort();
  assert.deepEqual(readFileSync(file), before);
  assert.deepEqual(readdirSync(dir), ['s.klcs']);

  const short = await StateFileWriter.open(file, shapeOf(next), { key, ids: idsOf(5000) });
  await assert.rejects(short.commit({ ...next, length: 4000 }, read), /4000 tokens, 5000 planned/);
  await short.abort();
  assert.deepEqual(readFileSync(file), before);
  assert.deepEqual(readdirSync(dir), ['s.klcs']);
});
