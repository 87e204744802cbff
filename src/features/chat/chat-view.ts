/**
 * The chat panel's host side: owns the history (persisted per workspace), streams answers from
 * the engine into the webview, and does what the webview may not do itself (open files, resolve
 * paths against the workspace, clipboard, open web links).
 */
import * as vscode from 'vscode';
import { randomBytes, randomUUID } from 'node:crypto';
import type { AskRequest, AskResult } from '../../engine/api';
import type { EngineClient } from '../../client/engine-client';
import { isCancelled, userMessageOf } from '../../client/engine-errors';
import { samplingFrom } from '../../client/settings';
import type { ChatAction, ChatHistory, HostMessage, WebviewMessage } from '../../common/chat-protocol';
import { headerOf } from './header';
import { reduceHistory, restoreHistory, turnsForEngine } from './history';
import { candidateFiles, firstFileInside, packedRoots } from './file-targets';
import { parseWebviewMessage } from './webview-message';
import { userEntryText } from './user-entry';

const STOP_WORDS: Record<AskResult['stopReason'], string> = { eos: 'ended by the model', max_tokens: 'reached the token limit', cancelled: 'stopped' };

export const HISTORY_KEY = 'kimiLinear.chat.history';
/** While an answer streams, the history is saved at most this often (and always when it ends). */
const SAVE_INTERVAL_MS = 1000;

export interface ChatViewDeps {
  extensionUri: vscode.Uri;
  client: Pick<EngineClient, 'ask' | 'status' | 'onDidChangeStatus' | 'lastStatus'>;
  state: vscode.Memento;
  log: vscode.LogOutputChannel;
}

export interface ChatSubmission {
  display: string;
  request: AskRequest;
}

export class ChatViewProvider implements vscode.WebviewViewProvider, vscode.Disposable {
  static readonly viewId = 'kimiLinear.chat';
  private view: vscode.WebviewView | undefined;
  private history: ChatHistory;
  private running: { answerId: string; abort: AbortController; done: Promise<void> } | undefined;
  private saveTimer: ReturnType<typeof setTimeout> | undefined;
  /** Saves run one after another, so an older history never overwrites a newer one. */
  private saving: Promise<void> = Promise.resolve();
  private readonly disposables: vscode.Disposable[] = [];

  constructor(private readonly deps: ChatViewDeps) {
    this.history = restoreHistory(deps.state.get(HISTORY_KEY), randomUUID(), Date.now());
    const sub = deps.client.onDidChangeStatus(() => this.postHeader());
    this.disposables.push(
      { dispose: () => sub.dispose() },
      vscode.workspace.onDidGrantWorkspaceTrust(() => {
        this.postHeader();
        if (this.view) this.startEngine();
      }),
    );
  }

  resolveWebviewView(view: vscode.WebviewView): void {
    this.view = view;
    const dist = vscode.Uri.joinPath(this.deps.extensionUri, 'dist', 'webview');
    view.webview.options = { enableScripts: true, localResourceRoots: [dist, vscode.Uri.joinPath(this.deps.extensionUri, 'media')] };
    view.webview.html = this.html(view.webview, dist);
    const listeners = [
      view.webview.onDidReceiveMessage((raw: unknown) => {
        const m = parseWebviewMessage(raw);
        if (typeof m === 'string') {
          this.deps.log.warn(`chat: ignored a message from the webview: ${m}`);
          return;
        }
        this.onMessage(m).catch((e) => this.deps.log.error(`chat: handling ${m.type} failed: ${e instanceof Error ? e.stack ?? e.message : String(e)}`));
      }),
      view.onDidDispose(() => {
        if (this.view === view) this.view = undefined;
        for (const l of listeners) l.dispose();
      }),
    ];
  }

