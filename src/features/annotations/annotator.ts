/**
 * "Annotate File": a one-line summary per top-level symbol, shown at the end of the symbol's first
 * line. Summaries are cached by the file's content hash (and kept in workspace state), so they
 * come back for the same text; any edit hides them, because they describe the text they were
 * made from.
 */
import * as vscode from 'vscode';
import type { EngineClient } from '../../client/engine-client';
import { isCancelled, userMessageOf } from '../../client/engine-errors';
import { selectionOf } from '../explain/editor-selection';
import { trusted } from '../explain/explain-commands';
import { AnnotationCache, contentHash, type Summaries } from './annotation-cache';
import { summarizeAll } from './summarize';
import { summaryRequest } from './summary';
import { symbolKey, topLevelTargets } from './symbol-targets';
import { ANNOTATED_KINDS, annotationsEnabled, documentSymbols } from './symbols';

const CACHE_KEY = 'kimiLinear.annotations';

export interface ShownAnnotation {
  /** 0-based line the summary is drawn at. */
  line: number;
  text: string;
}

export class Annotator implements vscode.Disposable {
  private readonly decoration = vscode.window.createTextEditorDecorationType({
    after: { margin: '0 0 0 2em', color: new vscode.ThemeColor('editorCodeLens.foreground'), fontStyle: 'italic' },
    rangeBehavior: vscode.DecorationRangeBehavior.ClosedClosed,
  });
  private readonly cache: AnnotationCache;
  /** What is drawn now, per document URI. */
  private readonly shown = new Map<string, ShownAnnotation[]>();
  /** Documents annotated in this session, whose edits are checked against the cache. */
  private readonly annotated = new Set<string>();
  private readonly subscriptions: vscode.Disposable[];

  constructor(private readonly client: EngineClient, private readonly state: vscode.Memento, private readonly log: vscode.LogOutputChannel) {
    this.cache = new AnnotationCache(200, state.get(CACHE_KEY));
    this.subscriptions = [
      vscode.workspace.onDidChangeTextDocument((e) => {
        if (e.contentChanges.length === 0) return;
        this.hide(e.document);
        // An undo back to annotated text brings its summaries back.
        if (this.annotated.has(e.document.uri.toString()) && annotationsEnabled()) {
          const hash = contentHash(e.document.getText());
          if (this.cache.get(hash)) void this.draw(e.document, hash);
        }
      }),
      vscode.window.onDidChangeVisibleTextEditors((editors) => void this.showCached(editors)),
      vscode.workspace.onDidChangeConfiguration((e) => {
        if (e.affectsConfiguration('kimiLinear.annotations.enabled')) void this.refreshAll();
      }),
    ];
  }

  /** The summaries drawn in a document now (read by the e2e suite). */
  shownFor(uri: vscode.Uri): ShownAnnotation[] {
    return this.shown.get(uri.toString()) ?? [];
  }

