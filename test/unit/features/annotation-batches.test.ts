/**
 * The summaries of "Annotate File" asked for in batches, against a real EngineSession (reference
 * backend, bundled tiny checkpoint): each summary is the one-line form of what ask() answers for
 * that symbol, every symbol is summarised once across batches, and a fired signal stops it.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { EngineSession } from '../../../src/engine/session';
import { SUMMARY_BATCH, summarizeAll } from '../../../src/features/annotations/summarize';
import { oneLineSummary, summaryRequest } from '../../../src/features/annotations/summary';

let session: EngineSession;
const SYMBOLS = Array.from({ length: SUMMARY_BATCH + 2 }, (_, i) => `f${i}`);
const SOURCE = SYMBOLS.map((name, i) => `export function ${name}(x: number): number {\n  return x * ${i + 2};\n}\n`).join('\n');

const request = (name: string) => {
  const line = SYMBOLS.indexOf(name) * 4 + 1;
  const r = summaryRequest(name, { path: 'src/fns.ts', startLine: line, endLine: line + 2, text: SOURCE.split('\n').slice(line - 1, line + 2).join('\n') });
  return { ...r, sampling: { ...r.sampling, maxNewTokens: 4 } };
};

before(async () => {
  const root = mkdtempSync(join(tmpdir(), 'klc-annotate-ws-'));
  writeFileSync(join(root, 'fns.ts'), SOURCE);
  session = await EngineSession.open({ backend: 'reference', cacheDir: mkdtempSync(join(tmpdir(), 'klc-annotate-cache-')), workspace: { roots: [root] }, log: () => {} });
});

after(async () => {
  await session.dispose();
});

test('every symbol gets the summary its own ask gives, across more than one batch', async () => {
  const got = new Map<string, string>();
  await summarizeAll(session, SYMBOLS, request, (name, summary) => {
    assert.ok(!got.has(name), `${name} summarised twice`);
    got.set(name, summary);
  }, new AbortController().signal);
  assert.deepEqual([...got.keys()].sort(), [...SYMBOLS].sort());
  for (const name of SYMBOLS) assert.equal(got.get(name), oneLineSummary((await session.ask(request(name))).text), name);
});

test('a fired signal hands over no further summary', async () => {
  const controller = new AbortController();
  const got: string[] = [];
  await summarizeAll(session, SYMBOLS, request, (name) => {
    got.push(name);
    controller.abort();
  }, controller.signal);
  assert.equal(got.length, 1);
  assert.ok(SYMBOLS.slice(0, SUMMARY_BATCH).includes(got[0]));
});
