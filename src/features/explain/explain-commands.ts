/**
 * "Explain Selection" (command, editor context menu, keybinding) and the two CodeLens actions,
 * "Explain" and "Where is this used?". Each sends the code with its file and lines to the chat,
 * where the answer streams from the cached repository state.
 */
import * as vscode from 'vscode';
import { samplingFrom } from '../../client/settings';
import type { Command } from '../commands';
import { type ChatSink, explainSelection, explainSymbol, whereUsed } from './explain-request';
import { selectionOf } from './editor-selection';

export function explainCommands(chat: ChatSink): Record<string, Command> {
  const settings = () => samplingFrom(vscode.workspace.getConfiguration('kimiLinear'));
  return {
    // A plain command rather than a text editor command, so that executeCommand resolves when the answer is complete.
    'kimiLinear.explainSelection': () => {
      const editor = vscode.window.activeTextEditor;
      if (!editor) {
        void vscode.window.showInformationMessage('Kimi Linear: open a file and select the code to explain first.');
        return;
      }
      if (!trusted()) return;
      const range = editor.selection.isEmpty ? editor.document.lineAt(editor.selection.active.line).range : editor.selection;
      if (editor.document.getText(range).trim() === '') {
        void vscode.window.showInformationMessage('Kimi Linear: select the code to explain first.');
        return;
      }
      return chat.submit(explainSelection(selectionOf(editor.document, range), settings()));
    },
    'kimiLinear.explainSymbol': async (uri: vscode.Uri, range: vscode.Range, name: string) => {
      if (!trusted()) return;
      const document = await vscode.workspace.openTextDocument(uri);
      return chat.submit(explainSymbol(name, selectionOf(document, range), settings()));
    },
    'kimiLinear.findUsages': async (uri: vscode.Uri, range: vscode.Range, name: string) => {
      if (!trusted()) return;
      const document = await vscode.workspace.openTextDocument(uri);
      return chat.submit(whereUsed(name, selectionOf(document, range), settings()));
    },
  };
}

export function trusted(): boolean {
  if (vscode.workspace.isTrusted) return true;
  void vscode.window.showWarningMessage('Kimi Linear does not read this workspace in restricted mode. Trust the workspace to ask about its code.', 'Manage Workspace Trust')
    .then((pick) => pick && vscode.commands.executeCommand('workbench.trust.manage'));
  return false;
}
