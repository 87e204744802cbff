import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { EngineClientStatus } from '../../../src/client/engine-client';
import type { EngineStatus } from '../../../src/engine/api';
import { CHAT_FOCUS_COMMAND, statusBarView } from '../../../src/features/status/status-view';

const engine = (state: EngineStatus['repo']['state'], tokens = 123_456): EngineStatus => ({
  model: { path: '/m', name: 'm', bundled: true, parameters: 1 }, backend: 'reference', device: 'CPU',
  repo: { roots: ['/w'], files: 7, tokens, state },
});
const base: EngineClientStatus = { process: 'running', engine: null, ingest: null, error: null };

test('each state has its text and click action', () => {
  const cases: [EngineClientStatus, string, string][] = [
    [{ ...base, process: 'stopped' }, '$(database) Kimi: not ingested', 'kimiLinear.ingestWorkspace'],
    [{ ...base, engine: engine('none') }, '$(database) Kimi: not ingested', 'kimiLinear.ingestWorkspace'],
    [{ ...base, engine: engine('ready') }, '$(database) Kimi: 123k tokens cached', CHAT_FOCUS_COMMAND],
    [{ ...base, engine: engine('stale') }, '$(history) Kimi: stale', 'kimiLinear.ingestWorkspace'],
    [{ ...base, process: 'starting' }, '$(loading~spin) Kimi: starting', 'kimiLinear.showLogs'],
    [{ ...base, engine: engine('ready'), ingest: { phase: 'prefill', filesDone: 1, filesTotal: 7, tokensDone: 420, tokensTotal: 1000, tokensPerSecond: 50 } },
      '$(sync~spin) Kimi: ingesting 42%', 'kimiLinear.cancelIngest'],
    [{ ...base, process: 'crashed', engine: engine('ready'), error: 'The engine process stopped unexpectedly (exit code 9).' },
      '$(error) Kimi: engine stopped', 'kimiLinear.showLogs'],
  ];
  for (const [status, text, command] of cases) {
    const view = statusBarView(status, true, null);
    assert.equal(view.text, text);
    assert.equal(view.command, command, text);
  }
});

test('a crash shows its message in the tooltip', () => {
  const view = statusBarView({ ...base, process: 'crashed', error: 'The engine process stopped unexpectedly (exit code 9).' }, true, null);
  assert.match(view.tooltip, /stopped unexpectedly \(exit code 9\)/);
  assert.equal(view.warning, true);
});

test('restricted mode wins over everything else', () => {
  const view = statusBarView({ ...base, engine: engine('ready') }, false, null);
  assert.equal(view.text, '$(shield) Kimi: restricted');
  assert.equal(view.command, 'workbench.trust.manage');
});

test('a state saved before the reload is announced until the engine runs', () => {
  const saved = { files: 3, tokens: 2500, at: Date.UTC(2026, 0, 2) };
  assert.equal(statusBarView({ ...base, process: 'stopped' }, true, saved).text, '$(database) Kimi: 2.5k tokens saved');
  assert.equal(statusBarView({ ...base, engine: engine('ready', 2500) }, true, saved).text, '$(database) Kimi: 2.5k tokens cached');
});

test('every state has a screen-reader label in words, without icon names or abbreviated numbers', () => {
  const states: [EngineClientStatus, boolean][] = [
    [{ ...base, process: 'stopped' }, true],
    [{ ...base, engine: engine('ready') }, true],
    [{ ...base, engine: engine('stale') }, true],
    [{ ...base, engine: engine('ingesting') }, true],
    [{ ...base, process: 'starting' }, true],
    [{ ...base, ingest: { phase: 'prefill', filesDone: 1, filesTotal: 7, tokensDone: 420, tokensTotal: 1000, tokensPerSecond: 50 } }, true],
    [{ ...base, process: 'crashed', error: 'boom' }, true],
    [{ ...base, engine: engine('ready') }, false],
  ];
  const labels = states.map(([status, trusted]) => statusBarView(status, trusted, null).ariaLabel);
  for (const label of labels) {
    assert.match(label, /^Kimi Linear: /);
    assert.doesNotMatch(label, /\$\(|\d+(\.\d+)?k\b/, label);
  }
  assert.equal(new Set(labels).size, labels.length, 'each state is told apart');
  assert.equal(labels[1], 'Kimi Linear: ready, 123,456 tokens from 7 files cached. Activate to open the chat.');
  assert.equal(labels[5], 'Kimi Linear: ingesting the workspace, 42 percent. Activate to cancel.');
  assert.match(statusBarView({ ...base, process: 'stopped' }, true, { files: 3, tokens: 2500, at: 0 }).ariaLabel, /2,500 tokens/);
});
