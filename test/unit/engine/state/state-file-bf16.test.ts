/**
 * State files with bf16 MLA rows (added in format version 2): what the CUDA backend writes in tensor-core
 * mode. Rounding is checked against a round-to-nearest-even worked out here in float64 arithmetic
 * (not the bit trick the writer uses), with hand-picked ties; fp32 and bf16 files of the same
 * state restore alike on the host; damage and version mismatches are refused with a clear error.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { LatentCache } from '../../../../src/engine/state/latent-cache';
import { openStateFile, writeStateFile, StateFileError, StateFileWriter, shapeOf, type StateKey } from '../../../../src/engine/state/state-file';
import type { MlaLayerState, SequenceState } from '../../../../src/engine/state/types';
import { seededRandom } from '../../../../src/engine/sampler';

const key: StateKey = { modelId: 'm1', packerVersion: 'p1', tokenizerId: 't1' };
const W = 6;
const tmp = () => mkdtempSync(join(tmpdir(), 'klc-state-bf16-'));
const idsOf = (n: number) => Int32Array.from({ length: n }, (_, i) => (i * 11) % 977);

/** bf16 round-to-nearest-even of an fp32 value in float64 arithmetic: the nearest multiple of the bf16 step at x's binade, ties to an even multiple. */
function bf16Nearest(x: number): number {
  if (x === 0 || !Number.isFinite(x)) return x;
  const step = 2 ** (Math.floor(Math.log2(Math.abs(x))) - 7);
  const q = x / step;
  const lo = Math.floor(q);
  const frac = q - lo;
  const k = frac > 0.5 || (frac === 0.5 && lo % 2 !== 0) ? lo + 1 : lo;
  return k * step;
}

// Ties between neighbouring bf16 values of [1, 2) (step 2^-7) and what nearest-even keeps.
const TIES: [number, number][] = [
  [1 + 2 ** -8, 1], // between 1 (even) and 1 + 2^-7 (odd)
  [1 + 3 * 2 ** -8, 1 + 2 ** -6], // between 1 + 2^-7 (odd) and 1 + 2^-6 (even)
  [-(1 + 2 ** -8), -1],
  [1 + 2 ** -8 + 2 ** -20, 1 + 2 ** -7], // just above the tie rounds up
];

function stateWith(rows: Float32Array, length: number, seed = 3): SequenceState {
  const r = seededRandom(seed);
  const fill = (n: number) => Float32Array.from({ length: n }, () => r() * 2 - 1);
  const cache = new LatentCache(W);
  cache.append(rows, length);
  return { length, layers: [{ kind: 'kda', conv: fill(12), S: fill(16) }, { kind: 'mla', cache }] };
}

function randomRows(length: number, seed = 9): Float32Array {
  const r = seededRandom(seed);
  const rows = Float32Array.from({ length: length * W }, () => (r() * 2 - 1) * 2 ** Math.floor(r() * 20 - 10));
  TIES.forEach(([x], i) => (rows[i] = x));
  return rows;
}

const mlaRows = (s: SequenceState) => (s.layers[1] as MlaLayerState).cache.toArray();

test('bf16 rows: a file keeps each value rounded to nearest even, KDA parts exact, and reads back widened', async () => {
  const length = 9000; // three blocks of up to 4096 rows
  const rows = randomRows(length);
  const state = stateWith(rows, length);
  const file = join(tmp(), 's.klcs');
  await writeStateFile(file, state, { key, ids: idsOf(length), latentDtype: 'bf16' });
  const f = await openStateFile(file);
  const back = await f.readState();
  await f.close();
  assert.deepEqual(f.header.segments.filter((s) => s.name.includes('latent')).map((s) => s.dtype), ['bf16', 'bf16', 'bf16']);
  const got = mlaRows(back);
  assert.equal(got.length, rows.length);
  for (let i = 0; i < rows.length; i++) if (got[i] !== bf16Nearest(rows[i])) assert.fail(`row value ${i}: ${rows[i]} read back as ${got[i]}, nearest even bf16 is ${bf16Nearest(rows[i])}`);
  for (const [i, [, want]] of TIES.entries()) assert.equal(got[i], want, `tie ${TIES[i][0]}`);
  const [k0, k1] = [state.layers[0], back.layers[0]];
  assert.ok(k0.kind === 'kda' && k1.kind === 'kda');
  assert.deepEqual(k1.S, k0.S);
  assert.deepEqual(k1.conv, k0.conv);
});

