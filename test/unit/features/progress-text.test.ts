import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatCompact, formatDuration, progressMessage, progressPercent, resultMessage } from '../../../src/features/ingest/progress-text';
import type { IngestProgress, IngestResult } from '../../../src/engine/api';

const prefill: IngestProgress = { phase: 'prefill', filesDone: 12, filesTotal: 40, tokensDone: 35_000, tokensTotal: 120_000, tokensPerSecond: 1234.4, etaSeconds: 80 };

test('the notification line has files, tokens, speed and ETA', () => {
  assert.equal(progressMessage(prefill), 'Reading the workspace: 12/40 files · 35,000/120,000 tokens · 1,234 tokens/s · ETA 1m 20s');
  assert.equal(progressMessage({ ...prefill, phase: 'pack', tokensDone: 0, tokensTotal: 0 }), 'Packing files: 12/40 files');
  assert.equal(progressMessage({ ...prefill, etaSeconds: undefined, tokensPerSecond: 0 }), 'Reading the workspace: 12/40 files · 35,000/120,000 tokens');
});

test('percent counts files while packing and tokens after', () => {
  assert.equal(progressPercent(prefill), 29);
  assert.equal(progressPercent({ ...prefill, phase: 'pack' }), 30);
  assert.equal(progressPercent({ ...prefill, tokensTotal: 0 }), 0);
  assert.equal(progressPercent({ ...prefill, tokensDone: 130_000 }), 100);
});

test('numbers and durations are short', () => {
  assert.deepEqual([0, 999, 1000, 1234, 12_345, 999_999, 1_000_000, 1_234_567, 12_345_678].map(formatCompact),
    ['0', '999', '1k', '1.2k', '12k', '1000k', '1M', '1.23M', '12.3M']);
  assert.deepEqual([0, 59.4, 60, 3599, 3600, 7265].map(formatDuration), ['0s', '59s', '1m 00s', '59m 59s', '1h 00m', '2h 01m']);
});

test('the result message says what was computed and what was reused', () => {
  const r: IngestResult = { files: 40, omitted: 2, tokens: 120_000, resumedTokens: 100_000, upToDate: false, seconds: 95, tokensPerSecond: 210.6, secretsRedacted: 1 };
  assert.equal(resultMessage(r), 'Kimi Linear: ingested 120,000 tokens from 40 files (1m 35s, 211 tokens/s, 100,000 tokens reused from the saved state, 2 files left out (see the log), 1 secrets redacted).');
  assert.equal(resultMessage({ ...r, upToDate: true }), 'Kimi Linear: the saved state is up to date (120,000 tokens from 40 files).');
});