  /** Shows the panel and streams the answer to `p` into it; a running answer is stopped first. */
  async submit(p: ChatSubmission): Promise<void> {
    await this.stop();
    await this.reveal();
    const request: AskRequest = { ...p.request, history: p.request.history ?? turnsForEngine(this.history) };
    const answerId = randomUUID();
    this.apply({
      kind: 'turnStarted',
      user: { id: randomUUID(), role: 'user', text: userEntryText(p.display, request.selection), state: 'done' },
      assistant: { id: answerId, role: 'assistant', text: '', state: 'streaming' },
    });
    const abort = new AbortController();
    const done = this.stream(answerId, request, abort.signal);
    this.running = { answerId, abort, done };
    this.post({ type: 'busy', busy: true });
    try {
      await done;
    } finally {
      if (this.running?.answerId === answerId) {
        this.running = undefined;
        this.post({ type: 'busy', busy: false });
      }
    }
    // Callers (commands, tests) that await submit see the finished answer in the saved history.
    await this.saving;
  }

  newChat(): void {
    void this.stop();
    this.apply({ kind: 'newChat', id: randomUUID(), createdAt: Date.now() });
    this.post({ type: 'focusInput' });
  }

  clearHistory(): void {
    void this.stop();
    this.apply({ kind: 'clear', id: randomUUID(), createdAt: Date.now() });
  }

  dispose(): void {
    this.running?.abort.abort();
    if (this.saveTimer) clearTimeout(this.saveTimer);
    void this.save();
    for (const d of this.disposables) d.dispose();
  }

  private async stream(answerId: string, request: AskRequest, signal: AbortSignal): Promise<void> {
    try {
      const result = await this.deps.client.ask(request, (text) => this.apply({ kind: 'delta', id: answerId, text }), signal);
      this.deps.log.info(`chat: answered in ${result.tokens} tokens (${STOP_WORDS[result.stopReason]}; first token after ${Math.round(result.ttftMs)} ms, ${result.decodeTokensPerSecond.toFixed(1)} tokens/s)`);
      this.apply({
        kind: 'turnEnded',
        id: answerId,
        state: result.stopReason === 'cancelled' ? 'stopped' : 'done',
        stats: { tokens: result.tokens, ttftMs: result.ttftMs, decodeTokensPerSecond: result.decodeTokensPerSecond },
      });
    } catch (e) {
      if (isCancelled(e) || signal.aborted) {
        this.apply({ kind: 'turnEnded', id: answerId, state: 'stopped' });
        return;
      }
      const message = userMessageOf(e);
      this.deps.log.error(`chat: ask failed: ${e instanceof Error ? e.stack ?? e.message : String(e)}`);
      this.apply({ kind: 'turnEnded', id: answerId, state: 'error', error: message });
    }
  }

  private async stop(): Promise<void> {
    const running = this.running;
    if (!running) return;
    running.abort.abort();
    await running.done;
  }

  private async reveal(): Promise<void> {
    if (this.view) this.view.show(true);
    else await vscode.commands.executeCommand(`${ChatViewProvider.viewId}.focus`);
  }

  private apply(action: ChatAction): void {
    this.history = reduceHistory(this.history, action);
    this.post({ type: 'action', action });
    if (action.kind === 'delta') {
      this.saveTimer ??= setTimeout(() => {
        this.saveTimer = undefined;
        void this.save();
      }, SAVE_INTERVAL_MS);
    } else {
      if (this.saveTimer) clearTimeout(this.saveTimer);
      this.saveTimer = undefined;
      void this.save();
    }
  }

  private save(): Promise<void> {
    this.saving = this.saving.then(async () => {
      try {
        await this.deps.state.update(HISTORY_KEY, this.history);
      } catch (e) {
        this.deps.log.warn(`chat: could not save the history: ${e instanceof Error ? e.message : String(e)}`);
      }
    });
    return this.saving;
  }

  /** Opening the panel is a request for the repository's state; in restricted mode no engine runs. */
  private startEngine(): void {
    if (!vscode.workspace.isTrusted) return;
    this.deps.client.status().catch((e) => this.deps.log.warn(`chat: engine status: ${userMessageOf(e)}`));
  }

  private postHeader(): void {
    this.post({ type: 'header', header: headerOf(this.deps.client.lastStatus, vscode.workspace.isTrusted) });
  }

  private post(m: HostMessage): void {
    void this.view?.webview.postMessage(m);
  }

