/**
 * The path of a file as the packed context names it (src/workspace): relative to its root, with
 * forward slashes; in a multi-root workspace prefixed by the root folder's base name, numbered
 * ("app-2") when two roots share one.
 */
import { isAbsolute, relative, sep } from 'node:path';
import { rootNames } from '../../workspace/root-names';

export { rootNames };


export function workspacePath(fsPath: string, roots: readonly string[]): string {
  const names = rootNames(roots);
  // The innermost root wins when roots are nested.
  const best = roots
    .map((root, i) => ({ name: names[i], rel: relative(root, fsPath) }))
    .filter(({ rel }) => rel !== '' && !rel.startsWith('..') && !isAbsolute(rel))
    .sort((a, b) => a.rel.length - b.rel.length)[0];
  if (!best) return fsPath.split(sep).join('/');
  const rel = best.rel.split(sep).join('/');
  return roots.length > 1 ? `${best.name}/${rel}` : rel;
}
