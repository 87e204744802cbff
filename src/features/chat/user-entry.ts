/**
 * What the chat shows for a question: the display text, plus the selected code when the request
 * carries a selection, so that the conversation shows what was asked about.
 */
import type { Selection } from '../../engine/api';

/** Longest run of backticks in `text` plus one, at least three: a fence the code cannot close. */
function fenceFor(text: string): string {
  const longest = Math.max(0, ...[...text.matchAll(/`+/g)].map((m) => m[0].length));
  return '`'.repeat(Math.max(3, longest + 1));
}

/** The highlight.js language of a path, by extension (highlight.js knows most extensions as aliases). */
export function languageOf(path: string): string {
  const name = path.split('/').pop() ?? '';
  const dot = name.lastIndexOf('.');
  return dot > 0 ? name.slice(dot + 1).toLowerCase().replace(/[^a-z0-9+#-]/g, '') : '';
}

export function userEntryText(display: string, selection?: Selection): string {
  if (!selection || selection.text.trim() === '') return display;
  const fence = fenceFor(selection.text);
  const body = selection.text.endsWith('\n') ? selection.text : `${selection.text}\n`;
  return `${display}\n\n${fence}${languageOf(selection.path)}\n${body}${fence}`;
}