  private async onMessage(m: WebviewMessage): Promise<void> {
    switch (m.type) {
      case 'ready':
        this.post({ type: 'init', history: this.history, header: headerOf(this.deps.client.lastStatus, vscode.workspace.isTrusted), busy: this.running !== undefined });
        this.startEngine();
        return;
      case 'ask': {
        const question = m.question.trim();
        if (question === '') return;
        await this.submit({ display: question, request: { question, sampling: samplingFrom(vscode.workspace.getConfiguration('kimiLinear')) } });
        return;
      }
      case 'stop':
        await this.stop();
        return;
      case 'newChat':
        this.newChat();
        return;
      case 'clear':
        this.clearHistory();
        return;
      case 'switchChat':
        if (this.running) await this.stop();
        this.apply({ kind: 'switchChat', id: m.id });
        return;
      case 'ingest':
        await vscode.commands.executeCommand('kimiLinear.ingestWorkspace');
        return;
      case 'manageTrust':
        await vscode.commands.executeCommand('workbench.trust.manage');
        return;
      case 'resolvePaths': {
        const entries = await Promise.all(m.paths.slice(0, 200).map(async (p) => [p, (await this.resolveFile(p)) !== undefined] as const));
        this.post({ type: 'paths', resolved: Object.fromEntries(entries) });
        return;
      }
      case 'openFile':
        await this.openFile(m.path, m.line, m.endLine, m.column);
        return;
      case 'openExternal':
        if (/^https?:\/\//i.test(m.url)) await vscode.env.openExternal(vscode.Uri.parse(m.url, true));
        return;
      case 'copy':
        await vscode.env.clipboard.writeText(m.text);
        vscode.window.setStatusBarMessage('Copied to the clipboard', 2000);
        return;
    }
  }

  /** The workspace file a path in an answer names, or undefined when there is none. */
  private async resolveFile(written: string): Promise<vscode.Uri | undefined> {
    const roots = packedRoots((vscode.workspace.workspaceFolders ?? []).filter((f) => f.uri.scheme === 'file').map((f) => f.uri.fsPath));
    const file = await firstFileInside(candidateFiles(written, roots), roots);
    return file === undefined ? undefined : vscode.Uri.file(file);
  }

  private async openFile(path: string, line?: number, endLine?: number, column?: number): Promise<void> {
    const uri = await this.resolveFile(path);
    if (!uri) {
      void vscode.window.showWarningMessage(`Kimi Linear: ${path} is not a file in this workspace (it may have been moved or deleted).`);
      return;
    }
    const doc = await vscode.workspace.openTextDocument(uri);
    const last = doc.lineCount - 1;
    const start = Math.min(Math.max((line ?? 1) - 1, 0), last);
    const end = Math.min(Math.max((endLine ?? line ?? 1) - 1, start), last);
    const col = Math.min(Math.max((column ?? 1) - 1, 0), doc.lineAt(start).text.length);
    const editor = await vscode.window.showTextDocument(doc, {
      viewColumn: vscode.ViewColumn.One,
      preview: true,
      selection: new vscode.Range(start, col, start, col),
    });
    editor.revealRange(new vscode.Range(start, 0, end, 0), vscode.TextEditorRevealType.InCenterIfOutsideViewport);
  }

  private html(webview: vscode.Webview, dist: vscode.Uri): string {
    const nonce = randomBytes(16).toString('base64');
    const script = webview.asWebviewUri(vscode.Uri.joinPath(dist, 'chat.js'));
    const style = webview.asWebviewUri(vscode.Uri.joinPath(dist, 'chat.css'));
    const csp = [
      "default-src 'none'",
      `style-src ${webview.cspSource}`,
      `font-src ${webview.cspSource}`,
      `img-src ${webview.cspSource} data:`,
      `script-src 'nonce-${nonce}'`,
    ].join('; ');
    return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="UTF-8">
<meta http-equiv="Content-Security-Policy" content="${csp}">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<link rel="stylesheet" href="${style.toString()}">
<title>Kimi Linear Chat</title>
</head>
<body>
<div id="klc-chat"></div>
<script nonce="${nonce}" src="${script.toString()}"></script>
</body>
</html>`;
  }
}
