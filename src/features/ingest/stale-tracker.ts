/**
 * Keeps the engine's repository state honest after changes: saved, created, deleted and renamed
 * files inside the workspace, and changes made outside the editor (OutsideChangeWatcher: another
 * program, a git checkout, commit or pull) mark it stale, and with kimiLinear.autoIngest the
 * changes are ingested again (incrementally: the engine resumes from its last checkpoint before
 * the change) once changes have paused for a moment.
 */
import * as vscode from 'vscode';
import type { EngineClient } from '../../client/engine-client';
import { userMessageOf } from '../../client/engine-errors';
import type { IngestController } from './ingest-controller';

/** Saves often come in bursts (save all, format on save); wait for the burst to end. */
const AUTO_INGEST_DELAY_MS = 1500;

export class StaleTracker implements vscode.Disposable {
  private readonly subscriptions: vscode.Disposable[] = [];
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly client: EngineClient,
    private readonly ingest: IngestController,
    private readonly log: vscode.LogOutputChannel,
    outsideChanges: vscode.Event<string[]>,
  ) {
    this.subscriptions.push(
      // Already filtered by the pack's ignore rules; git's ref files lie outside the folders.
      outsideChanges((paths) => this.stale(paths)),
      vscode.workspace.onDidSaveTextDocument((doc) => this.changed([doc.uri])),
      vscode.workspace.onDidCreateFiles((e) => this.changed(e.files)),
      vscode.workspace.onDidDeleteFiles((e) => this.changed(e.files)),
      vscode.workspace.onDidRenameFiles((e) => this.changed(e.files.flatMap((f) => [f.oldUri, f.newUri]))),
    );
  }

  dispose(): void {
    clearTimeout(this.timer);
    for (const s of this.subscriptions) s.dispose();
  }

  private changed(uris: readonly vscode.Uri[]): void {
    this.stale(uris.filter((u) => u.scheme === 'file' && vscode.workspace.getWorkspaceFolder(u)).map((u) => u.fsPath));
  }

  private stale(paths: string[]): void {
    if (paths.length === 0 || !vscode.workspace.isTrusted) return;
    this.client.markStale(paths).catch((e: unknown) => this.log.warn(`could not mark the state stale: ${userMessageOf(e)}`));
    if (!autoIngestOn()) return;
    this.scheduleIngest();
  }

  private scheduleIngest(): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      // The setting may have been turned off (or trust withdrawn) while the save waited here.
      if (!autoIngestOn() || !vscode.workspace.isTrusted) return;
      // A running ingest may have packed the files before this save; ingest again after it.
      if (this.ingest.busy) return this.scheduleIngest();
      // Only a workspace that was ingested before is kept up to date; the first ingest is the user's call.
      if (this.ingest.saved || this.client.lastStatus.engine?.repo.state === 'stale') void this.ingest.run({ background: true });
    }, AUTO_INGEST_DELAY_MS);
  }
}

function autoIngestOn(): boolean {
  return vscode.workspace.getConfiguration('kimiLinear').get<boolean>('autoIngest') === true;
}
