/**
 * What the status bar item says and does for a given engine state. Pure, so that every state's
 * text is checked in a unit test.
 */
import type { EngineClientStatus } from '../../client/engine-client';
import { formatCompact, formatCount, progressPercent } from '../ingest/progress-text';

export interface StatusBarView {
  text: string;
  tooltip: string;
  /** Command id run on click. */
  command: string;
  /** Drawn with the warning background. */
  warning: boolean;
  /** What a screen reader says: full words and numbers instead of icons and "1.2k". */
  ariaLabel: string;
}

/** The last ingest of this workspace, remembered across reloads while no engine runs yet. */
export interface SavedIngest {
  files: number;
  tokens: number;
  /** Milliseconds since the epoch. */
  at: number;
}

export const CHAT_FOCUS_COMMAND = 'kimiLinear.chat.focus';

export function statusBarView(status: EngineClientStatus, trusted: boolean, saved: SavedIngest | null): StatusBarView {
  if (!trusted) {
    return {
      text: '$(shield) Kimi: restricted',
      tooltip: 'Restricted mode: Kimi Linear does not read this workspace. Click to manage workspace trust.',
      command: 'workbench.trust.manage',
      warning: false,
      ariaLabel: 'Kimi Linear: restricted mode, the workspace is not read. Activate to manage workspace trust.',
    };
  }
  if (status.ingest) {
    const percent = progressPercent(status.ingest);
    return {
      text: `$(sync~spin) Kimi: ingesting ${percent}%`,
      tooltip: `Ingesting the workspace: ${formatCount(status.ingest.tokensDone)} of ${formatCount(status.ingest.tokensTotal)} tokens. Click to cancel.`,
      command: 'kimiLinear.cancelIngest',
      warning: false,
      ariaLabel: `Kimi Linear: ingesting the workspace, ${percent} percent. Activate to cancel.`,
    };
  }
  if (status.process === 'crashed') {
    return {
      text: '$(error) Kimi: engine stopped',
      tooltip: `${status.error ?? 'The engine process stopped.'}\nClick to show the logs.`,
      command: 'kimiLinear.showLogs',
      warning: true,
      ariaLabel: 'Kimi Linear: the engine stopped. Activate to show the logs.',
    };
  }
  if (status.process === 'starting') {
    return {
      text: '$(loading~spin) Kimi: starting',
      tooltip: 'Starting the engine and loading the model.',
      command: 'kimiLinear.showLogs',
      warning: false,
      ariaLabel: 'Kimi Linear: starting the engine. Activate to show the logs.',
    };
  }
  const repo = status.engine?.repo;
  const where = status.engine ? ` on ${status.engine.backend} (${status.engine.device})` : '';
  if (repo?.state === 'ready') {
    return {
      text: `$(database) Kimi: ${formatCompact(repo.tokens)} tokens cached`,
      tooltip: `Ready: ${formatCount(repo.files)} files, ${formatCount(repo.tokens)} tokens cached${where}. Click to open the chat.`,
      command: CHAT_FOCUS_COMMAND,
      warning: false,
      ariaLabel: `Kimi Linear: ready, ${formatCount(repo.tokens)} tokens from ${formatCount(repo.files)} files cached. Activate to open the chat.`,
    };
  }
  if (repo?.state === 'stale') {
    return {
      text: '$(history) Kimi: stale',
      tooltip: `Files changed since the last ingest (${formatCount(repo.tokens)} tokens cached). Click to ingest the changes.`,
      command: 'kimiLinear.ingestWorkspace',
      warning: true,
      ariaLabel: 'Kimi Linear: stale, files changed since the last ingest. Activate to ingest the changes.',
    };
  }
  if (repo?.state === 'ingesting') {
    return {
      text: '$(sync~spin) Kimi: ingesting',
      tooltip: 'Ingesting the workspace. Click to cancel.',
      command: 'kimiLinear.cancelIngest',
      warning: false,
      ariaLabel: 'Kimi Linear: ingesting the workspace. Activate to cancel.',
    };
  }
  if (saved && !repo) {
    return {
      text: `$(database) Kimi: ${formatCompact(saved.tokens)} tokens saved`,
      tooltip: `A saved state of ${formatCount(saved.files)} files (${formatCount(saved.tokens)} tokens, ingested ${new Date(saved.at).toLocaleString()}) is reused when it still matches the workspace. Click to load it.`,
      command: 'kimiLinear.ingestWorkspace',
      warning: false,
      ariaLabel: `Kimi Linear: a saved state of ${formatCount(saved.tokens)} tokens. Activate to load it.`,
    };
  }
  return {
    text: '$(database) Kimi: not ingested',
    tooltip: `${status.error ? `${status.error}\n` : ''}The workspace has not been ingested in this session. Click to ingest it (a saved state is reused when it still matches).`,
    command: 'kimiLinear.ingestWorkspace',
    warning: false,
    ariaLabel: 'Kimi Linear: the workspace is not ingested. Activate to ingest it.',
  };
}
