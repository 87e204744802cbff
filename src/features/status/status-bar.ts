/** The status bar item: follows the engine client, workspace trust and the remembered last ingest. */
import * as vscode from 'vscode';
import type { EngineClient } from '../../client/engine-client';
import type { IngestController } from '../ingest/ingest-controller';
import { statusBarView } from './status-view';

export class StatusBar implements vscode.Disposable {
  private readonly item = vscode.window.createStatusBarItem('kimiLinear.status', vscode.StatusBarAlignment.Left, 10);
  private readonly subscriptions: vscode.Disposable[];

  constructor(private readonly client: EngineClient, private readonly ingest: IngestController) {
    this.item.name = 'Kimi Linear';
    this.subscriptions = [
      client.onDidChangeStatus(() => this.render()),
      ingest.onDidChangeSaved(() => this.render()),
      vscode.workspace.onDidGrantWorkspaceTrust(() => this.render()),
    ];
    this.render();
    this.item.show();
  }

  /** The text now shown; the e2e suite reads it to check what the user sees. */
  get text(): string {
    return this.item.text;
  }

  /** What screen readers announce for the item. */
  get ariaLabel(): string {
    return this.item.accessibilityInformation?.label ?? '';
  }

  dispose(): void {
    for (const s of this.subscriptions) s.dispose();
    this.item.dispose();
  }

  private render(): void {
    const view = statusBarView(this.client.lastStatus, vscode.workspace.isTrusted, this.ingest.saved);
    this.item.text = view.text;
    this.item.tooltip = view.tooltip;
    this.item.command = view.command;
    this.item.accessibilityInformation = { label: view.ariaLabel, role: 'button' };
    this.item.backgroundColor = view.warning ? new vscode.ThemeColor('statusBarItem.warningBackground') : undefined;
  }
}
