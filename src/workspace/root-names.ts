import { basename } from 'node:path';

/**
 * Root names as shown in multi-root paths: folder names, numbered ("app-2") when two are alike.
 * The extension uses the same function to name files the way the packed context does.
 */
export function rootNames(roots: readonly string[]): string[] {
  const taken = new Set<string>();
  return roots.map((root) => {
    const base = basename(root) || 'root';
    let name = base;
    for (let n = 2; taken.has(name); n++) name = `${base}-${n}`;
    taken.add(name);
    return name;
  });
}
