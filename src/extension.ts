/**
 * Composition only: activate() builds one Ctx that creates the engine client and each feature and
 * owns their lifetimes. Nothing heavy happens here; the engine process starts on the first request
 * (opening the chat, an ingest, a question).
 */
import * as vscode from 'vscode';
import { join } from 'node:path';
import { EngineClient } from './client/engine-client';
import { userMessageOf } from './client/engine-errors';
import { UserError } from './common/errors';
import { openParamsFrom, packSettingsFrom } from './client/settings';
import type { ChatHistory } from './common/chat-protocol';
import type { IngestResult } from './engine/api';
import { ChatViewProvider, HISTORY_KEY } from './features/chat/chat-view';
import { createCommands, registerCommands } from './features/commands';
import { Annotator, type ShownAnnotation } from './features/annotations/annotator';
import { SymbolCodeLensProvider } from './features/annotations/code-lens';
import { IngestController } from './features/ingest/ingest-controller';
import { registerKimiChatModels } from './features/lm/kimi-chat-models';
import { registerKimiParticipant } from './features/lm/kimi-participant';
import { REMOTE_API_KEY_SECRET } from './features/remote/api-key';
import { OutsideChangeWatcher } from './features/ingest/outside-changes';
import { StaleTracker } from './features/ingest/stale-tracker';
import { StatusBar } from './features/status/status-bar';

/** What activate() returns: the extension-host tests read what the user would see through it. */
export interface KimiLinearApi {
  readonly client: EngineClient;
  statusBarText(): string;
  /** What screen readers announce for the status bar item. */
  statusBarAriaLabel(): string;
  shownAnnotations(uri: vscode.Uri): ShownAnnotation[];
  /** The chat history as saved for this workspace: what the chat panel shows. */
  chatHistory(): ChatHistory | undefined;
  /** The last ingest this session completed (Ingest Workspace or one started by a save). */
  lastIngestResult(): IngestResult | undefined;
}

/** Settings that need a new engine process when they change. */
const ENGINE_SETTINGS = ['kimiLinear.modelPath', 'kimiLinear.backend', 'kimiLinear.gpuMemoryLimit', 'kimiLinear.quantization', 'kimiLinear.remote'];

class Ctx implements vscode.Disposable {
  readonly log = vscode.window.createOutputChannel('Kimi Linear', { log: true });
  readonly client: EngineClient;
  readonly api: KimiLinearApi;
  private readonly disposables: vscode.Disposable[] = [];

  constructor(context: vscode.ExtensionContext) {
    const config = () => vscode.workspace.getConfiguration('kimiLinear');
    const roots = () => (vscode.workspace.workspaceFolders ?? []).filter((f) => f.uri.scheme === 'file').map((f) => f.uri.fsPath);
    const enginePath = context.asAbsolutePath(join('dist', 'engine-host.js'));
    this.client = new EngineClient({
      enginePath,
      openParams: async () => openParamsFrom(config(), join(context.globalStorageUri.fsPath, 'repo-states'), await context.secrets.get(REMOTE_API_KEY_SECRET)),
      workspace: () => {
        if (!vscode.workspace.isTrusted) {
          throw new UserError('Kimi Linear does not read this workspace in restricted mode. Trust the workspace (Manage Workspace Trust) to ask questions about it.');
        }
        return roots().length > 0 ? packSettingsFrom(config(), roots()) : undefined;
      },
      log: (line, level) => this.log[level](line),
    });

    const ingest = new IngestController(this.client, context.workspaceState, this.log);
    const statusBar = new StatusBar(this.client, ingest);
    const chat = new ChatViewProvider({ extensionUri: context.extensionUri, client: this.client, state: context.workspaceState, log: this.log });
    const annotator = new Annotator(this.client, context.workspaceState, this.log);
    const lenses = new SymbolCodeLensProvider();
    const outsideChanges = new OutsideChangeWatcher(this.log);
    this.api = {
      client: this.client,
      statusBarText: () => statusBar.text,
      statusBarAriaLabel: () => statusBar.ariaLabel,
      shownAnnotations: (uri) => annotator.shownFor(uri),
      chatHistory: () => context.workspaceState.get<ChatHistory>(HISTORY_KEY),
      lastIngestResult: () => ingest.lastResult,
    };

    // VS Code's own chat and model picker, where the host has those APIs.
    for (const registered of [registerKimiChatModels(this.client, config), registerKimiParticipant(this.client, context.extensionUri, config)]) {
      if (registered) this.disposables.push(registered);
    }
    this.disposables.push(
      this.log, ingest, statusBar, chat, annotator, lenses, outsideChanges,
      new StaleTracker(this.client, ingest, this.log, outsideChanges.onDidChange),
      vscode.window.registerWebviewViewProvider(ChatViewProvider.viewId, chat, { webviewOptions: { retainContextWhenHidden: true } }),
      vscode.languages.registerCodeLensProvider({ scheme: 'file' }, lenses),
      registerCommands(createCommands({ context, client: this.client, ingest, chat, annotator, log: this.log, enginePath })),
      context.secrets.onDidChange((e) => {
        if (e.key !== REMOTE_API_KEY_SECRET) return;
        this.log.info('remote API key changed: restarting the engine on the next request');
        this.client.restart().catch((err: unknown) => this.log.error(`engine restart failed: ${userMessageOf(err)}`));
      }),
      vscode.workspace.onDidChangeConfiguration((e) => {
        if (!ENGINE_SETTINGS.some((s) => e.affectsConfiguration(s))) return;
        this.log.info('model or backend setting changed: restarting the engine on the next request');
        this.client.restart().catch((err: unknown) => this.log.error(`engine restart failed: ${userMessageOf(err)}`));
      }),
    );
  }

  /** Stops the engine process politely; deactivate() waits for it. */
  async shutdown(): Promise<void> {
    await this.client.dispose();
  }

  dispose(): void {
    for (const d of this.disposables.reverse()) d.dispose();
    void this.client.dispose();
  }
}

let ctx: Ctx | undefined;

export function activate(context: vscode.ExtensionContext): KimiLinearApi {
  ctx = new Ctx(context);
  context.subscriptions.push(ctx);
  return ctx.api;
}

export async function deactivate(): Promise<void> {
  const current = ctx;
  ctx = undefined;
  await current?.shutdown();
}
