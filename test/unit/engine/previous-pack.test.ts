import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { packRecord, previousPackOf } from '../../../src/engine/previous-pack';
import type { PackManifest } from '../../../src/workspace';

const root = join('/work', 'repo');
const manifest = {
  files: [
    { path: 'a.ts', root, file: 'a.ts', sha256: 'aa' },
    { path: 'src/b.ts', root, file: 'src/b.ts', sha256: 'bb' },
  ],
  omitted: [
    { path: 'big.ts', root, reason: 'over-budget', detail: '', file: 'big.ts', sha256: 'cc' },
    { path: 'bin.dat', root, reason: 'binary', detail: '' },
  ],
} as unknown as PackManifest;

test('a pack record read back under the same limits gives the kept and the over-budget files by absolute path', () => {
  const limits = { maxTokens: 1000, exclude: ['dist/'] };
  const meta = JSON.parse(JSON.stringify({ files: 2, pack: packRecord(limits, manifest) })) as Record<string, unknown>;
  const previous = previousPackOf(meta, { maxTokens: 1000, exclude: ['dist/'] });
  assert.deepEqual(previous && [...previous.kept], [
    [join(root, 'a.ts'), 'aa'],
    [join(root, 'src/b.ts'), 'bb'],
  ]);
  assert.deepEqual(previous && [...previous.overBudget], [[join(root, 'big.ts'), 'cc']]);
});

test('another budget, other filters, no record or a malformed one: no previous pack', () => {
  const meta = { pack: packRecord({ maxTokens: 1000 }, manifest) } as Record<string, unknown>;
  assert.equal(previousPackOf(meta, { maxTokens: 2000 }), undefined);
  assert.equal(previousPackOf(meta, { maxTokens: 1000, include: ['src/**'] }), undefined);
  assert.equal(previousPackOf(meta, { maxTokens: 1000, maxFileBytes: 10 }), undefined);
  assert.notEqual(previousPackOf(meta, { maxTokens: 1000 }), undefined);
  assert.equal(previousPackOf(undefined, { maxTokens: 1000 }), undefined);
  assert.equal(previousPackOf({ files: 3 }, { maxTokens: 1000 }), undefined);
  const broken = { pack: { ...(meta.pack as object), kept: [['a.ts']] } };
  assert.equal(previousPackOf(broken, { maxTokens: 1000 }), undefined);
});
