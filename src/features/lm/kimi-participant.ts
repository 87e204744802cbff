/**
 * `@kimi` in VS Code's chat: answers from the ingested workspace state through the same engine
 * client as the chat panel, which stays the primary surface (file links, history, cancel). The
 * participant's own earlier turns are sent along as history.
 */
import * as vscode from 'vscode';
import type { EngineClient } from '../../client/engine-client';
import { samplingFrom } from '../../client/settings';
import { isCancelled, userMessageOf } from '../../client/engine-errors';
import type { ChatTurn } from '../../engine/api';

export const PARTICIPANT_ID = 'kimiLinear.kimi';

function historyOf(context: vscode.ChatContext): ChatTurn[] {
  const turns: ChatTurn[] = [];
  for (const turn of context.history) {
    if (turn instanceof vscode.ChatRequestTurn) turns.push({ role: 'user', content: turn.prompt });
    else if (turn instanceof vscode.ChatResponseTurn) {
      const text = turn.response.map((part) => (part instanceof vscode.ChatResponseMarkdownPart ? part.value.value : '')).join('');
      turns.push({ role: 'assistant', content: text });
    }
  }
  return turns;
}

/** Registers @kimi where the host has the chat participant API; undefined where it does not. */
export function registerKimiParticipant(client: EngineClient, extensionUri: vscode.Uri, config: () => vscode.WorkspaceConfiguration): vscode.Disposable | undefined {
  if (typeof vscode.chat?.createChatParticipant !== 'function') return undefined;
  const participant = vscode.chat.createChatParticipant(PARTICIPANT_ID, async (request, context, stream, token) => {
    const controller = new AbortController();
    const cancel = token.onCancellationRequested(() => controller.abort());
    try {
      stream.progress('Answering from the ingested repository…');
      await client.ask({ question: request.prompt, history: historyOf(context), sampling: samplingFrom(config()) }, (delta) => stream.markdown(delta), controller.signal);
      return {};
    } catch (e) {
      return isCancelled(e) ? {} : { errorDetails: { message: userMessageOf(e) } };
    } finally {
      cancel.dispose();
    }
  });
  participant.iconPath = vscode.Uri.joinPath(extensionUri, 'media', 'kimi.svg');
  return participant;
}
