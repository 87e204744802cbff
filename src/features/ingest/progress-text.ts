/** Words and numbers for ingest progress and results, shared by the notification and the status bar. */
import type { IngestProgress, IngestResult } from '../../engine/api';

const integer = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });

export function formatCount(n: number): string {
  return integer.format(n);
}

/** 1234 → "1.2k", 1200000 → "1.2M": for the narrow status bar. */
export function formatCompact(n: number): string {
  if (n < 1000) return String(Math.round(n));
  if (n < 1_000_000) return `${trimZero((n / 1000).toFixed(n < 10_000 ? 1 : 0))}k`;
  return `${trimZero((n / 1_000_000).toFixed(n < 10_000_000 ? 2 : 1))}M`;
}

function trimZero(s: string): string {
  return s.includes('.') ? s.replace(/\.?0+$/, '') : s;
}

export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(m / 60)}h ${String(m % 60).padStart(2, '0')}m`;
}

/** Overall completion in percent: packing counts files, the other phases count tokens. */
export function progressPercent(p: IngestProgress): number {
  const [done, total] = p.phase === 'pack' ? [p.filesDone, p.filesTotal] : [p.tokensDone, p.tokensTotal];
  if (total <= 0) return 0;
  return Math.min(100, Math.max(0, Math.floor((done / total) * 100)));
}

const PHASE_LABEL: Record<IngestProgress['phase'], string> = {
  pack: 'Packing files',
  restore: 'Restoring saved state',
  prefill: 'Reading the workspace',
  save: 'Saving state',
};

/** The notification line, e.g. "Reading the workspace: 12/40 files · 35,000/120,000 tokens · 1,234 tokens/s · ETA 1m 20s". */
export function progressMessage(p: IngestProgress): string {
  const parts = [`${formatCount(p.filesDone)}/${formatCount(p.filesTotal)} files`];
  if (p.phase !== 'pack' || p.tokensTotal > 0) parts.push(`${formatCount(p.tokensDone)}/${formatCount(p.tokensTotal)} tokens`);
  if (p.phase === 'prefill' && p.tokensPerSecond > 0) parts.push(`${formatCount(p.tokensPerSecond)} tokens/s`);
  if (p.phase === 'prefill' && p.etaSeconds !== undefined) parts.push(`ETA ${formatDuration(p.etaSeconds)}`);
  return `${PHASE_LABEL[p.phase]}: ${parts.join(' · ')}`;
}

export function resultMessage(r: IngestResult): string {
  const cached = `${formatCount(r.tokens)} tokens from ${formatCount(r.files)} files`;
  if (r.upToDate) return `Kimi Linear: the saved state is up to date (${cached}).`;
  const details = [`${formatDuration(r.seconds)}`];
  if (r.tokensPerSecond > 0) details.push(`${formatCount(r.tokensPerSecond)} tokens/s`);
  if (r.resumedTokens > 0) details.push(`${formatCount(r.resumedTokens)} tokens reused from the saved state`);
  if (r.omitted > 0) details.push(`${formatCount(r.omitted)} files left out (see the log)`);
  if (r.secretsRedacted > 0) details.push(`${formatCount(r.secretsRedacted)} secrets redacted`);
  return `Kimi Linear: ingested ${cached} (${details.join(', ')}).`;
}
