import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { realpathSync } from 'node:fs';
import { findGitDirs, isGitRefChange } from '../../../src/workspace/git-dir';
import { git, makeTree, removeTree } from './fixture';

test('the git folders of a repository, a folder inside it, a linked worktree, and no repository', async () => {
  const repo = realpathSync(makeTree({ 'a.ts': 'a\n', 'sub/b.ts': 'b\n' }));
  const outside = realpathSync(makeTree({ 'x.ts': 'x\n' }));
  try {
    git(repo, ['init', '-q']);
    git(repo, ['add', '.']);
    git(repo, ['commit', '-q', '-m', 'one'], 1_600_000_000);
    const dotGit = join(repo, '.git');
    assert.deepEqual(await findGitDirs(repo), { head: dotGit, common: dotGit });
    assert.deepEqual(await findGitDirs(join(repo, 'sub')), { head: dotGit, common: dotGit });
    const wt = join(outside, 'wt');
    git(repo, ['worktree', 'add', '-q', '-b', 'side', wt]);
    assert.deepEqual(await findGitDirs(wt), { head: join(dotGit, 'worktrees', 'wt'), common: dotGit });
    assert.equal(await findGitDirs(outside), undefined);
  } finally {
    removeTree(repo);
    removeTree(outside);
  }
});

test('HEAD and local branch refs are ref changes; objects, the index and remote refs are not', () => {
  assert.equal(isGitRefChange('/w/.git/HEAD'), true);
  assert.equal(isGitRefChange('/w/.git/refs/heads/main'), true);
  assert.equal(isGitRefChange('/w/.git/refs/heads/feature/x'), true);
  assert.equal(isGitRefChange('/w/.git/worktrees/wt/HEAD'), true);
  assert.equal(isGitRefChange('/w/.git/index'), false);
  assert.equal(isGitRefChange('/w/.git/objects/ab/cdef'), false);
  assert.equal(isGitRefChange('/w/.git/refs/remotes/origin/main'), false);
  assert.equal(isGitRefChange('/w/.git/ORIG_HEAD'), false);
  assert.equal(isGitRefChange('/w/src/HEAD'), false);
});
