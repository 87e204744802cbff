import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadTokenizer } from '../../../src/engine/model/tokenizer';
import { fake, makeTree, removeTree } from './fixture';

const cli = join(__dirname, '..', '..', '..', 'src', 'cli.ts');
const klc = (args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', cli, ...args], { encoding: 'utf8' });
const sources = { 'src/a.ts': `export const key = "${fake.awsKey}";\n`, 'src/b.ts': 'export const b = 2;\n' };
const sourceBytes = Object.values(sources).reduce((n, s) => n + Buffer.byteLength(s), 0);
const root = makeTree({
  ...sources,
  '.env': 'TOKEN=1\n',
  'yarn.lock': '# lock\n',
});
after(() => removeTree(root));

test('klc pack prints the summary and writes the packed text and manifest', async () => {
  const out = join(root, 'out', 'packed.txt');
  const manifestFile = join(root, 'out', 'manifest.json');
  const r = klc(['pack', root, '--out', out, '--manifest', manifestFile, '--line-numbers', '--list-omitted', '--exclude', 'out/']);
  assert.equal(r.status, 0, r.stderr);
  const manifest = JSON.parse(readFileSync(manifestFile, 'utf8'));
  assert.deepEqual(manifest.files.map((f: { path: string }) => f.path).sort(), ['src/a.ts', 'src/b.ts']);
  assert.equal(manifest.lineNumbers, true);
  const lines = r.stdout.split('\n');
  assert.equal(lines[0], `files      2 packed (${sourceBytes} bytes), 2 left out: lock-file 1, secret-file 1`);
  assert.equal(lines[1], `tokens     ${manifest.totalTokens} of 1000000 (tokenizer ${manifest.tokenizer})`);
  assert.equal(lines[2], 'secrets    1 redacted');
  assert.match(lines[3], /^time {7}\d+\.\d\d s$/);
  assert.equal(lines[4], '  omitted  .env  secret-file: environment file; never packed');
  const packed = readFileSync(out, 'utf8');
  assert.match(packed, /<file path="src\/a.ts">\n1\| export const key = "\[REDACTED:aws-access-key\]";\n<\/file>/);
  const tokenizer = await loadTokenizer();
  assert.equal(tokenizer.encodeOrdinary(packed).length, manifest.totalTokens, 'the whole text tokenizes to the same count here');
});

test('klc pack fails with one line and a non-zero exit for a missing folder, leaving no output file', () => {
  const out = join(root, 'never.txt');
  const r = klc(['pack', join(root, 'missing'), '--out', out]);
  assert.equal(r.status, 1);
  assert.equal(r.stdout, '');
  assert.equal(r.stderr, `klc pack: workspace folder '${join(root, 'missing')}' does not exist; check the path\n`);
  assert.equal(existsSync(out), false);
  const bad = klc(['pack', root, '--max-tokens', 'lots']);
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /^klc pack: --max-tokens must be an integer ≥ 1, got 'lots'\n$/);
});
