/**
 * The packed text format (also described in docs/pack-format.md). Pure functions, so the engine
 * can re-render one file's block after an edit and get exactly the text the packer produced.
 *
 * ```
 * <file path="README.md">
 * …content, always ending with a newline…
 * </file>
 *
 * <workspace files="3">
 * Every packed file above, as a tree:
 * src/
 *   main.ts
 *   util/
 *     strings.ts
 * README.md
 * </workspace>
 *
 * ```
 * Blocks are one per file then the index, each ending with a blank line; the packed text is
 * their concatenation. The index lists every file, so it comes last: a new, deleted or renamed
 * file then changes the context only from that file's place on, and ingest can resume there. With line numbers, each content line is prefixed by its right-aligned
 * 1-based number and `| `. In multi-root packs every path starts with its root's name.
 */

/** Control characters in file names would break the line structure; they are shown as \xNN. */
export function displayPath(path: string): string {
  // eslint-disable-next-line no-control-regex
  return path.replace(/[\u0000-\u001f\u007f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

function attribute(value: string): string {
  return value.replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

export function renderIndex(paths: readonly string[]): string {
  return `<workspace files="${paths.length}">\nEvery packed file above, as a tree:\n${renderTree(paths)}</workspace>\n\n`;
}

interface Dir {
  dirs: Map<string, Dir>;
  files: string[];
}

/** An indented tree, folders (with a trailing slash) before files, each level sorted by code unit. */
export function renderTree(paths: readonly string[]): string {
  const top: Dir = { dirs: new Map(), files: [] };
  for (const p of paths) {
    const parts = p.split('/');
    let d = top;
    for (const part of parts.slice(0, -1)) {
      let next = d.dirs.get(part);
      if (!next) d.dirs.set(part, (next = { dirs: new Map(), files: [] }));
      d = next;
    }
    d.files.push(parts[parts.length - 1]);
  }
  const out: string[] = [];
  const walk = (d: Dir, indent: string) => {
    for (const name of [...d.dirs.keys()].sort(byCodeUnit)) {
      out.push(`${indent}${name}/\n`);
      walk(d.dirs.get(name)!, `${indent}  `);
    }
    for (const name of [...d.files].sort(byCodeUnit)) out.push(`${indent}${name}\n`);
  };
  walk(top, '');
  return out.join('');
}

function byCodeUnit(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

export function renderFileBlock(path: string, text: string, lineNumbers: boolean): string {
  const body = lineNumbers ? numberLines(text) : text;
  const newline = body.length === 0 || body.endsWith('\n') ? '' : '\n';
  return `<file path="${attribute(path)}">\n${body}${newline}</file>\n\n`;
}

function numberLines(text: string): string {
  if (text.length === 0) return text;
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  const width = String(lines.length).length;
  return lines.map((line, i) => `${String(i + 1).padStart(width)}| ${line}\n`).join('');
}
