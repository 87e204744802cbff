/** The document symbols of a file, from whatever language extension provides them. */
import * as vscode from 'vscode';

/** Functions, classes and their kin: the symbols worth an "Explain" lens or a summary (constructors would only repeat their class). */
export const ANNOTATED_KINDS: ReadonlySet<number> = new Set([
  vscode.SymbolKind.Function, vscode.SymbolKind.Method, vscode.SymbolKind.Class,
  vscode.SymbolKind.Interface, vscode.SymbolKind.Struct, vscode.SymbolKind.Enum,
]);

export async function documentSymbols(uri: vscode.Uri): Promise<vscode.DocumentSymbol[]> {
  const found = await vscode.commands.executeCommand<(vscode.DocumentSymbol | vscode.SymbolInformation)[] | undefined>(
    'vscode.executeDocumentSymbolProvider', uri,
  );
  // Providers that only know SymbolInformation give no hierarchy and no selection range.
  return (found ?? []).filter((s): s is vscode.DocumentSymbol => 'selectionRange' in s);
}

export function annotationsEnabled(): boolean {
  return vscode.workspace.getConfiguration('kimiLinear').get<boolean>('annotations.enabled') ?? true;
}
