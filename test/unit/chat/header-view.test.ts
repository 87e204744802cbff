import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { EngineClientStatus } from '../../../src/client/engine-client';
import type { EngineStatus } from '../../../src/engine/api';
import { headerOf } from '../../../src/features/chat/header';
import { headerView, RESTRICTED_TEXT } from '../../../webview/chat/header-view';

const engine = (state: EngineStatus['repo']['state']): EngineStatus => ({
  model: { path: '/m', name: 'tiny', bundled: false, parameters: 1 }, backend: 'reference', device: 'CPU',
  repo: { roots: ['/w'], files: 12, tokens: 3400, state },
});
const running: EngineClientStatus = { process: 'running', engine: engine('ready'), ingest: null, error: null };

test('a ready repository shows its counts and the engine, with no action to take', () => {
  const v = headerView(headerOf(running, true));
  assert.deepEqual(v, { badge: 'cached', badgeClass: 'ready', counts: '12 files · 3,400 tokens', engine: 'tiny · reference · CPU', engineClass: '' });
});

test('stale offers Re-ingest, none offers Ingest, an ingest in flight offers nothing and shows its percent', () => {
  assert.equal(headerView(headerOf({ ...running, engine: engine('stale') }, true)).action?.label, 'Re-ingest');
  const none = headerView(headerOf({ ...running, engine: engine('none') }, true));
  assert.equal(none.action?.label, 'Ingest');
  assert.equal(none.counts, undefined);
  const ingest = { phase: 'prefill' as const, filesDone: 3, filesTotal: 12, tokensDone: 1700, tokensTotal: 3400, tokensPerSecond: 10 };
  const busy = headerView(headerOf({ ...running, ingest }, true));
  assert.equal(busy.badge, 'ingesting 50%');
  assert.equal(busy.action, undefined);
});

test('restricted mode says why nothing runs and offers to manage trust, whatever the engine reports', () => {
  const header = headerOf({ ...running, error: 'boom' }, false);
  assert.equal(header.restricted, true);
  const v = headerView(header);
  assert.equal(v.badge, 'restricted');
  assert.equal(v.engine, RESTRICTED_TEXT);
  assert.deepEqual(v.action && { label: v.action.label, message: v.action.message }, { label: 'Trust…', message: 'manageTrust' });
  assert.equal(headerOf(running, true).restricted, undefined);
});

test('a problem replaces the engine line; before a start the engine line says so', () => {
  const crashed = headerView(headerOf({ ...running, process: 'crashed', error: 'The engine process stopped unexpectedly.' }, true));
  assert.deepEqual([crashed.engine, crashed.engineClass], ['The engine process stopped unexpectedly.', 'error']);
  const fresh = headerView(headerOf({ process: 'starting', engine: null, ingest: null, error: null }, true));
  assert.deepEqual([fresh.engine, fresh.engineClass, fresh.badge], ['Starting the engine…', 'note', 'not ingested']);
});
