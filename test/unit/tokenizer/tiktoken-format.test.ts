import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadTokenizer } from '../../../src/engine/model/tokenizer';
import { bundledTokenizerDir } from '../../../src/engine/model/tokenizer/assets';
import { isUserError } from '../../../src/common/errors';
import { SOURCE_FILES, TRICKY_TEXTS } from './samples';

const KIMI_SPECIALS: [string, number][] = [
  ['[BOS]', 0], ['[EOS]', 1], ['<|im_end|>', 2], ['<|im_user|>', 3], ['<|im_assistant|>', 4],
  ['<|start_header_id|>', 6], ['<|end_header_id|>', 7], ['[EOT]', 9], ['<|im_system|>', 10],
  ['<|tool_calls_section_begin|>', 11], ['<|tool_call_end|>', 15], ['<|im_middle|>', 17], ['[UNK]', 254], ['[PAD]', 255],
];

test('the bundled tokenizer has 3840 ranks and Kimi\'s 256 special ids at Kimi\'s offsets', async () => {
  const tok = await loadTokenizer();
  assert.equal(tok.vocabSize, 4096);
  assert.equal(tok.specialTokens.size, 256);
  for (const [name, offset] of KIMI_SPECIALS) assert.equal(tok.specialId(name), 3840 + offset, name);
  assert.equal(tok.specialId('<|reserved_token_3845|>'), 3845);
  assert.match(tok.id, /^tiktoken:[0-9a-f]{32}$/);
});

test('decode(encode(x)) gives x back for source code and tricky text', async () => {
  const tok = await loadTokenizer();
  const texts = [...SOURCE_FILES.map((f) => f.text), ...Object.entries(TRICKY_TEXTS).filter(([k]) => k !== 'lone').map(([, v]) => v)];
  for (const text of texts) {
    assert.equal(tok.decode(tok.encodeOrdinary(text)), text);
    assert.equal(tok.decode(tok.encode(text)), text);
  }
  // Lone surrogates have no UTF-8 form; they are encoded as U+FFFD, as TextEncoder does.
  assert.equal(tok.decode(tok.encodeOrdinary(TRICKY_TEXTS.lone)), TRICKY_TEXTS.lone.replace(/[\ud800-\udfff]/g, '\ufffd'));
});

test('special-token strings are special in encode() and plain text in encodeOrdinary()', async () => {
  const tok = await loadTokenizer();
  const names = [...tok.specialTokens.keys()];
  const text = `a${names.join(' b ')}z`;
  const ordinary = tok.encodeOrdinary(text);
  assert.ok(ordinary.every((id) => id < 3840), 'encodeOrdinary produced a special id');
  assert.equal(tok.decode(ordinary), text);
  const parsed = tok.encode(text);
  assert.deepEqual(parsed.filter((id) => id >= 3840), names.map((n) => tok.specialId(n)));
  assert.deepEqual(tok.encode('<|im_user|>user<|im_middle|>hi<|im_end|>').filter((id) => id >= 3840), [3843, 3857, 3842]);
});

test('decodeBytes returns the raw bytes, so a split multi-byte character survives concatenation', async () => {
  const tok = await loadTokenizer();
  const ids = tok.encodeOrdinary('🎉');
  assert.ok(ids.length > 1, 'the bundled vocab should split the emoji into byte tokens');
  const bytes = ids.map((id) => tok.decodeBytes([id]));
  assert.deepEqual(Buffer.concat(bytes), Buffer.from('🎉'));
  assert.equal(tok.decode(ids.slice(0, 1)), '\ufffd');
  assert.deepEqual(tok.decodeBytes([tok.specialId('<|im_end|>')]), new TextEncoder().encode('<|im_end|>'));
});

test('an id outside the vocabulary is a UserError naming the tokenizer folder', async () => {
  const tok = await loadTokenizer();
  for (const id of [4096, -1, 1.5]) {
    assert.throws(() => tok.decode([id]), (e: Error) => isUserError(e) && e.message.includes(bundledTokenizerDir()) && e.message.includes(String(id)));
  }
  assert.throws(() => tok.specialId('<|nope|>'), (e: Error) => isUserError(e) && e.message.includes('<|nope|>'));
});

