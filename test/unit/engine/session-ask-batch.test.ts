/**
 * EngineSession.askBatch on the bundled tiny checkpoint (reference backend) and a small temporary
 * workspace: each answer equals ask() of the same request, also past the limit of one decode
 * batch, and cancellation behaves as it does for ask().
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AskRequest, AskResult } from '../../../src/engine/api';
import { CancelledError } from '../../../src/engine/generate';
import { ASK_BATCH_LIMIT, EngineSession } from '../../../src/engine/session';

function workspace(): string {
  const root = mkdtempSync(join(tmpdir(), 'klc-askbatch-ws-'));
  mkdirSync(join(root, 'src'));
  writeFileSync(join(root, 'src/math.ts'), 'export function add(a: number, b: number): number {\n  return a + b;\n}\n');
  writeFileSync(join(root, 'src/main.ts'), "import { add } from './math';\nconsole.log(add(2, 3));\n");
  return root;
}

async function open(root: string): Promise<EngineSession> {
  return EngineSession.open({ backend: 'reference', cacheDir: mkdtempSync(join(tmpdir(), 'klc-askbatch-cache-')), workspace: { roots: [root] }, log: () => {} });
}

const QUESTIONS = ['What does main.ts call?', 'Where is add defined?', 'What does add return?', 'Which file logs?', 'Name the exports.'];

function requests(n: number): AskRequest[] {
  return Array.from({ length: n }, (_, i) => ({
    question: QUESTIONS[i % QUESTIONS.length],
    sampling: i % 2 === 0 ? { temperature: 0, maxNewTokens: 3 + (i % 3) } : { temperature: 0.8, topK: 20, topP: 0.9, maxNewTokens: 4, seed: 1000 + i },
    ...(i === 2 ? { selection: { path: 'src/math.ts', startLine: 1, endLine: 3, text: 'export function add(a: number, b: number): number {' } } : {}),
  }));
}

/** Records how many sequences each decode step of the session's model takes. */
function decodeBatchSizes(s: EngineSession): number[] {
  const sizes: number[] = [];
  const model = s.model;
  const decodeAndPick = model.decodeAndPick.bind(model);
  model.decodeAndPick = (states, ids, picks) => {
    sizes.push(states.length);
    return decodeAndPick(states, ids, picks);
  };
  return sizes;
}

test('askBatch answers each request as ask() does, with more requests than one decode batch takes', async () => {
  const s = await open(workspace());
  try {
    const reqs = requests(ASK_BATCH_LIMIT + 2);
    const batchSizes = decodeBatchSizes(s);
    const streamed = reqs.map(() => '');
    const ended: number[] = [];
    const reported: AskResult[] = [];
    // Nothing ingested yet: askBatch ingests first, as ask does.
    const together = await s.askBatch(reqs, (i, delta) => (streamed[i] += delta), undefined, (i, r) => {
      ended.push(i);
      reported[i] = r;
    });
    assert.equal(s.status().repo.state, 'ready');
    assert.equal(together.length, reqs.length);
    assert.deepEqual(reported, together, 'each answer is reported once as it ends');
    assert.deepEqual([...ended].sort((a, b) => a - b), reqs.map((_, i) => i));
    // Request 0 (3 tokens) ends before request 1 (4 tokens), which started with it.
    assert.ok(ended.indexOf(0) < ended.indexOf(1), ended.join(','));
    assert.deepEqual(batchSizes.slice(0, 3), [ASK_BATCH_LIMIT, ASK_BATCH_LIMIT, ASK_BATCH_LIMIT]);
    assert.equal(Math.max(...batchSizes), ASK_BATCH_LIMIT);
    for (const [i, req] of reqs.entries()) {
      const alone = await s.ask(req);
      assert.equal(together[i].text, alone.text, `request ${i}`);
      assert.equal(together[i].tokens, alone.tokens, `request ${i}`);
      assert.equal(together[i].stopReason, alone.stopReason, `request ${i}`);
      assert.equal(streamed[i], alone.text, `request ${i} streamed`);
    }
    assert.deepEqual(await s.askBatch([]), []);
  } finally {
    await s.dispose();
  }
});

test('a signal fired mid-batch ends every answer as cancelled, the queued ones without tokens', async () => {
  const s = await open(workspace());
  try {
    await s.ingest(undefined);
    const controller = new AbortController();
    const reqs = requests(ASK_BATCH_LIMIT + 1).map((r) => ({ ...r, sampling: { ...r.sampling, maxNewTokens: 50 } }));
    let deltas = 0;
    const results = await s.askBatch(reqs, () => {
      if (++deltas === 4) controller.abort();
    }, controller.signal);
    for (const r of results) assert.equal(r.stopReason, 'cancelled');
    assert.ok(results.every((r) => r.tokens < 10), results.map((r) => r.tokens).join(','));
    assert.equal(results[ASK_BATCH_LIMIT].tokens, 0);
    // The repository state is untouched: a later ask answers as before.
    const again = await s.askBatch(reqs.slice(0, 1).map((r) => ({ ...r, sampling: { ...r.sampling, maxNewTokens: 3 } })));
    assert.equal(again[0].text, (await s.ask({ ...reqs[0], sampling: { ...reqs[0].sampling, maxNewTokens: 3 } })).text);
  } finally {
    await s.dispose();
  }
});

test('a signal fired before the implicit ingest throws what ask throws, and nothing is ingested', async () => {
  const s = await open(workspace());
  try {
    const controller = new AbortController();
    controller.abort();
    const batchError = await s.askBatch(requests(2), () => {}, controller.signal).then(() => null, (e: Error) => e);
    const askError = await s.ask(requests(1)[0], () => {}, controller.signal).then(() => null, (e: Error) => e);
    assert.ok(batchError && askError, 'both refuse');
    assert.equal(batchError.name, askError.name);
    assert.ok(['AbortError', new CancelledError().name].includes(batchError.name), batchError.name);
    assert.equal(s.status().repo.state, 'none');
  } finally {
    await s.dispose();
  }
});

test('a request that does not fit the context is refused before anything is generated', async () => {
  const s = await open(workspace());
  try {
    const reqs = [...requests(1), { question: 'Too long an answer', sampling: { maxNewTokens: 10_000_000 } }];
    let streamed = 0;
    await assert.rejects(s.askBatch(reqs, () => streamed++), /do not fit after the/);
    assert.equal(streamed, 0);
  } finally {
    await s.dispose();
  }
});
