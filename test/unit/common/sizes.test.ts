// Sizes as users type them: decimal and binary memory units, token counts in powers of two.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseBytes, parseTokens } from '../../../src/common/sizes';

test('memory sizes: GB is 10^9, GiB 2^30, plain numbers are bytes', () => {
  assert.equal(parseBytes('24GB'), 24_000_000_000);
  assert.equal(parseBytes('24GiB'), 25_769_803_776);
  assert.equal(parseBytes('24 gib'), 25_769_803_776);
  assert.equal(parseBytes('141GB'), 141_000_000_000);
  assert.equal(parseBytes('512MiB'), 536_870_912);
  assert.equal(parseBytes('1.5GB'), 1_500_000_000);
  assert.equal(parseBytes('80000000000'), 80_000_000_000);
  for (const bad of ['', 'GB', '24XB', '-1GB', '24 G B', '1e9']) assert.equal(parseBytes(bad), undefined, bad);
});

test('token counts: k is 1024, M is 1,048,576', () => {
  assert.equal(parseTokens('1M'), 1_048_576);
  assert.equal(parseTokens('128k'), 131_072);
  assert.equal(parseTokens('128K'), 131_072);
  assert.equal(parseTokens('4096'), 4096);
  for (const bad of ['', 'M', '1G', '-5', 'many']) assert.equal(parseTokens(bad), undefined, bad);
});
