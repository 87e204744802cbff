/**
 * `klc forward`, the stable test contract, against the golden logits of the official
 * implementation — in one pass, with --split (state written to disk and read back), and for a
 * batch of sequences; for the reference and the onnx backends.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { BackendName } from '../../src/engine/api';
import { SafetensorsFile } from '../../src/engine/model/safetensors';
import { TINY_DIR, relError } from './golden-data';

const root = resolve(__dirname, '..', '..');

function klc(args: string[]): { status: number | null; stderr: string } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(root, 'src', 'cli.ts'), ...args], { cwd: root, encoding: 'utf8' });
  return { status: r.status, stderr: r.stderr };
}

async function forward(ids: number[][], extra: string[] = [], backend: BackendName = 'reference'): Promise<Float32Array[]> {
  const dir = mkdtempSync(join(tmpdir(), 'klc-forward-'));
  writeFileSync(join(dir, 'ids.json'), JSON.stringify(ids));
  const r = klc(['forward', '--model', TINY_DIR, '--input-ids', join(dir, 'ids.json'), '--out', join(dir, 'out.safetensors'), '--backend', backend, ...extra]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, new RegExp(`\\(${backend}\\)`), 'the requested backend ran');
  const out = await SafetensorsFile.open(join(dir, 'out.safetensors'));
  try {
    return await Promise.all(ids.map((_, i) => out.readF32(`logits.${i}`)));
  } finally {
    await out.close();
  }
}

for (const backend of ['reference', 'onnx'] as const) {
  test(`klc forward --backend ${backend} --split 70 gives the one-pass logits of the official implementation`, async () => {
    const ref = await SafetensorsFile.open(join(TINY_DIR, 'reference.safetensors'));
    const ids = Array.from(await ref.readInts('input_ids.cont'));
    const full = await ref.readF32('logits.cont.full');
    await ref.close();
    const [oneShot] = await forward([ids], [], backend);
    const [split] = await forward([ids], ['--split', '70'], backend);
    assert.ok(relError(oneShot, full) < 1e-4, `one pass: ${relError(oneShot, full)}`);
    assert.ok(relError(split, full) < 1e-4, `split: ${relError(split, full)}`);
    assert.ok(relError(split, oneShot) < 1e-5, `split vs one pass: ${relError(split, oneShot)}`);
  });
}

test('klc forward handles a batch of sequences', async () => {
  const ref = await SafetensorsFile.open(join(TINY_DIR, 'reference.safetensors'));
  const ids = await ref.readInts('input_ids.b2x33');
  const logits = await ref.readF32('logits.b2x33');
  await ref.close();
  const seqs = [Array.from(ids.subarray(0, 33)), Array.from(ids.subarray(33, 66))];
  const out = await forward(seqs, ['--split', '20']);
  const V = 1024;
  out.forEach((l, i) => assert.ok(relError(l, logits.subarray(i * 33 * V, (i + 1) * 33 * V)) < 1e-4, `sequence ${i}`));
});

test('klc forward rejects bad ids with the file and position named', () => {
  const dir = mkdtempSync(join(tmpdir(), 'klc-forward-'));
  writeFileSync(join(dir, 'ids.json'), JSON.stringify([[1, 2, 99999]]));
  const r = klc(['forward', '--model', TINY_DIR, '--input-ids', join(dir, 'ids.json'), '--out', join(dir, 'o.safetensors')]);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /ids\.json: sequence 0, position 2: 99999 is not a token id in \[0, 1024\)/);
  const missing = klc(['forward', '--model', TINY_DIR, '--input-ids', join(dir, 'nope.json'), '--out', join(dir, 'o.safetensors')]);
  assert.equal(missing.status, 1);
  assert.match(missing.stderr, /cannot read .*nope\.json/);
});
