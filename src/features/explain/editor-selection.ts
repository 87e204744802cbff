/** The engine's Selection for a range of an open document. */
import * as vscode from 'vscode';
import type { Selection } from '../../engine/api';
import { workspacePath } from './workspace-path';

export function selectionOf(document: vscode.TextDocument, range: vscode.Range): Selection {
  const roots = (vscode.workspace.workspaceFolders ?? []).filter((f) => f.uri.scheme === 'file').map((f) => f.uri.fsPath);
  // A selection that ends at the start of a line does not include that line.
  const lastLine = range.end.character === 0 && range.end.line > range.start.line ? range.end.line - 1 : range.end.line;
  return {
    path: document.uri.scheme === 'file' ? workspacePath(document.uri.fsPath, roots) : vscode.workspace.asRelativePath(document.uri),
    startLine: range.start.line + 1,
    endLine: lastLine + 1,
    text: document.getText(range),
  };
}
