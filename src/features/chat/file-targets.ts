/**
 * Where a path written in an answer could live: the files it may name under the workspace folders,
 * never outside them. Answers name files as the packed context does (relative, prefixed by the
 * folder name in a multi-root workspace), but models also write "./x", absolute paths or drop
 * the prefix, so each plausible reading is a candidate; the caller keeps the first that exists.
 */
import { promises as fs } from 'node:fs';
import { isAbsolute, join, normalize, relative, sep } from 'node:path';
import { rootNames } from '../../workspace/root-names';

export interface Root {
  /** The prefix the packed context gives the folder's files in a multi-root workspace. */
  name: string;
  fsPath: string;
}

/**
 * Workspace folders named as the packer names them: by base name, numbered when two are alike.
 * Not by VS Code's folder name, which a .code-workspace file may set to anything.
 */
export function packedRoots(fsPaths: readonly string[]): Root[] {
  const names = rootNames(fsPaths);
  return fsPaths.map((fsPath, i) => ({ name: names[i], fsPath }));
}

function inside(root: string, p: string): boolean {
  const rel = relative(root, p);
  return rel !== '' && !rel.startsWith('..') && !isAbsolute(rel);
}

export function candidateFiles(written: string, roots: readonly Root[]): string[] {
  const path = written.trim().replace(/\\/g, '/');
  if (path === '' || path.includes('\0')) return [];
  const out: string[] = [];
  const add = (root: string, p: string) => {
    const full = normalize(p);
    if (inside(root, full) && !out.includes(full)) out.push(full);
  };
  if (isAbsolute(path)) {
    for (const r of roots) add(r.fsPath, path);
    return out;
  }
  const rel = path.replace(/^(\.\/)+/, '');
  const [first, ...rest] = rel.split('/');
  for (const r of roots) {
    if (roots.length > 1 && first === r.name && rest.length > 0) add(r.fsPath, join(r.fsPath, ...rest));
  }
  for (const r of roots) add(r.fsPath, join(r.fsPath, ...rel.split('/')));
  return out.map((p) => p.split('/').join(sep));
}

/**
 * The first candidate that is a regular file whose real path (symbolic links resolved, the folder's
 * own included) lies inside a workspace folder's real path; undefined when none is. A link in the
 * workspace that points at ~/.ssh/id_rsa is refused like the path itself would be.
 */
export async function firstFileInside(candidates: readonly string[], roots: readonly Root[]): Promise<string | undefined> {
  const realRoots = (await Promise.all(roots.map((r) => fs.realpath(r.fsPath).catch(() => undefined)))).filter((r): r is string => r !== undefined);
  for (const candidate of candidates) {
    const real = await fs.realpath(candidate).catch(() => undefined);
    if (!real || !realRoots.some((root) => inside(root, real))) continue;
    const stat = await fs.stat(real).catch(() => undefined);
    if (stat?.isFile()) return real;
  }
  return undefined;
}
