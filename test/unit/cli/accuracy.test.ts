/**
 * `klc accuracy` on the bundled tiny checkpoint: the unquantized model against itself diverges by
 * exactly nothing, every quantization by something finite, INT4 by more than INT8; the tokens are
 * the repository's first source file as the bundled tokenizer reads it; bad arguments are
 * one-line errors naming the option.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { measureAccuracy } from '../../../src/cli/accuracy';
import { loadTokenizer } from '../../../src/engine/model/tokenizer';

const repoRoot = resolve(__dirname, '..', '..', '..');
const tiny = join(repoRoot, 'assets', 'tiny-model');
const klc = (...args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', join(repoRoot, 'src/cli.ts'), 'accuracy', ...args], { encoding: 'utf8', cwd: repoRoot });

test('each scheme against the unquantized tiny model: itself exactly 0, quantized finite and > 0, INT4 worse than INT8', async () => {
  const positions = 600;
  const r = await measureAccuracy({ modelDir: tiny, backend: 'reference', schemes: ['none', 'int8', 'int4', 'fp8'], positions, log: () => {} });
  assert.equal(r.backend, 'reference');
  assert.equal(r.positions, positions);
  assert.deepEqual(r.text.files, ['src/cli.ts']);
  assert.equal(r.text.sequences, 2);
  const expected = (await loadTokenizer(tiny)).encodeOrdinary(`// src/cli.ts\n${readFileSync(join(repoRoot, 'src/cli.ts'), 'utf8')}`).slice(0, positions);
  assert.equal(r.text.digest, createHash('sha256').update(new Uint8Array(Int32Array.from(expected).buffer)).digest('hex'));

  assert.deepEqual(r.schemes.map((s) => [s.scheme, s.weights, s.positions]), [
    ['none', 'none', positions],
    ['int8', 'at load: int8 (w8a16)', positions],
    ['int4', 'at load: int4 (w4a16-g128)', positions],
    ['fp8', 'at load: fp8 (fp8-dynamic)', positions],
  ]);
  const [self, ...quantized] = r.schemes;
  assert.deepEqual([self.meanKl, self.maxKl, self.top1Agreement], [0, 0, 1]);
  for (const s of quantized) {
    assert.ok(Number.isFinite(s.meanKl) && s.meanKl > 0, `${s.scheme}: mean KL ${s.meanKl}`);
    assert.ok(Number.isFinite(s.maxKl) && s.maxKl >= s.meanKl, `${s.scheme}: max KL ${s.maxKl} below the mean ${s.meanKl}`);
    assert.ok(s.top1Agreement >= 0 && s.top1Agreement <= 1, `${s.scheme}: agreement ${s.top1Agreement}`);
  }
  const kl = Object.fromEntries(r.schemes.map((s) => [s.scheme, s.meanKl]));
  assert.ok(kl.int4 > kl.int8, `int4's mean KL ${kl.int4} is not above int8's ${kl.int8}`);
});

test('klc accuracy prints a row per scheme and writes the same figures as JSON', () => {
  const json = join(mkdtempSync(join(tmpdir(), 'klc-accuracy-')), 'acc.json');
  const r = klc('--model', tiny, '--backend', 'reference', '--schemes', 'int8', '--positions', '40', '--json', json);
  assert.equal(r.status, 0, r.stderr);
  const report = JSON.parse(readFileSync(json, 'utf8'));
  const [row] = report.schemes;
  assert.equal(row.positions, 40);
  const line = r.stdout.split('\n').find((l) => l.startsWith('int8 '));
  assert.deepEqual(line?.split(/\s{2,}/), ['int8', '40', row.meanKl.toExponential(3), row.maxKl.toExponential(3), `${(100 * row.top1Agreement).toFixed(2)}%`]);
});

test('bad arguments are one-line errors naming the option, before any model loads', () => {
  const cases: [string[], RegExp][] = [
    [['--model', tiny, '--schemes', 'int8,int3'], /^klc accuracy: --schemes takes a comma-separated list of none, int4, int8, fp8, got 'int3' in 'int8,int3'\n$/],
    [['--model', tiny, '--positions', '0'], /^klc accuracy: --positions must be an integer ≥ 1, got '0'\n$/],
    [[], /^klc accuracy: --model DIR is required \(or --load-format dummy --model-config FILE\)/],
    [['--model', join(tiny, 'missing')], /^klc accuracy: cannot read .*missing[/\\]config\.json \(ENOENT\)/],
    [['--model', tiny, '--positions', '100000000'], /^klc accuracy: --positions 100000000 is more than the \d+ tokens of this repository's src/],
  ];
  for (const [args, message] of cases) {
    const r = klc(...args);
    assert.equal(r.status, 1, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, message);
  }
  const dir = mkdtempSync(join(tmpdir(), 'klc-accuracy-'));
  assert.equal(klc('--model', tiny, '--schemes', 'nf4', '--json', join(dir, 'a.json')).status, 1);
  assert.equal(existsSync(join(dir, 'a.json')), false);
});
