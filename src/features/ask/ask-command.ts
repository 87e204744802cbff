/** "Ask About This Repository…": a question from an input box, answered in the chat from the cached state. */
import * as vscode from 'vscode';
import { samplingFrom } from '../../client/settings';
import type { Command } from '../commands';
import { trusted } from '../explain/explain-commands';
import type { ChatSink } from '../explain/explain-request';

export function askCommand(chat: ChatSink): Command {
  return async (preset?: string) => {
    if (!trusted()) return;
    const question = typeof preset === 'string' && preset.trim() !== '' ? preset : await vscode.window.showInputBox({
      title: 'Ask Kimi Linear about this repository',
      prompt: 'The whole workspace is in the model\'s context; ask about architecture, data flow, where something happens…',
      placeHolder: 'e.g. Where are user sessions created and how do they expire?',
      ignoreFocusOut: true,
      validateInput: (v) => (v.trim() === '' ? 'Type a question.' : undefined),
    });
    if (!question?.trim()) return;
    await chat.submit({ display: question.trim(), request: { question: question.trim(), sampling: samplingFrom(vscode.workspace.getConfiguration('kimiLinear')) } });
  };
}
