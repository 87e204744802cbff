/**
 * Lists the candidate files of one workspace root with globby: nested .gitignore files at every
 * depth (and those of parent folders up to the repository root), `.ignore` and `.kimiignore` at
 * every depth, the default excludes, the user's include globs and exclude patterns.
 *
 * Symbolic links are never followed. A link to a file inside the workspace is packed under its
 * real path anyway, and following links could pull in files outside the workspace (a repository
 * can link to ~/.aws/credentials) or walk forever (a link to an ancestor folder). Each link is
 * listed as omitted: 'symlink-loop' when it resolves to itself or to an ancestor, else 'symlink'.
 */
import { promises as fs, constants as fsConstants } from 'node:fs';
import { dirname, join, relative, sep } from 'node:path';
import { globby } from 'globby';
import ignore from 'ignore';
import { DEFAULT_EXCLUDES, IGNORE_FILES } from './defaults';
import type { OmitReason } from './types';

export interface Candidate {
  /** Path relative to the root, posix separators. */
  rel: string;
  abs: string;
}

export interface Skipped {
  rel: string;
  reason: OmitReason;
  detail: string;
}

export interface Discovery {
  files: Candidate[];
  skipped: Skipped[];
}

export async function discoverRoot(root: string, include: readonly string[], exclude: readonly string[]): Promise<Discovery> {
  const entries = await globby(include.length > 0 ? [...include] : ['**'], {
    cwd: root,
    gitignore: true,
    ignoreFiles: IGNORE_FILES.map((f) => `**/${f}`),
    ignore: [...DEFAULT_EXCLUDES],
    dot: true,
    followSymbolicLinks: false,
    onlyFiles: false,
    objectMode: true,
    suppressErrors: true,
  });
  const userExcludes = exclude.length > 0 ? ignore().add([...exclude]) : undefined;
  const files: Candidate[] = [];
  const pending: Promise<Skipped | undefined>[] = [];
  for (const entry of entries) {
    const rel = entry.path;
    if (userExcludes?.ignores(rel)) continue;
    const abs = join(root, rel);
    const d = entry.dirent;
    if (d.isFile()) files.push({ rel, abs });
    else if (d.isDirectory()) pending.push(unreadableDirectory(rel, abs));
    else if (d.isSymbolicLink()) pending.push(symlinkVerdict(rel, abs));
    else pending.push(Promise.resolve({ rel, reason: 'not-regular-file', detail: specialKind(d) }));
  }
  const skipped = (await Promise.all(pending)).filter((s): s is Skipped => s !== undefined);
  return { files, skipped };
}

/** The walker silently skips folders it cannot list; report them so the user knows what is missing. */
async function unreadableDirectory(rel: string, abs: string): Promise<Skipped | undefined> {
  try {
    await fs.access(abs, fsConstants.R_OK | fsConstants.X_OK);
    return undefined;
  } catch (e) {
    return { rel: `${rel}/`, reason: 'unreadable', detail: `folder cannot be listed (${errorCode(e)})` };
  }
}

async function symlinkVerdict(rel: string, abs: string): Promise<Skipped> {
  let target: string;
  try {
    target = await fs.realpath(abs);
  } catch (e) {
    const code = errorCode(e);
    if (code === 'ELOOP') return { rel, reason: 'symlink-loop', detail: 'link resolves to itself' };
    return { rel, reason: 'symlink', detail: `broken link (${code})` };
  }
  const parent = await fs.realpath(dirname(abs));
  if (parent === target || parent.startsWith(target + sep)) {
    return { rel, reason: 'symlink-loop', detail: `links to an ancestor folder (${relative(parent, target) || '.'})` };
  }
  return { rel, reason: 'symlink', detail: `links to ${target}; symbolic links are not followed` };
}

function specialKind(d: { isFIFO(): boolean; isSocket(): boolean; isBlockDevice(): boolean; isCharacterDevice(): boolean }): string {
  if (d.isFIFO()) return 'named pipe';
  if (d.isSocket()) return 'socket';
  if (d.isBlockDevice() || d.isCharacterDevice()) return 'device';
  return 'not a regular file';
}

export function errorCode(e: unknown): string {
  return (e as NodeJS.ErrnoException)?.code ?? (e instanceof Error ? e.message : String(e));
}
