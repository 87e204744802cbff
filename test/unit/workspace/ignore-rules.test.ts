/**
 * The watcher's filter against discovery itself (globby's walk): for every file of a tree with
 * ignore files at several depths, a parent .gitignore above the root, defaults and user excludes,
 * IgnoreRules.packable says yes exactly for the files discovery lists.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import { discoverRoot } from '../../../src/workspace/discover';
import { IgnoreRules, PackCandidates } from '../../../src/workspace/ignore-rules';
import { git, makeTree, removeTree } from './fixture';

const trees: string[] = [];
after(() => trees.forEach(removeTree));

function allFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((d) => (d.isDirectory() ? allFiles(join(dir, d.name)) : [join(dir, d.name)]));
}

test('packable() agrees with discovery on every file of the tree', async () => {
  const repo = makeTree({
    '.gitignore': 'secret-area/\n*.bak\n',
    'app/.gitignore': '*.tmp\ngen/\n!keep.tmp\n',
    'app/a.ts': 'a\n',
    'app/debug.tmp': 'x\n',
    'app/keep.tmp': 'kept by negation\n',
    'app/old.bak': 'ignored by the parent .gitignore\n',
    'app/gen/out.ts': 'x\n',
    'app/sub/.ignore': 'local.txt\n/anchored.ts\n',
    'app/sub/local.txt': 'x\n',
    'app/sub/anchored.ts': 'x\n',
    'app/sub/deep/anchored.ts': 'not anchored here\n',
    'app/sub/deep/.kimiignore': 'skip.ts\n',
    'app/sub/deep/skip.ts': 'x\n',
    'app/sub/deep/keep.ts': 'k\n',
    'app/secret-area/x.ts': 'x\n',
    'app/node_modules/dep/index.js': 'x\n',
    'app/dist/bundle.js': 'x\n',
    'app/build.log': 'x\n',
    'app/tmp/scratch.ts': 'excluded by the user\n',
    'app/docs/readme.md': 'r\n',
  });
  trees.push(repo);
  git(repo, ['init', '-q']);
  const root = join(repo, 'app');
  const exclude = ['tmp/'];
  const discovered = new Set((await discoverRoot(root, [], exclude)).files.map((c) => c.rel));
  assert.ok(discovered.has('a.ts') && discovered.has('keep.tmp') && !discovered.has('old.bak'), `discovery itself: ${[...discovered].join(', ')}`);
  const rules = new IgnoreRules(root, exclude);
  for (const abs of allFiles(root)) {
    const rel = relative(root, abs).split(sep).join('/');
    assert.equal(await rules.packable(abs), discovered.has(rel), rel);
  }
  assert.equal(await rules.packable(join(repo, 'outside.ts')), false, 'a path outside the root');
  assert.equal(await rules.packable(join(root, '.git', 'HEAD')), false, 'git internals');
});

test('pack candidates: never-packed names (lock files, secrets) and paths outside every root are ruled out', async () => {
  const a = makeTree({ 'x.ts': 'x\n', 'package-lock.json': '{}\n', '.env': 'A=1\n', '.env.example': 'A=\n', 'dist/b.js': 'b\n' });
  const b = makeTree({ 'y.ts': 'y\n' });
  trees.push(a, b);
  const candidates = new PackCandidates([a, b]);
  const verdicts = await Promise.all(
    [join(a, 'x.ts'), join(b, 'y.ts'), join(a, 'package-lock.json'), join(a, '.env'), join(a, '.env.example'), join(a, 'dist/b.js'), join(a, '..', 'elsewhere.ts')].map((p) => candidates.couldPack(p)),
  );
  assert.deepEqual(verdicts, [true, true, false, false, true, false, false]);
});
