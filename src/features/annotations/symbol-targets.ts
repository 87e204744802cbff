/**
 * Which document symbols get CodeLens actions and which get one-line summaries. Works on the
 * plain shape of vscode.DocumentSymbol, so it is tested without an editor.
 */
export interface SymbolLike {
  name: string;
  kind: number;
  range: { start: { line: number }; end: { line: number } };
  selectionRange: { start: { line: number } };
  children: SymbolLike[];
}

/** Every symbol of one of `kinds`, at any depth (methods inside classes included), in document order. */
export function lensTargets<S extends SymbolLike>(symbols: readonly S[], kinds: ReadonlySet<number>): S[] {
  const out: S[] = [];
  const visit = (list: readonly S[]) => {
    for (const s of [...list].sort((a, b) => a.range.start.line - b.range.start.line)) {
      if (kinds.has(s.kind)) out.push(s);
      visit(s.children as S[]);
    }
  };
  visit(symbols);
  return out;
}

/** The top-level symbols of `kinds` that "Annotate File" summarizes, in document order. */
export function topLevelTargets<S extends SymbolLike>(symbols: readonly S[], kinds: ReadonlySet<number>): S[] {
  return symbols.filter((s) => kinds.has(s.kind)).sort((a, b) => a.range.start.line - b.range.start.line);
}

/** Identifies a symbol within one version of a file. */
export function symbolKey(s: SymbolLike): string {
  return `${s.name}@${s.selectionRange.start.line}`;
}