  async annotate(document: vscode.TextDocument): Promise<void> {
    if (!trusted()) return;
    if (!annotationsEnabled()) {
      const pick = await vscode.window.showInformationMessage('Kimi Linear annotations are turned off.', 'Turn On');
      if (pick !== 'Turn On') return;
      await vscode.workspace.getConfiguration('kimiLinear').update('annotations.enabled', true, vscode.ConfigurationTarget.Global);
    }
    const version = document.version;
    this.annotated.add(document.uri.toString());
    const hash = contentHash(document.getText());
    const symbols = topLevelTargets(await documentSymbols(document.uri), ANNOTATED_KINDS);
    if (symbols.length === 0) {
      void vscode.window.showInformationMessage(`Kimi Linear: no functions or classes found in ${vscode.workspace.asRelativePath(document.uri)} (is a language extension for it installed?).`);
      return;
    }
    const summaries: Summaries = { ...this.cache.get(hash) };
    const missing = symbols.filter((s) => summaries[symbolKey(s)] === undefined);
    const abort = new AbortController();
    const edited = vscode.workspace.onDidChangeTextDocument((e) => {
      if (e.document === document && e.document.version !== version) abort.abort();
    });
    try {
      await vscode.window.withProgress(
        { location: vscode.ProgressLocation.Notification, title: `Kimi Linear: annotating ${vscode.workspace.asRelativePath(document.uri)}`, cancellable: true },
        async (progress, token) => {
          token.onCancellationRequested(() => abort.abort());
          let done = 0;
          progress.report({ message: `0/${missing.length}` });
          await summarizeAll(this.client, missing, (s) => summaryRequest(s.name, selectionOf(document, s.range)), (s, summary) => {
            summaries[symbolKey(s)] = summary;
            this.cache.set(hash, { ...summaries });
            done++;
            progress.report({ message: `${s.name} (${done}/${missing.length})`, increment: 100 / missing.length });
          }, abort.signal);
        },
      );
    } catch (e) {
      if (!isCancelled(e)) {
        const message = userMessageOf(e);
        this.log.error(`annotate failed: ${message}`);
        void vscode.window.showErrorMessage(message, 'Show Logs').then((pick) => pick && this.log.show());
      }
    } finally {
      edited.dispose();
      await this.state.update(CACHE_KEY, this.cache.toJSON());
    }
    if (document.version === version) await this.draw(document, hash);
  }

  async toggle(): Promise<void> {
    const config = vscode.workspace.getConfiguration('kimiLinear');
    const inspected = config.inspect<boolean>('annotations.enabled');
    // Change the setting where it is set, so that a workspace value does not override the toggle.
    const target = inspected?.workspaceFolderValue !== undefined ? vscode.ConfigurationTarget.WorkspaceFolder
      : inspected?.workspaceValue !== undefined ? vscode.ConfigurationTarget.Workspace : vscode.ConfigurationTarget.Global;
    await config.update('annotations.enabled', !annotationsEnabled(), target);
  }

  dispose(): void {
    for (const s of this.subscriptions) s.dispose();
    this.decoration.dispose();
  }

  private async refreshAll(): Promise<void> {
    if (!annotationsEnabled()) {
      for (const editor of vscode.window.visibleTextEditors) editor.setDecorations(this.decoration, []);
      this.shown.clear();
      return;
    }
    await this.showCached(vscode.window.visibleTextEditors);
  }

  private async showCached(editors: readonly vscode.TextEditor[]): Promise<void> {
    if (!annotationsEnabled()) return;
    for (const editor of editors) {
      const hash = contentHash(editor.document.getText());
      if (this.cache.get(hash)) await this.draw(editor.document, hash);
    }
  }

  private async draw(document: vscode.TextDocument, hash: string): Promise<void> {
    const summaries = this.cache.get(hash);
    if (!summaries || !annotationsEnabled()) return;
    const symbols = topLevelTargets(await documentSymbols(document.uri), ANNOTATED_KINDS);
    if (contentHash(document.getText()) !== hash) return;
    const shown: ShownAnnotation[] = [];
    const options: vscode.DecorationOptions[] = [];
    for (const s of symbols) {
      const text = summaries[symbolKey(s)];
      if (!text) continue;
      const line = s.selectionRange.start.line;
      const end = document.lineAt(line).range.end;
      shown.push({ line, text });
      options.push({ range: new vscode.Range(end, end), hoverMessage: `Kimi Linear: ${text}`, renderOptions: { after: { contentText: `— ${text}` } } });
    }
    this.shown.set(document.uri.toString(), shown);
    for (const editor of vscode.window.visibleTextEditors) {
      if (editor.document === document) editor.setDecorations(this.decoration, options);
    }
  }

  private hide(document: vscode.TextDocument): void {
    if (!this.shown.delete(document.uri.toString())) return;
    for (const editor of vscode.window.visibleTextEditors) {
      if (editor.document === document) editor.setDecorations(this.decoration, []);
    }
  }
}
