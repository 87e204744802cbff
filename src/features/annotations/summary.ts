/** The per-symbol request of "Annotate File" and the cleanup of its answer into one line. */
import type { AskRequest, Selection } from '../../engine/api';

/** A summary is one short line; a few dozen tokens are enough and keep a whole file quick. */
export const SUMMARY_MAX_NEW_TOKENS = 40;
const MAX_SUMMARY_CHARS = 120;

export function summaryRequest(name: string, selection: Selection): AskRequest {
  return {
    question: `In one line of at most 15 words, say what \`${name}\` does. Answer with the line only.`,
    selection,
    sampling: { temperature: 0, maxNewTokens: SUMMARY_MAX_NEW_TOKENS },
  };
}

/** The first line with words in it, without markdown decoration, cut to fit at the end of a code line. */
export function oneLineSummary(answer: string): string {
  const line = answer
    .split(/\r?\n/)
    .map((l) => l.replace(/^\s*(?:[-*>#]+|\d+[.)])\s*/, '').replace(/[`*_]/g, '').trim())
    .find((l) => /\p{L}|\p{N}/u.test(l));
  if (!line) return '';
  const flat = line.replace(/\s+/g, ' ');
  return flat.length <= MAX_SUMMARY_CHARS ? flat : `${flat.slice(0, MAX_SUMMARY_CHARS - 1).trimEnd()}…`;
}
