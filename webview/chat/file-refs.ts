/**
 * Finds file references in answer text: `src/a.ts`, `a.ts:12`, `a.ts:12:5`, `a.ts:12-20`,
 * `a.ts#L12-L20`. Only candidates: the host says which of them are files in the workspace, and
 * only those become links.
 */

export interface FileRef {
  /** The path as written, without the line suffix. */
  path: string;
  /** 1-based. */
  line?: number;
  endLine?: number;
  column?: number;
}

export interface FoundRef extends FileRef {
  start: number;
  end: number;
}

// A path is segments of word-ish characters separated by '/', ending in a name with an extension
// that has a letter in it (so 3.14 and v1.2.3 are not paths). The look-behind keeps URLs out:
// a path may not continue a word, another path or a scheme ("https://host/a.js").
const SEGMENT = String.raw`@?[\w~+-][\w.~+-]*`;
const EXTENSION = String.raw`\.(?=[A-Za-z0-9_]*[A-Za-z])[A-Za-z0-9_]{1,12}`;
const PATH = String.raw`(?:\/|\.{1,2}\/)?(?:${SEGMENT}\/)*${SEGMENT}${EXTENSION}`;
const COLON_LINE = String.raw`:(\d{1,7})(?::(\d{1,5}))?(?:-(\d{1,7}))?`;
const HASH_LINE = String.raw`#L(\d{1,7})(?:-L?(\d{1,7}))?`;
const REF = new RegExp(String.raw`(?<![\w@/\\.:~+-])(${PATH})(?:${COLON_LINE}|${HASH_LINE})?(?![\w/])`, 'g');
const WHOLE = new RegExp(String.raw`^(${PATH})(?:${COLON_LINE}|${HASH_LINE})?$`);

function toRef(m: RegExpExecArray | RegExpMatchArray): FileRef {
  const num = (s: string | undefined) => (s === undefined ? undefined : Number(s));
  const line = num(m[2]) ?? num(m[5]);
  const endLine = num(m[4]) ?? num(m[6]);
  const column = num(m[3]);
  const ref: FileRef = { path: m[1] };
  if (line !== undefined && line > 0) {
    ref.line = line;
    if (endLine !== undefined && endLine >= line) ref.endLine = endLine;
    if (column !== undefined && column > 0) ref.column = column;
  }
  return ref;
}

export function findFileRefs(text: string): FoundRef[] {
  const found: FoundRef[] = [];
  for (const m of text.matchAll(REF)) {
    const start = m.index ?? 0;
    found.push({ ...toRef(m), start, end: start + m[0].length });
  }
  return found;
}

/** A reference that is the whole string (inline code, a markdown link target), or undefined. */
export function parseFileRef(text: string): FileRef | undefined {
  const m = WHOLE.exec(text.trim());
  return m ? toRef(m) : undefined;
}
