import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { trainByteLevelBpe } from '../../../tools/tokenizer/bpe-trainer';
import { bundledTokenizerDir } from '../../../src/engine/model/tokenizer/assets';
import { KIMI_PAT_STR } from '../../../src/engine/model/tokenizer/pattern';
import { SOURCE_FILES } from './samples';

const corpus = SOURCE_FILES.map((f) => f.text.slice(0, 50_000));
const text = (t: Uint8Array) => Buffer.from(t).toString('latin1');

test('training is deterministic and yields 256 bytes then unique merged tokens', () => {
  const a = trainByteLevelBpe(corpus, 600);
  const b = trainByteLevelBpe(corpus, 600);
  assert.deepEqual(a.map(text), b.map(text));
  assert.equal(a.length, 600);
  a.slice(0, 256).forEach((t, i) => assert.deepEqual([...t], [i]));
  assert.equal(new Set(a.map(text)).size, 600);
  assert.ok(a.slice(256).every((t) => t.length >= 2));
});

test('the first merge is the most frequent adjacent byte pair inside pattern pieces', () => {
  // Pieces are "ab", " ab", " ab", " cd": "ab" occurs 3 times, " a" twice, "b " never.
  const tokens = trainByteLevelBpe(['ab ab ab cd'], 257);
  assert.equal(text(tokens[256]), 'ab');
  const second = trainByteLevelBpe(['ab ab ab cd'], 258);
  assert.equal(text(second[257]), ' ab');
});

test('merges never cross the boundaries of the pre-tokenization pattern', () => {
  const tokens = trainByteLevelBpe(['x.y x.y x.y x.y 中文中文 中文'], 300);
  for (const t of tokens.slice(256).map((u) => Buffer.from(u).toString('utf8'))) {
    assert.ok(!/[a-z]\./.test(t) && !/ 中/.test(t), `token ${JSON.stringify(t)} spans two pieces`);
  }
});

test('the committed training record matches the committed tokenizer files and pattern', () => {
  const dir = bundledTokenizerDir();
  const training = JSON.parse(readFileSync(join(dir, 'training.json'), 'utf8')) as { pattern: string; outputs: Record<string, string>; corpus: { sha256: string }[] };
  assert.equal(training.pattern, KIMI_PAT_STR);
  for (const [name, sha] of Object.entries(training.outputs)) {
    assert.equal(createHash('sha256').update(readFileSync(join(dir, name), 'utf8')).digest('hex'), sha, name);
  }
  assert.ok(training.corpus.length > 100);
});
