/**
 * Kimi's chat format (spec §6): `<|im_system|>system<|im_middle|>…<|im_end|>`, user and assistant
 * turns alike, no BOS and no newlines between turns; generation starts after
 * `<|im_assistant|>assistant<|im_middle|>`.
 *
 * The repository is placed in the system turn so that it is a fixed prefix: its state is computed
 * once and every question continues from it. Text from files, users and earlier answers is
 * encoded with encodeOrdinary, so a file that contains "<|im_end|>" cannot end a turn.
 */
import type { ChatTurn, Selection } from './api';
import type { Tokenizer } from './model/tokenizer/types';

export const SYSTEM_PROMPT =
  'You are Kimi, a coding assistant running locally. The user\'s whole repository follows: every file under a header ' +
  'with its path, then a tree of all of them. Answer questions about it precisely; name files as path:line so they can be opened; ' +
  'say so when the answer is not in the repository.';

export const STOP_TOKENS = ['<|im_end|>', '[EOS]', '[EOT]'];

function turnStart(tok: Tokenizer, role: 'system' | 'user' | 'assistant'): number[] {
  const marker = role === 'system' ? '<|im_system|>' : role === 'user' ? '<|im_user|>' : '<|im_assistant|>';
  return [tok.specialId(marker), ...tok.encodeOrdinary(role), tok.specialId('<|im_middle|>')];
}

/** Tokens before the packed repository: the system turn's start and the system prompt. */
export function repoPreamble(tok: Tokenizer, system = SYSTEM_PROMPT): number[] {
  return [...turnStart(tok, 'system'), ...tok.encodeOrdinary(`${system}\n\n`)];
}

/**
 * The system turn's text when the repository travels as a chat message (to a remote
 * OpenAI-compatible server): exactly what repoPreamble, the packed text and repoClosing encode.
 */
export function repoSystemContent(packedText: string, system = SYSTEM_PROMPT): string {
  return `${system}\n\n${packedText}`;
}

/** Tokens after the packed repository: the end of the system turn. */
export function repoClosing(tok: Tokenizer): number[] {
  return [tok.specialId('<|im_end|>')];
}

export function questionText(question: string, selection?: Selection): string {
  if (!selection) return question;
  const lines = selection.startLine === selection.endLine ? `line ${selection.startLine}` : `lines ${selection.startLine}-${selection.endLine}`;
  return `${question}\n\nThe code in question is ${selection.path}, ${lines}:\n\`\`\`\n${selection.text}\n\`\`\``;
}

/** The turns after the repository: earlier exchanges, the question, and the assistant's opening. */
export function questionTokens(tok: Tokenizer, question: string, history: ChatTurn[] = [], selection?: Selection): number[] {
  const end = tok.specialId('<|im_end|>');
  const ids: number[] = [];
  for (const turn of history) ids.push(...turnStart(tok, turn.role), ...tok.encodeOrdinary(turn.content), end);
  ids.push(...turnStart(tok, 'user'), ...tok.encodeOrdinary(questionText(question, selection)), end);
  ids.push(...turnStart(tok, 'assistant'));
  return ids;
}

export function stopIds(tok: Tokenizer): Set<number> {
  const ids = new Set<number>();
  for (const name of STOP_TOKENS) {
    if (tok.specialTokens.has(name)) ids.add(tok.specialTokens.get(name)!);
  }
  return ids;
}
