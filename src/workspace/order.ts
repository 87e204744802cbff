/**
 * Packing order: stable files first, recently changed files last, so that an edit invalidates
 * only the tail of the ingested context. In a git repository a file's time is its last commit
 * time (one `git log` call, stopped as soon as every wanted file has been seen); modified,
 * staged and untracked files come after every committed file, by mtime. Outside git, mtime.
 * Ties are broken by the rendered path, so the order is a pure function of the keys.
 */
import { spawn } from 'node:child_process';
import type { OrderKey } from './types';

export interface GitTimes {
  /** Last commit time (seconds) of each clean tracked file, by path relative to the root. */
  committed: Map<string, number>;
  /** Modified, staged or untracked files, relative to the root. */
  dirty: Set<string>;
}

const GIT_ENV = { ...process.env, GIT_OPTIONAL_LOCKS: '0', LC_ALL: 'C' };

/** Git history for `wanted` files of `root`, or undefined when the root is not in a git work tree. */
export async function gitTimes(root: string, wanted: readonly string[]): Promise<GitTimes | undefined> {
  const prefix = await gitOutput(root, ['rev-parse', '--is-inside-work-tree', '--show-prefix']).catch(() => undefined);
  if (prefix === undefined) return undefined;
  const [inside, pathPrefix = ''] = prefix.split('\n');
  if (inside !== 'true') return undefined;
  const strip = (p: string) => (p.startsWith(pathPrefix) ? p.slice(pathPrefix.length) : undefined);

  const dirty = new Set<string>();
  const status = await gitOutput(root, ['status', '--porcelain=v1', '-z', '--untracked-files=all', '--no-renames', '--', '.']);
  for (const record of status.split('\0')) {
    if (record.length < 4) continue;
    const rel = strip(record.slice(3));
    if (rel !== undefined) dirty.add(rel);
  }

  const pendingPaths = new Set(wanted.filter((p) => !dirty.has(p)));
  const committed = new Map<string, number>();
  if (pendingPaths.size > 0) {
    await scanLog(root, (time, path) => {
      const rel = strip(path);
      if (rel !== undefined && pendingPaths.delete(rel)) committed.set(rel, time);
      return pendingPaths.size > 0;
    });
  }
  return { committed, dirty };
}

/** The order key of one file. `mtimeMs` comes from the stat the packer already made. */
export function orderKey(rel: string, mtimeMs: number, git: GitTimes | undefined): OrderKey {
  const mtime = Math.floor(mtimeMs) / 1000;
  if (!git) return { source: 'mtime', time: mtime };
  const committedAt = git.dirty.has(rel) ? undefined : git.committed.get(rel);
  return committedAt === undefined ? { source: 'git-dirty', time: mtime } : { source: 'git', time: committedAt };
}

export function compareOrder(a: { order: OrderKey; path: string }, b: { order: OrderKey; path: string }): number {
  const rank = (k: OrderKey) => (k.source === 'git-dirty' ? 1 : 0);
  return rank(a.order) - rank(b.order) || a.order.time - b.order.time || (a.path < b.path ? -1 : a.path > b.path ? 1 : 0);
}

function gitOutput(cwd: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('git', args, { cwd, env: GIT_ENV, stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.resume();
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0) resolve(Buffer.concat(out).toString('utf8').replace(/\n$/, ''));
      else reject(new Error(`git ${args[0]} exited with ${code}`));
    });
  });
}

/**
 * Streams `git log --name-only -z` newest first, calling `visit(commitTime, path)` for each path;
 * stops git as soon as `visit` returns false. The -z stream is `\0<time>\0\n<path>\0<path>\0…`
 * per commit, so an empty field announces a commit time.
 */
function scanLog(cwd: string, visit: (time: number, path: string) => boolean): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('git', ['log', '--format=%x00%ct', '--name-only', '-z', '--no-renames', '--', '.'], {
      cwd,
      env: GIT_ENV,
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    let rest = '';
    let time = 0;
    let expectTime = false;
    let firstPath = false;
    let done = false;
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      if (done) return;
      const fields = (rest + chunk).split('\0');
      rest = fields.pop() ?? '';
      for (const field of fields) {
        if (field === '') {
          expectTime = true;
        } else if (expectTime) {
          time = Number(field);
          expectTime = false;
          firstPath = true;
        } else {
          const path = firstPath && field.startsWith('\n') ? field.slice(1) : field;
          firstPath = false;
          if (!visit(time, path)) {
            done = true;
            child.kill();
            return;
          }
        }
      }
    });
    child.on('error', reject);
    child.on('close', () => resolve());
  });
}
