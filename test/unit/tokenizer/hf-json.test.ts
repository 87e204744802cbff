import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadTokenizer } from '../../../src/engine/model/tokenizer';
import { isUserError } from '../../../src/common/errors';

/** GPT-2's byte → printable character table, written out from its definition. */
function byteChars(): string[] {
  const printable = (b: number) => (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
  let extra = 256;
  return Array.from({ length: 256 }, (_, b) => String.fromCodePoint(printable(b) ? b : extra++));
}

const chars = byteChars();
const merges: [string, string][] = [['h', 'e'], ['l', 'l'], ['he', 'll'], ['hell', 'o'], ['Ġ', 'w'], ['o', 'r'], ['Ġw', 'or'], ['l', 'd'], ['Ġwor', 'ld']];
const vocab: Record<string, number> = Object.fromEntries(chars.map((c, b) => [c, b]));
merges.forEach(([a, b], i) => (vocab[a + b] = 256 + i));
const SPECIAL = 300;
const EXTRA = 301;

function writeHfDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'klc-hf-'));
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true };
  const added = (id: number, content: string, special: boolean) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special });
  writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify({
    version: '1.0',
    added_tokens: [added(SPECIAL, '<|im_end|>', true), added(EXTRA, '<extra>', false)],
    normalizer: null,
    pre_tokenizer: byteLevel,
    post_processor: null,
    decoder: byteLevel,
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, vocab, merges: merges.map(([a, b]) => `${a} ${b}`) },
  }));
  writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({ eos_token: '<|im_end|>' }));
  return dir;
}

test('a HF tokenizer.json is loaded through @huggingface/tokenizers with its merges and added tokens', async () => {
  const dir = writeHfDir();
  try {
    const tok = await loadTokenizer(dir);
    assert.match(tok.id, /^hf:[0-9a-f]{32}$/);
    assert.equal(tok.vocabSize, 302);
    assert.deepEqual([...tok.specialTokens], [['<|im_end|>', SPECIAL]]);
    assert.deepEqual(tok.encode('hello world'), [vocab.hello, vocab['Ġworld']]);
    assert.deepEqual(tok.encode('hello<|im_end|>'), [vocab.hello, SPECIAL]);
    // As plain text the special string becomes bytes; a non-special added token stays recognized.
    const ordinary = tok.encodeOrdinary('hello<|im_end|><extra>');
    assert.ok(!ordinary.includes(SPECIAL));
    assert.deepEqual(ordinary.slice(0, 2), [vocab.hello, vocab['<']]);
    assert.equal(ordinary[ordinary.length - 1], EXTRA);
    assert.equal(tok.decode(ordinary), 'hello<|im_end|><extra>');
    assert.equal(tok.specialId('<|im_end|>'), SPECIAL);
    assert.deepEqual(tok.encode(''), []);
  } finally {
    rmSync(dir, { recursive: true });
  }
});

test('HF byte-level decodeBytes gives the raw bytes, including the halves of a character', async () => {
  const dir = writeHfDir();
  try {
    const tok = await loadTokenizer(dir);
    const text = 'héllo 🎉 wörld';
    const ids = tok.encodeOrdinary(text);
    assert.deepEqual(Buffer.from(tok.decodeBytes(ids)), Buffer.from(text));
    assert.equal(tok.decode(ids), text);
    const emoji = tok.encodeOrdinary('🎉');
    assert.deepEqual(Buffer.from(tok.decodeBytes(emoji.slice(0, 2))), Buffer.from('🎉').subarray(0, 2));
    assert.throws(() => tok.decodeBytes([999]), (e: Error) => isUserError(e) && e.message.includes('999'));
  } finally {
    rmSync(dir, { recursive: true });
  }
});
