import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { sha256Taking } from '../../../src/engine/state/hash-pool';

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

test('sha256Taking equals createHash and hands back the same bytes, for whole buffers (sent to the worker), views and small ones', async () => {
  const sizes = [0, 1, 1000, (1 << 20) - 1, 1 << 20, 3 << 20, 9_000_001];
  const wholes = sizes.map((n) => new Uint8Array(randomBytes(n)));
  const want = wholes.map((b) => ({ sha: sha(b), copy: Buffer.from(b) }));
  const big = new Uint8Array(randomBytes(4 << 20));
  const view = big.subarray(1 << 20);
  const viewWant = sha(view);
  const got = await Promise.all([...wholes, view].map((b) => sha256Taking(b)));
  got.slice(0, sizes.length).forEach((g, i) => {
    assert.equal(g.sha, want[i].sha, `size ${sizes[i]}`);
    assert.ok(Buffer.from(g.bytes).equals(want[i].copy), `bytes of size ${sizes[i]} handed back`);
  });
  assert.equal(got[sizes.length].sha, viewWant, 'a view over part of a buffer');
  assert.equal(got[sizes.length].bytes, view, 'a partial view is hashed in place, not sent');
  assert.equal(wholes[5].byteLength, 0, 'a whole buffer of 3 MiB was sent to the worker (detached here)');
  assert.equal(got[0].sha, 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
});