test('bf16 rows take half the bytes of fp32 ones, and both files of bf16 values restore the same state', async () => {
  const length = 5000;
  const rows = Float32Array.from(randomRows(length), bf16Nearest);
  const state = stateWith(rows, length);
  const dir = tmp();
  const f32File = join(dir, 'f32.klcs');
  const bf16File = join(dir, 'bf16.klcs');
  await writeStateFile(f32File, state, { key, ids: idsOf(length) });
  await writeStateFile(bf16File, state, { key, ids: idsOf(length), latentDtype: 'bf16' });
  const read = async (file: string) => {
    const f = await openStateFile(file);
    try {
      // The segment area: the file less the 48-byte preamble and the header (its length is at byte 12).
      return { state: await f.readState(), dataBytes: statSync(file).size - 48 - readFileSync(file).readUInt32LE(12) };
    } finally {
      await f.close();
    }
  };
  const a = await read(f32File);
  const b = await read(bf16File);
  assert.deepEqual(mlaRows(b.state), rows);
  assert.deepEqual(mlaRows(a.state), rows);
  // Ids 5000 × 4 + KDA (12 + 16) × 4 = 20,112 bytes either way; latents 5000 × 6 × 4 = 120,000 or × 2 = 60,000.
  assert.equal(a.dataBytes, 140_112);
  assert.equal(b.dataBytes, 80_112);
});

/** The fp32 value of bf16 bits, by placing them in the top half of a float32 (not the engine's fromBf16). */
const widen = (bits: number) => new Float32Array(Uint32Array.of(bits * 65536).buffer)[0];

test('a streamed bf16 snapshot sends its rows to a sink as bf16 bits (not widened), block by block, and reads a prefix', async () => {
  const length = 4100;
  const rows = randomRows(length, 4);
  const state = stateWith(rows, length);
  const file = join(tmp(), 's.klcs');
  const w = await StateFileWriter.open(file, shapeOf(state), { key, ids: idsOf(length), latentDtype: 'bf16' });
  const read = (_layer: number, from: number, count: number) => rows.slice(from * W, (from + count) * W);
  await w.putLatent(4096, read);
  await w.commit(state, read);
  const f = await openStateFile(file);
  const blocks: number[] = [];
  const got: number[] = [];
  await f.readState(4098, (_ls, block, count) => {
    blocks.push(count);
    assert.ok(block instanceof Uint16Array, `a bf16 block reaches the sink as bits, got a ${block.constructor.name}`);
    assert.equal(block.length, count * W);
    got.push(...Array.from(block, widen));
  });
  await f.close();
  assert.deepEqual(blocks, [4096, 2]);
  assert.deepEqual(got, Array.from(rows.subarray(0, 4098 * W), bf16Nearest));
});

test('a reader that gives bf16 bits writes the same bf16 file as one that gives fp32 values, and an fp32 file of the widened bits', async () => {
  const length = 5000;
  const rows = Float32Array.from(randomRows(length, 6), bf16Nearest);
  const bits = Uint16Array.from(rows, (x) => new Uint32Array(Float32Array.of(x).buffer)[0] >>> 16);
  const state = stateWith(rows, length);
  const dir = tmp();
  const write = async (name: string, dtype: 'f32' | 'bf16', give: 'f32' | 'bits') => {
    const file = join(dir, name);
    const latent = (_layer: number, from: number, count: number) => (give === 'bits' ? bits : rows).slice(from * W, (from + count) * W);
    await writeStateFile(file, state, { key, ids: idsOf(length), latentDtype: dtype, latent });
    return readFileSync(file);
  };
  const fromValues = await write('values.klcs', 'bf16', 'f32');
  const fromBits = await write('bits.klcs', 'bf16', 'bits');
  assert.ok(fromBits.equals(fromValues), 'bf16 files from bits and from values differ');
  const widened = await write('f32.klcs', 'f32', 'bits');
  const f = await openStateFile(join(dir, 'f32.klcs'));
  const restored = await f.readState();
  await f.close();
  assert.deepEqual(Array.from(mlaRows(restored)), Array.from(rows));
  assert.ok(widened.length > fromBits.length);
});

