/**
 * "Ingest Workspace": one ingest at a time, shown as a cancellable progress notification (or in
 * the window's progress area when it started by itself after a save), with the outcome remembered
 * in workspace state so that the status bar can speak of the saved state after a reload.
 */
import * as vscode from 'vscode';
import type { EngineClient } from '../../client/engine-client';
import { isCancelled, userMessageOf } from '../../client/engine-errors';
import { packSettingsFrom } from '../../client/settings';
import type { IngestResult } from '../../engine/api';
import type { SavedIngest } from '../status/status-view';
import { progressMessage, progressPercent, resultMessage } from './progress-text';

export const SAVED_INGEST_KEY = 'kimiLinear.lastIngest';

export interface IngestRun {
  /** True when started by a save with kimiLinear.autoIngest on: no notification, no pop-ups on success. */
  background?: boolean;
}

export class IngestController implements vscode.Disposable {
  private running: { promise: Promise<IngestResult | undefined>; abort: AbortController } | undefined;
  private last: IngestResult | undefined;
  private readonly changeEmitter = new vscode.EventEmitter<SavedIngest | null>();
  /** Fires when the remembered last ingest changes. */
  readonly onDidChangeSaved = this.changeEmitter.event;

  constructor(
    private readonly client: EngineClient,
    private readonly state: vscode.Memento,
    private readonly log: vscode.LogOutputChannel,
  ) {}

  get saved(): SavedIngest | null {
    return this.state.get<SavedIngest>(SAVED_INGEST_KEY) ?? null;
  }

  get busy(): boolean {
    return this.running !== undefined;
  }

  /** The result of the last ingest this session completed, including those started by saves. */
  get lastResult(): IngestResult | undefined {
    return this.last;
  }

  /** Resolves to the result, or undefined when cancelled, refused or failed (the user was told). */
  run(options: IngestRun = {}): Promise<IngestResult | undefined> {
    if (this.running) return this.running.promise;
    if (!vscode.workspace.isTrusted) {
      void vscode.window.showWarningMessage('Kimi Linear does not ingest workspaces in restricted mode. Trust this workspace to ask questions about it.', 'Manage Workspace Trust')
        .then((pick) => pick && vscode.commands.executeCommand('workbench.trust.manage'));
      return Promise.resolve(undefined);
    }
    const folders = vscode.workspace.workspaceFolders ?? [];
    const roots = folders.filter((f) => f.uri.scheme === 'file').map((f) => f.uri.fsPath);
    if (roots.length === 0) {
      void vscode.window.showInformationMessage('Kimi Linear: open a folder first; there is no workspace on disk to ingest.');
      return Promise.resolve(undefined);
    }
    const abort = new AbortController();
    const promise = this.ingest(roots, abort, options).finally(() => {
      this.running = undefined;
    });
    this.running = { promise, abort };
    return promise;
  }

  /**
   * Cancels the ingest in flight, whether this controller started it or a question did (an ask
   * ingests the workspace first when the engine has no state). Returns whether there was one.
   */
  cancel(): boolean {
    const own = this.running !== undefined;
    this.running?.abort.abort();
    return this.client.cancelIngest() || own;
  }

  dispose(): void {
    this.cancel();
    this.changeEmitter.dispose();
  }

  private async ingest(roots: string[], abort: AbortController, options: IngestRun): Promise<IngestResult | undefined> {
    const settings = packSettingsFrom(vscode.workspace.getConfiguration('kimiLinear'), roots);
    this.log.info(`ingest of ${roots.join(', ')} started`);
    try {
      const result = await vscode.window.withProgress(
        {
          location: options.background ? vscode.ProgressLocation.Window : vscode.ProgressLocation.Notification,
          title: 'Kimi Linear: ingesting workspace',
          cancellable: !options.background,
        },
        (progress, token) => {
          token.onCancellationRequested(() => abort.abort());
          let reported = 0;
          return this.client.ingest(settings, (p) => {
            const percent = progressPercent(p);
            progress.report({ message: progressMessage(p), increment: Math.max(0, percent - reported) });
            reported = Math.max(reported, percent);
          }, abort.signal);
        },
      );
      this.last = result;
      const message = resultMessage(result);
      this.log.info(message);
      await this.state.update(SAVED_INGEST_KEY, { files: result.files, tokens: result.tokens, at: Date.now() } satisfies SavedIngest);
      this.changeEmitter.fire(this.saved);
      if (!options.background) void vscode.window.showInformationMessage(message, 'Open Chat').then((pick) => pick && vscode.commands.executeCommand('kimiLinear.chat.focus'));
      return result;
    } catch (e) {
      if (isCancelled(e)) {
        this.log.info('ingest cancelled');
        void vscode.window.showInformationMessage('Kimi Linear: ingest cancelled. Run Ingest Workspace to continue.');
        return undefined;
      }
      const message = userMessageOf(e);
      this.log.error(`ingest failed: ${message}`);
      void vscode.window.showErrorMessage(message, 'Show Logs').then((pick) => pick && this.log.show());
      return undefined;
    }
  }
}
