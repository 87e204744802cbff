/** The chat submissions made by "Explain Selection", "Explain" and "Where is this used?". */
import type { AskRequest, SamplingOptions, Selection } from '../../engine/api';

export interface ChatSubmission {
  /** What the chat shows as the user's message (markdown). */
  display: string;
  request: AskRequest;
}

export function lineRange(selection: Selection): string {
  return selection.startLine === selection.endLine
    ? `${selection.path}:${selection.startLine}`
    : `${selection.path}:${selection.startLine}-${selection.endLine}`;
}

export function explainSelection(selection: Selection, sampling: Partial<SamplingOptions>): ChatSubmission {
  const where = lineRange(selection);
  return {
    display: `Explain \`${where}\``,
    request: {
      question: `Explain the selected code from ${where}: what it does, why, and how it connects to the rest of the repository (its callers, the definitions it uses, and the files involved).`,
      selection,
      sampling,
    },
  };
}

export function explainSymbol(name: string, selection: Selection, sampling: Partial<SamplingOptions>): ChatSubmission {
  const where = lineRange(selection);
  return {
    display: `Explain \`${name}\` (\`${where}\`)`,
    request: {
      question: `Explain \`${name}\`, defined at ${where}: its purpose, its inputs and outputs, and how the rest of the repository uses it.`,
      selection,
      sampling,
    },
  };
}

export function whereUsed(name: string, selection: Selection, sampling: Partial<SamplingOptions>): ChatSubmission {
  const where = lineRange(selection);
  return {
    display: `Where is \`${name}\` used? (\`${where}\`)`,
    request: {
      question: `Where is \`${name}\` (defined at ${where}) used in this repository? List each file and line that refers to it as path:line, with one sentence on what each use does.`,
      selection,
      sampling,
    },
  };
}

/** Where explanations go: the chat view (src/features/chat/chat-view.ts) implements it. */
export interface ChatSink {
  submit(p: ChatSubmission): Promise<void>;
}
