/**
 * Where git keeps the state that decides the pack order (which commit is checked out), for the
 * watcher of outside changes: HEAD (a checkout) and the branch refs (a commit, pull or reset).
 * Pure Node, no git process.
 */
import { promises as fs } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';

export interface GitDirs {
  /** The folder holding HEAD: .git, or .git/worktrees/<name> for a linked worktree. */
  head: string;
  /** The folder holding refs/heads: the same as head, or the main repository's .git for a worktree. */
  common: string;
}

/** The git folders of the repository that contains `folder`, or undefined outside git. */
export async function findGitDirs(folder: string): Promise<GitDirs | undefined> {
  let dir = resolve(folder);
  for (;;) {
    const dotGit = join(dir, '.git');
    const stat = await fs.stat(dotGit).catch(() => undefined);
    if (stat?.isDirectory()) return { head: dotGit, common: dotGit };
    if (stat?.isFile()) {
      // A linked worktree or a submodule: ".git" is a file saying "gitdir: <path>".
      const m = /^gitdir:\s*(.+?)\s*$/m.exec(await fs.readFile(dotGit, 'utf8'));
      if (!m) return undefined;
      const head = isAbsolute(m[1]) ? m[1] : resolve(dir, m[1]);
      const common = await fs.readFile(join(head, 'commondir'), 'utf8').then((c) => resolve(head, c.trim()), () => head);
      return { head, common };
    }
    const parent = dirname(dir);
    if (parent === dir) return undefined;
    dir = parent;
  }
}

/** Whether a changed path is a git HEAD or a local branch ref: a checkout, commit, pull or reset. */
export function isGitRefChange(path: string): boolean {
  return /[\\/]\.git[\\/](?:worktrees[\\/][^\\/]+[\\/])?HEAD$|[\\/]\.git[\\/]refs[\\/]heads[\\/]/.test(path);
}
