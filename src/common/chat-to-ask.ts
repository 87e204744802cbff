/**
 * Chat messages from outside (OpenAI requests, VS Code's language model API, its chat) as one ask:
 * the last message is the question, the earlier ones its history. The repository fills the
 * system turn, so any other system text goes in front of the first user turn.
 */
import type { AskRequest, ChatTurn } from '../engine/api';
import { UserError } from './errors';

export interface ChatText {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

export function askFromChat(messages: readonly ChatText[]): Pick<AskRequest, 'question' | 'history'> {
  const system = messages.filter((m) => m.role === 'system').map((m) => m.content);
  const turns: ChatTurn[] = messages.filter((m): m is ChatText & ChatTurn => m.role !== 'system').map((m) => ({ role: m.role, content: m.content }));
  if (turns.length === 0 || turns[turns.length - 1].role !== 'user') throw new UserError('the last message must be the user\'s: the model answers it');
  const firstUser = turns.findIndex((t) => t.role === 'user');
  if (system.length > 0) turns[firstUser] = { role: 'user', content: `${system.join('\n\n')}\n\n${turns[firstUser].content}` };
  const question = turns.pop()!;
  return { question: question.content, history: turns };
}