function folderWith(files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'klc-tok-bad-'));
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  return dir;
}

const ranks = readFileSync(join(bundledTokenizerDir(), 'tiktoken.model'), 'utf8');
const config = readFileSync(join(bundledTokenizerDir(), 'tokenizer_config.json'), 'utf8');
const lines = ranks.trimEnd().split('\n');

const corrupt: [string, Record<string, string>, RegExp][] = [
  ['a garbled line', { 'tiktoken.model': ranks.replace('AA== 0', 'AA==0'), 'tokenizer_config.json': config }, /tiktoken\.model:1: expected "base64\(bytes\) rank"/],
  ['a duplicate rank', { 'tiktoken.model': `${ranks}${Buffer.from('zzzqq').toString('base64')} 5\n`, 'tokenizer_config.json': config }, /rank 5 appears twice/],
  ['a gap in the ranks', { 'tiktoken.model': [...lines.slice(0, 300), ...lines.slice(301)].join('\n'), 'tokenizer_config.json': config }, /rank 300 is missing/],
  ['a missing single byte', { 'tiktoken.model': lines.slice(1).map((l, i) => l.replace(/ \d+$/, ` ${i}`)).join('\n'), 'tokenizer_config.json': config }, /single byte 0x00 has no rank/],
  ['an empty ranks file', { 'tiktoken.model': '', 'tokenizer_config.json': config }, /has no tokens/],
  ['no tokenizer_config.json', { 'tiktoken.model': ranks }, /tokenizer_config\.json \(ENOENT\)/],
  ['a config that is not JSON', { 'tiktoken.model': ranks, 'tokenizer_config.json': '{"added_tokens_decoder": {' }, /tokenizer_config\.json is not valid JSON/],
  ['a special id outside the special range', { 'tiktoken.model': ranks, 'tokenizer_config.json': JSON.stringify({ added_tokens_decoder: { 5000: { content: '<|x|>' } } }) }, /id 5000, outside the special range 3840\.\.4095/],
  ['a broken tokenizer.json', { 'tokenizer.json': '{"version": "1.0"}' }, /tokenizer\.json has no "model" section/],
];

for (const [what, files, message] of corrupt) {
  test(`loading a folder with ${what} is a UserError that names the file`, async () => {
    const dir = folderWith(files);
    try {
      await assert.rejects(loadTokenizer(dir), (e: Error) => isUserError(e) && message.test(e.message) && e.message.includes(dir));
    } finally {
      rmSync(dir, { recursive: true });
    }
  });
}

test('a folder without any tokenizer file is a UserError that says what is expected', async () => {
  const dir = folderWith({ 'config.json': '{}' });
  await assert.rejects(loadTokenizer(dir), (e: Error) => isUserError(e) && e.message.includes('tiktoken.model') && e.message.includes('tokenizer.json'));
  rmSync(dir, { recursive: true });
});

test('the tokenizer id changes with the ranks and with the special-token names', async () => {
  const base = await loadTokenizer();
  const renamed = folderWith({ 'tiktoken.model': ranks, 'tokenizer_config.json': config.replace('"[EOT]"', '"[END]"') });
  const reranked = folderWith({ 'tiktoken.model': [lines[1].replace(/ 1$/, ' 0'), lines[0].replace(/ 0$/, ' 1'), ...lines.slice(2)].join('\n'), 'tokenizer_config.json': config });
  try {
    const a = await loadTokenizer(renamed);
    const b = await loadTokenizer(reranked);
    assert.notEqual(a.id, base.id);
    assert.notEqual(b.id, base.id);
    assert.equal(a.specialId('[END]'), 3849);
    assert.deepEqual(b.encodeOrdinary('\u0000\u0001'), [1, 0]);
  } finally {
    rmSync(renamed, { recursive: true });
    rmSync(reranked, { recursive: true });
  }
});