test('damaged bf16 files are refused with the reason: a flipped byte, a truncation, an odd byte count', async () => {
  const dir = tmp();
  const file = join(dir, 's.klcs');
  await writeStateFile(file, stateWith(randomRows(300), 300), { key, ids: idsOf(300), latentDtype: 'bf16' });
  const good = readFileSync(file);

  const flipped = Buffer.from(good);
  flipped[flipped.length - 7] ^= 0x10;
  writeFileSync(file, flipped);
  const f = await openStateFile(file);
  await assert.rejects(f.readState(), (e: unknown) => e instanceof StateFileError && /checksum mismatch in layer\.1\.latent\.0/.test((e as Error).message));
  await f.close();

  writeFileSync(file, good);
  truncateSync(file, good.length - 2);
  await assert.rejects(openStateFile(file), (e: unknown) => e instanceof StateFileError && /size \d+ bytes, expected \d+ \(truncated or padded\)/.test((e as Error).message));
  writeFileSync(file, Buffer.concat([good, Buffer.from([0])]));
  await assert.rejects(openStateFile(file), /truncated or padded/);
});

/** The file with its preamble's version set to `version` (the header and its checksum stay valid). */
function withVersion(bytes: Buffer, version: number): Buffer {
  const out = Buffer.from(bytes);
  out.writeUInt32LE(version, 8);
  return out;
}

test('format versions: version 1 and 2 files (every segment in the file) still read; a version 1 file cannot hold bf16; later versions are refused', async () => {
  const dir = tmp();
  const f32 = join(dir, 'f32.klcs');
  const bf16 = join(dir, 'bf16.klcs');
  const rows = randomRows(200);
  await writeStateFile(f32, stateWith(rows, 200), { key, ids: idsOf(200) });
  await writeStateFile(bf16, stateWith(rows, 200), { key, ids: idsOf(200), latentDtype: 'bf16' });
  assert.equal(readFileSync(f32).readUInt32LE(8), 3);

  for (const version of [1, 2]) {
    writeFileSync(f32, withVersion(readFileSync(f32), version));
    const old = await openStateFile(f32);
    assert.deepEqual(mlaRows(await old.readState()), rows, `version ${version}`);
    await old.close();
  }

  const bf16Bytes = readFileSync(bf16);
  writeFileSync(bf16, withVersion(bf16Bytes, 2));
  const v2 = await openStateFile(bf16);
  assert.deepEqual(mlaRows(await v2.readState()), Float32Array.from(rows, bf16Nearest));
  await v2.close();

  writeFileSync(bf16, withVersion(bf16Bytes, 1));
  await assert.rejects(openStateFile(bf16), (e: unknown) => e instanceof StateFileError && /segment layer\.1\.latent\.0 has dtype bf16, which format version 1 does not hold/.test((e as Error).message));

  writeFileSync(bf16, withVersion(bf16Bytes, 4));
  await assert.rejects(openStateFile(bf16), /format version 4, this version reads 1, 2 and 3/);
});

test('a header naming an unknown segment type is refused before any segment is read', async () => {
  const file = join(tmp(), 's.klcs');
  await writeStateFile(file, stateWith(randomRows(10), 10), { key, ids: idsOf(10), latentDtype: 'bf16' });
  const bytes = readFileSync(file);
  const hlen = bytes.readUInt32LE(12);
  // Same length, so the segment layout stays put: "bf16" → "fp16", with the header checksum redone.
  const header = Buffer.from(bytes.subarray(48, 48 + hlen).toString('utf8').replace('"dtype":"bf16"', '"dtype":"fp16"'), 'utf8');
  assert.equal(header.length, hlen);
  const out = Buffer.from(bytes);
  header.copy(out, 48);
  createHash('sha256').update(header).digest().copy(out, 16);
  writeFileSync(file, out);
  await assert.rejects(openStateFile(file), /segment layer\.1\.latent\.0 has dtype fp16, which format version 3 does not hold/);
});
