import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync, existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from '../../../src/cli/tokenize';
import { loadTokenizer } from '../../../src/engine/model/tokenizer';
import { bundledTokenizerDir } from '../../../src/engine/model/tokenizer/assets';
import { isUserError } from '../../../src/common/errors';

const text = 'export const x = "naïve 中文";\n<|im_end|>\n';

function workDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'klc-cli-tok-'));
  writeFileSync(join(dir, 'in.txt'), text);
  return dir;
}

test('klc tokenize writes the ids of the file as a JSON array, special strings as plain text', async () => {
  const dir = workDir();
  try {
    await run(['--in', join(dir, 'in.txt'), '--out', join(dir, 'ids.json')]);
    const tok = await loadTokenizer();
    assert.deepEqual(JSON.parse(readFileSync(join(dir, 'ids.json'), 'utf8')), tok.encodeOrdinary(text));
    await run(['--in', join(dir, 'in.txt'), '--out', join(dir, 'special.json'), '--special', '--model', bundledTokenizerDir()]);
    const ids = JSON.parse(readFileSync(join(dir, 'special.json'), 'utf8')) as number[];
    assert.deepEqual(ids, tok.encode(text));
    assert.ok(ids.includes(tok.specialId('<|im_end|>')));
  } finally {
    rmSync(dir, { recursive: true });
  }
});

test('klc tokenize reports bad arguments and inputs as UserErrors and writes nothing', async () => {
  const dir = workDir();
  const out = join(dir, 'ids.json');
  try {
    await assert.rejects(run(['--in', join(dir, 'in.txt')]), (e: Error) => isUserError(e) && /--in and --out are required/.test(e.message));
    await assert.rejects(run(['--in', join(dir, 'in.txt'), '--out', out, '--bogus']), (e: Error) => isUserError(e) && /--bogus/.test(e.message));
    await assert.rejects(run(['--in', join(dir, 'missing.txt'), '--out', out]), (e: Error) => isUserError(e) && e.message.includes('missing.txt'));
    await assert.rejects(run(['--in', join(dir, 'in.txt'), '--out', out, '--model', dir]), (e: Error) => isUserError(e) && e.message.includes(dir));
    assert.equal(existsSync(out), false);
  } finally {
    rmSync(dir, { recursive: true });
  }
});
