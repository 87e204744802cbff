/**
 * `klc quantize` and `klc forward --quantization` end to end through the CLI: the written
 * checkpoint's logits equal those of quantizing the same checkpoint at load, and bad arguments
 * are one-line errors with exit code 1.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const repoRoot = resolve(__dirname, '..', '..', '..');
const golden = join(repoRoot, 'test', 'fixtures', 'golden', 'tiny-kimi-public');
const klc = (...args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', join(repoRoot, 'src/cli.ts'), ...args], { encoding: 'utf8', cwd: repoRoot });

test('klc quantize writes a checkpoint whose logits equal klc forward --quantization on the original', () => {
  const dir = mkdtempSync(join(tmpdir(), 'klc-cli-quantize-'));
  const out = join(dir, 'w8a16');
  const q = klc('quantize', golden, out, '--scheme', 'w8a16');
  assert.equal(q.status, 0, q.stderr);
  assert.match(q.stderr, /wrote .*w8a16: 111 modules quantized with w8a16, 5\.4 MB → 2\.3 MB of tensors/);
  writeFileSync(join(dir, 'ids.json'), JSON.stringify([[5, 17, 301, 44, 9, 990, 12]]));
  const run = (model: string, file: string, ...extra: string[]) => {
    const r = klc('forward', '--model', model, '--input-ids', join(dir, 'ids.json'), '--out', join(dir, file), '--backend', 'reference', ...extra);
    assert.equal(r.status, 0, r.stderr);
    return readFileSync(join(dir, file));
  };
  assert.deepEqual(run(out, 'written.safetensors'), run(golden, 'at-load.safetensors', '--quantization', 'int8'));
  assert.notDeepEqual(run(golden, 'plain.safetensors'), run(out, 'again.safetensors'));
});

test('bad arguments are named, and nothing is written', () => {
  const dir = mkdtempSync(join(tmpdir(), 'klc-cli-quantize-'));
  const scheme = klc('quantize', golden, join(dir, 'o'), '--scheme', 'int3');
  assert.equal(scheme.status, 1);
  assert.match(scheme.stderr, /^klc quantize: --scheme must be one of w4a16-g128, w8a16, fp8-dynamic, got 'int3'\n$/);
  const missing = klc('quantize', golden, '--scheme', 'w8a16');
  assert.equal(missing.status, 1);
  assert.match(missing.stderr, /expected the folders IN and OUT, got 1 argument/);
  const load = klc('forward', '--model', golden, '--input-ids', 'x.json', '--out', 'y', '--quantization', 'nf4');
  assert.equal(load.status, 1);
  assert.match(load.stderr, /--quantization must be one of auto, none, int4, int8, fp8, got 'nf4'/);
  assert.equal(existsSync(join(dir, 'o')), false);
});
