/**
 * The chat header's words for a HeaderStatus: the repository badge, the counts, the engine line
 * and which action button to offer. Pure (no DOM), so each state is checked in a unit test.
 */
import type { HeaderStatus } from '../../src/common/chat-protocol';

export interface HeaderView {
  badge: string;
  badgeClass: 'busy' | 'ready' | 'stale' | 'restricted' | '';
  /** "12 files · 3,400 tokens", when there is a repository state. */
  counts?: string;
  engine: string;
  engineClass: 'error' | 'note' | '';
  action?: { label: string; message: 'ingest' | 'manageTrust'; title: string };
}

export const RESTRICTED_TEXT = 'Restricted mode: Kimi Linear does not read this workspace and runs no model. Trust the workspace to ask about it.';

export function headerView(h: HeaderStatus): HeaderView {
  if (h.restricted) {
    return {
      badge: 'restricted',
      badgeClass: 'restricted',
      engine: RESTRICTED_TEXT,
      engineClass: 'note',
      action: { label: 'Trust…', message: 'manageTrust', title: 'Manage workspace trust' },
    };
  }
  const s = h.status;
  const repo = s?.repo;
  const ingesting = h.ingestPercent !== undefined || repo?.state === 'ingesting';
  const [badge, badgeClass]: [string, HeaderView['badgeClass']] = ingesting
    ? [h.ingestPercent !== undefined ? `ingesting ${h.ingestPercent}%` : 'ingesting', 'busy']
    : repo?.state === 'ready' ? ['cached', 'ready']
      : repo?.state === 'stale' ? ['stale', 'stale']
        : ['not ingested', ''];
  const view: HeaderView = { badge, badgeClass, engine: '', engineClass: '' };
  if (repo && repo.state !== 'none') view.counts = `${repo.files.toLocaleString('en-US')} files · ${repo.tokens.toLocaleString('en-US')} tokens`;
  if (!ingesting && repo?.state !== 'ready') {
    view.action = repo?.state === 'stale'
      ? { label: 'Re-ingest', message: 'ingest', title: 'Ingest the files that changed since the last ingest' }
      : { label: 'Ingest', message: 'ingest', title: 'Ingest the workspace into the model\'s cached state' };
  }
  if (h.problem) {
    view.engine = h.problem;
    view.engineClass = 'error';
  } else if (s?.model) {
    const name = s.model.bundled ? `${s.model.name} (bundled test model: answers are not meaningful)` : s.model.name;
    view.engine = `${name} · ${s.backend} · ${s.device}`;
  } else {
    view.engine = h.process === 'starting' ? 'Starting the engine…' : 'Engine not started';
    view.engineClass = 'note';
  }
  return view;
}
