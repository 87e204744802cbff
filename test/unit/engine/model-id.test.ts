/**
 * Model identity for state keys: the same folder gives the same id; another path, a changed
 * config or any changed weight byte (same size, same header) gives another; digests are reused
 * while a file's path, size, mtime and inode stay the same.
 */
import { test } from 'node:test';
import { createHash } from 'node:crypto';
import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bundledModelDir } from '../../../src/common/package-root';
import { identifyModel } from '../../../src/engine/model-id';

function copyModel(parent: string, name: string): string {
  const dir = join(parent, name);
  cpSync(bundledModelDir(), dir, { recursive: true });
  return dir;
}

/** Flips one byte well inside the tensor data (past the header) and gives the file another mtime. */
function flipWeightByte(file: string, mtime: Date): void {
  const bytes = readFileSync(file);
  const headerEnd = 8 + Number(bytes.readBigUInt64LE(0));
  const at = headerEnd + Math.floor((bytes.length - headerEnd) / 2);
  bytes[at] ^= 0x01;
  writeFileSync(file, bytes);
  utimesSync(file, mtime, mtime);
}

test('the identity follows the model path, the config and every weight byte', async () => {
  const parent = mkdtempSync(join(tmpdir(), 'klc-model-id-'));
  try {
    const a = copyModel(parent, 'a');
    const b = copyModel(parent, 'b');
    const first = await identifyModel({ kind: 'checkpoint', dir: a });
    assert.match(first.id, /^[0-9a-f]{32}$/);
    assert.ok(first.parameters > 0);
    assert.equal((await identifyModel({ kind: 'checkpoint', dir: a })).id, first.id, 'same folder, same id');
    assert.notEqual((await identifyModel({ kind: 'checkpoint', dir: b })).id, first.id, 'same files at another path');

    const weights = join(a, 'model.safetensors');
    const size = statSync(weights).size;
    flipWeightByte(weights, new Date('2030-01-01T00:00:00Z'));
    assert.equal(statSync(weights).size, size);
    const flipped = await identifyModel({ kind: 'checkpoint', dir: a });
    assert.notEqual(flipped.id, first.id, 'one weight byte changed, same size and header');
    assert.equal(flipped.parameters, first.parameters);

    const config = join(b, 'config.json');
    const before = (await identifyModel({ kind: 'checkpoint', dir: b })).id;
    writeFileSync(config, readFileSync(config, 'utf8').replace(/\}\s*$/, ', "note": 1}\n'));
    assert.notEqual((await identifyModel({ kind: 'checkpoint', dir: b })).id, before, 'config changed');
  } finally {
    rmSync(parent, { recursive: true, force: true });
  }
});

test('weight digests are remembered by path, size, mtime and inode', async () => {
  const parent = mkdtempSync(join(tmpdir(), 'klc-model-id-'));
  try {
    const a = copyModel(parent, 'a');
    const digestCache = join(parent, 'cache', 'weight-digests.json');
    const weights = join(a, 'model.safetensors');
    const mtime = new Date('2029-06-01T00:00:00Z');
    utimesSync(weights, mtime, mtime);
    const first = await identifyModel({ kind: 'checkpoint', dir: a }, { digestCache });
    assert.ok(existsSync(digestCache));
    const remembered = JSON.parse(readFileSync(digestCache, 'utf8')) as Record<string, { sha256: string }>;
    assert.deepEqual(Object.keys(remembered).map((p) => p.endsWith('model.safetensors')), [true]);
    // The remembered digest is the file's SHA-256 (computed in a worker thread by the engine, here directly).
    assert.equal(Object.values(remembered)[0].sha256, createHash('sha256').update(readFileSync(weights)).digest('hex'));

    // A byte changed behind the file's back (same size, mtime and inode) is not seen: the
    // remembered digest is used, which is the point of remembering it.
    flipWeightByte(weights, mtime);
    assert.equal((await identifyModel({ kind: 'checkpoint', dir: a }, { digestCache })).id, first.id);
    // A new mtime makes it hash the file again.
    utimesSync(weights, new Date('2029-06-02T00:00:00Z'), new Date('2029-06-02T00:00:00Z'));
    assert.notEqual((await identifyModel({ kind: 'checkpoint', dir: a }, { digestCache })).id, first.id);

    writeFileSync(digestCache, '{ not json');
    assert.match((await identifyModel({ kind: 'checkpoint', dir: a }, { digestCache })).id, /^[0-9a-f]{32}$/, 'a damaged digest file is rebuilt');
  } finally {
    rmSync(parent, { recursive: true, force: true });
  }
});
