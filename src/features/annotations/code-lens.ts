/** "Explain" and "Where is this used?" above every function and class, while annotations are enabled. */
import * as vscode from 'vscode';
import { lensTargets } from './symbol-targets';
import { ANNOTATED_KINDS, annotationsEnabled, documentSymbols } from './symbols';

export class SymbolCodeLensProvider implements vscode.CodeLensProvider, vscode.Disposable {
  private readonly changeEmitter = new vscode.EventEmitter<void>();
  readonly onDidChangeCodeLenses = this.changeEmitter.event;
  private readonly configWatch = vscode.workspace.onDidChangeConfiguration((e) => {
    if (e.affectsConfiguration('kimiLinear.annotations.enabled')) this.changeEmitter.fire();
  });

  async provideCodeLenses(document: vscode.TextDocument): Promise<vscode.CodeLens[]> {
    if (!annotationsEnabled() || !vscode.workspace.isTrusted) return [];
    const symbols = lensTargets(await documentSymbols(document.uri), ANNOTATED_KINDS);
    return symbols.flatMap((s) => {
      const at = new vscode.Range(s.selectionRange.start.line, 0, s.selectionRange.start.line, 0);
      const args = [document.uri, s.range, s.name];
      return [
        new vscode.CodeLens(at, { title: '$(sparkle) Explain', tooltip: `Explain ${s.name} with Kimi Linear`, command: 'kimiLinear.explainSymbol', arguments: args }),
        new vscode.CodeLens(at, { title: 'Where is this used?', tooltip: `Ask Kimi Linear where ${s.name} is used`, command: 'kimiLinear.findUsages', arguments: args }),
      ];
    });
  }

  dispose(): void {
    this.configWatch.dispose();
    this.changeEmitter.dispose();
  }
}
