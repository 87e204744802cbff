import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Tiktoken } from 'tiktoken/lite';
import { loadTokenizer, type Tokenizer } from '../../../src/engine/model/tokenizer';
import { bundledTokenizerDir } from '../../../src/engine/model/tokenizer/assets';
import { KIMI_PAT_STR } from '../../../src/engine/model/tokenizer/pattern';
import { SOURCE_FILES, TRICKY_TEXTS } from './samples';
import { trainSmallVocab, writeTiktokenDir } from './helpers';

/** The official tiktoken (Rust regex + BPE, in WASM) over the same ranks file and Kimi's original pattern. */
function reference(dir: string, tokenizer: Tokenizer): Tiktoken {
  return new Tiktoken(readFileSync(join(dir, 'tiktoken.model'), 'utf8'), Object.fromEntries(tokenizer.specialTokens), KIMI_PAT_STR);
}

const inputs: [string, string][] = [
  ...SOURCE_FILES.map((f): [string, string] => [f.path, f.text]),
  ...Object.entries(TRICKY_TEXTS),
  ['all tricky texts joined', Object.values(TRICKY_TEXTS).join('')],
  ['long run of =', '='.repeat(5000)],
  ['long run of spaces', `x${' '.repeat(6000)}y`],
];

const vocabularies: [string, () => string][] = [
  ['bundled vocabulary', () => bundledTokenizerDir()],
  ['small vocabulary trained in the test', () => writeTiktokenDir(trainSmallVocab([SOURCE_FILES[0].text.slice(0, 200_000), ...Object.values(TRICKY_TEXTS)]))],
];

for (const [vocabName, makeDir] of vocabularies) {
  test(`ids equal the tiktoken library's: ${vocabName}`, async (t) => {
    const dir = makeDir();
    const ours = await loadTokenizer(dir);
    const theirs = reference(dir, ours);
    try {
      for (const [name, text] of inputs) {
        await t.test(name, () => {
          assert.deepEqual(ours.encodeOrdinary(text), Array.from(theirs.encode_ordinary(text)), 'encodeOrdinary');
          assert.deepEqual(ours.encode(text), Array.from(theirs.encode(text, 'all')), 'encode with specials');
        });
      }
    } finally {
      theirs.free();
    }
  });
}

test('the tests above cover non-trivial tokenization', async () => {
  // Guards against a vacuous parity: the inputs must exercise multi-byte merges and both paths.
  const ours = await loadTokenizer();
  const ids = ours.encodeOrdinary(SOURCE_FILES[0].text);
  assert.ok(ids.length < SOURCE_FILES[0].text.length / 2.5, `only ${SOURCE_FILES[0].text.length / ids.length} chars per token`);
  assert.ok(ours.encode(TRICKY_TEXTS.specials).includes(ours.specialId('<|im_end|>')));
});
