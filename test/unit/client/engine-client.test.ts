/**
 * EngineClient against the real engine process on the tiny checkpoint: streaming, cancellation,
 * a crash in the middle of an ingest, and a model folder that cannot be opened.
 */
import { appendFileSync } from 'node:fs';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { EngineClient, type EngineClientStatus } from '../../../src/client/engine-client';
import { EngineCrashedError, isCancelled } from '../../../src/client/engine-errors';
import { isUserError } from '../../../src/common/errors';
import type { AskResult, IngestProgress } from '../../../src/engine/api';
import { buildEngineHost, CANCELLABLE_WORKSPACE, makeWorkspace, SMALL_WORKSPACE, tempDir, tinyModelDir } from './engine-fixture';

let enginePath: string;
let modelDir: string | undefined;
const clients: EngineClient[] = [];

function client(opts: { cacheDir?: string; modelDir?: string; workspaceRoot?: string } = {}): { client: EngineClient; statuses: EngineClientStatus[]; logs: string[] } {
  const statuses: EngineClientStatus[] = [];
  const logs: string[] = [];
  const cacheDir = opts.cacheDir ?? tempDir('cache');
  const c = new EngineClient({
    enginePath,
    openParams: () => ({ modelDir: opts.modelDir ?? modelDir, backend: 'reference', cacheDir }),
    ...(opts.workspaceRoot ? { workspace: () => ({ roots: [opts.workspaceRoot!] }) } : {}),
    log: (line) => logs.push(line),
  });
  c.onDidChangeStatus((s) => statuses.push(s));
  clients.push(c);
  return { client: c, statuses, logs };
}

const greedy = { temperature: 0, maxNewTokens: 6 };

before(async () => {
  enginePath = await buildEngineHost();
  modelDir = tinyModelDir();
});

after(async () => {
  await Promise.all(clients.map((c) => c.dispose()));
});

describe('EngineClient with the engine process', () => {
  test('ingests with progress, streams an answer, and reuses the saved state', async () => {
    const root = makeWorkspace(SMALL_WORKSPACE);
    const { client: c, statuses } = client();
    assert.equal(c.pid, undefined, 'no process before the first request');

    const progress: IngestProgress[] = [];
    const result = await c.ingest({ roots: [root] }, (p) => progress.push(p));
    assert.equal(result.files, 3);
    assert.equal(result.upToDate, false);
    assert.ok(result.tokens > 64, `expected several chunks of tokens, got ${result.tokens}`);
    const prefill = progress.filter((p) => p.phase === 'prefill');
    assert.ok(prefill.length > 0, 'prefill progress arrives');
    assert.equal(prefill.at(-1)!.tokensTotal, result.tokens);
    assert.ok(statuses.some((s) => s.ingest?.phase === 'prefill'), 'status events carry the ingest progress');
    assert.equal(c.lastStatus.ingest, null);

    const status = await c.status();
    assert.equal(status.repo.state, 'ready');
    assert.equal(status.repo.tokens, result.tokens);
    assert.equal(status.repo.files, 3);
    assert.equal(status.backend, 'reference');

    let streamed = '';
    const answer = await c.ask({ question: 'What does twice do?', sampling: greedy }, (d) => { streamed += d; });
    assert.equal(streamed, answer.text, 'the streamed deltas add up to the answer');
    assert.ok(answer.tokens >= 1 && answer.tokens <= greedy.maxNewTokens);

    const again = await c.ingest({ roots: [root] }, () => undefined);
    assert.equal(again.upToDate, true);
    assert.equal(again.tokens, result.tokens);

    await c.markStale([`${root}/src/math.ts`]);
    assert.equal(c.lastStatus.engine?.repo.state, 'ready', 'a report of a file that still holds what was packed');
    appendFileSync(join(root, 'src/math.ts'), '// changed\n');
    await c.markStale([`${root}/src/math.ts`]);
    assert.equal(c.lastStatus.engine?.repo.state, 'stale');
  });

  test('an ask without an ingest ingests the workspace it is given first', async () => {
    const root = makeWorkspace(SMALL_WORKSPACE);
    const { client: c } = client({ workspaceRoot: root });
    const phases = new Set<string>();
    c.onDidChangeStatus((s) => s.ingest && phases.add(s.ingest.phase));
    const answer = await c.ask({ question: 'Where is add used?', sampling: greedy }, () => undefined);
    assert.ok(answer.tokens >= 1);
    assert.ok(phases.has('prefill'), 'the implicit ingest reports its progress');
    assert.equal((await c.status()).repo.state, 'ready');
  });

  test('askBatch ingests first, streams each answer under its index, and answers as separate asks do', async () => {
    const root = makeWorkspace(SMALL_WORKSPACE);
    const { client: c } = client({ workspaceRoot: root });
    const requests = [
      { question: 'What does twice do?', sampling: greedy },
      { question: 'Where is add used?', sampling: { temperature: 0.7, topK: 10, maxNewTokens: 4, seed: 5 } },
      { question: 'What does main.ts print?', sampling: { ...greedy, maxNewTokens: 2 } },
    ];
    const streamed = ['', '', ''];
    const ended: AskResult[] = [];
    const answers = await c.askBatch(requests, (i, d) => { streamed[i] += d; }, undefined, (i, r) => { ended[i] = r; });
    assert.deepEqual(ended, answers, 'each answer is reported as it ends');
    assert.equal((await c.status()).repo.state, 'ready');
    assert.equal(answers.length, 3);
    for (const [i, req] of requests.entries()) {
      assert.equal(streamed[i], answers[i].text, `answer ${i} streamed under its index`);
      const alone = await c.ask(req, () => undefined);
      assert.equal(answers[i].text, alone.text, `answer ${i}`);
      assert.equal(answers[i].tokens, alone.tokens, `answer ${i}`);
    }
  });

  test('cancelIngest stops an askBatch while it ingests: the questions are not answered', async () => {
    const root = makeWorkspace(SMALL_WORKSPACE);
    const { client: c } = client({ workspaceRoot: root });
    let deltas = 0;
    const sub = c.onDidChangeStatus((s) => s.ingest?.phase === 'prefill' && c.cancelIngest());
    await assert.rejects(
      c.askBatch([{ question: 'What does twice do?', sampling: greedy }, { question: 'Where is add?', sampling: greedy }], () => deltas++),
      (e) => isUserError(e) && /ingest was cancelled, so the question was not answered/.test(e.message),
    );
    sub.dispose();
    assert.equal(deltas, 0);
  });

  test('a cancelled ingest rejects with CancelledError and the engine keeps serving', async () => {
    const root = makeWorkspace(SMALL_WORKSPACE);
    const { client: c } = client();
    const abort = new AbortController();
    await assert.rejects(
      c.ingest({ roots: [root] }, () => abort.abort(), abort.signal),
      (e) => isCancelled(e),
    );
    const status = await c.status();
    assert.notEqual(status.repo.state, 'ready');
    assert.notEqual(status.repo.state, 'ingesting');
  });

  test('cancelIngest stops an ingest request; the engine keeps serving', async () => {
    const root = makeWorkspace(CANCELLABLE_WORKSPACE);
    const { client: c } = client();
    assert.equal(c.cancelIngest(), false, 'nothing to cancel before a request');
    let cancelled: boolean | undefined;
    await assert.rejects(
      c.ingest({ roots: [root] }, (p) => {
        if (p.phase === 'prefill' && cancelled === undefined) cancelled = c.cancelIngest();
      }),
      (e) => isCancelled(e),
    );
    assert.equal(cancelled, true);
    assert.equal(c.lastStatus.ingest, null);
    assert.equal((await c.ingest({ roots: [root] }, () => undefined)).files, Object.keys(CANCELLABLE_WORKSPACE).length);
  });

  test('cancelIngest stops an ask while it ingests the workspace: the question is not answered, and the next ask is', async () => {
    const root = makeWorkspace(CANCELLABLE_WORKSPACE);
    const { client: c } = client({ workspaceRoot: root });
    let cancelled: boolean | undefined;
    const sub = c.onDidChangeStatus((s) => {
      if (s.ingest?.phase === 'prefill' && cancelled === undefined) cancelled = c.cancelIngest();
    });
    let streamed = '';
    await assert.rejects(
      c.ask({ question: 'Where is add used?', sampling: greedy }, (d) => { streamed += d; }),
      (e) => isUserError(e) && /ingest was cancelled, so the question was not answered/.test(e.message),
    );
    sub.dispose();
    assert.equal(cancelled, true, 'the implicit ingest counted as an ingest in flight');
    assert.equal(streamed, '', 'no answer text after the cancel');
    assert.equal(c.lastStatus.ingest, null);
    assert.notEqual((await c.status()).repo.state, 'ready');

    const answer = await c.ask({ question: 'Where is add used?', sampling: greedy }, () => undefined);
    assert.ok(answer.tokens >= 1);
    assert.equal((await c.status()).repo.state, 'ready');
  });

  test('a Cancel Ingest that reaches the engine after its ingest finished still leaves the question unanswered', async () => {
    const root = makeWorkspace(SMALL_WORKSPACE);
    const { client: c } = client({ workspaceRoot: root });
    let cancelled: boolean | undefined;
    // The save phase comes after the last prefill chunk, when the ingest no longer stops.
    const sub = c.onDidChangeStatus((s) => {
      if (s.ingest?.phase === 'save' && cancelled === undefined) cancelled = c.cancelIngest();
    });
    let streamed = '';
    await assert.rejects(
      c.ask({ question: 'Where is add used?', sampling: greedy }, (d) => { streamed += d; }),
      (e) => isUserError(e) && /ingest was cancelled, so the question was not answered/.test(e.message),
    );
    sub.dispose();
    assert.equal(cancelled, true);
    assert.equal(streamed, '');
    assert.equal((await c.status()).repo.state, 'ready', 'the finished ingest is kept');
  });

  test('once its ingest is done, an ask no longer shows ingest progress and cancelIngest leaves the answer alone', async () => {
    const root = makeWorkspace(SMALL_WORKSPACE);
    const { client: c } = client({ workspaceRoot: root });
    let sawIngest = false;
    const sub = c.onDidChangeStatus((s) => { sawIngest ||= s.ingest !== null; });
    const atFirstText: { ingest: unknown; cancelled: boolean }[] = [];
    const answer = await c.ask({ question: 'What does twice do?', sampling: greedy }, () => {
      if (atFirstText.length === 0) atFirstText.push({ ingest: c.lastStatus.ingest, cancelled: c.cancelIngest() });
    });
    sub.dispose();
    assert.ok(sawIngest, 'the ask ingested first');
    assert.deepEqual(atFirstText, [{ ingest: null, cancelled: false }]);
    assert.ok(answer.tokens >= 1);
    assert.notEqual(answer.stopReason, 'cancelled');
  });

  test('killing the engine mid-ingest gives a clear error; the next request restarts it and gets the same answers as a clean run', async () => {
    const root = makeWorkspace(SMALL_WORKSPACE);
    const { client: c, statuses } = client();
    await c.status();
    const firstPid = c.pid!;
    assert.ok(firstPid > 0);

    let killed = false;
    const crashed = await c.ingest({ roots: [root] }, (p) => {
      if (p.phase === 'prefill' && !killed) {
        killed = true;
        process.kill(firstPid, 'SIGKILL');
      }
    }).then(() => undefined, (e: unknown) => e);
    assert.ok(killed, 'the ingest reached the prefill phase');
    assert.ok(crashed instanceof EngineCrashedError, `expected EngineCrashedError, got ${String(crashed)}`);
    assert.ok(isUserError(crashed));
    assert.match(crashed.message, /The engine process stopped unexpectedly \(signal SIGKILL\)\. It will restart on your next request\. See Kimi Linear logs/);
    assert.equal(c.lastStatus.process, 'crashed');
    assert.ok(statuses.some((s) => s.process === 'crashed' && s.error === crashed.message));

    const result = await c.ingest({ roots: [root] }, () => undefined);
    assert.notEqual(c.pid, firstPid, 'a new engine process serves the next request');
    assert.equal(c.lastStatus.process, 'running');
    const answer = await c.ask({ question: 'What does twice do?', sampling: greedy }, () => undefined);

    const { client: clean } = client();
    const cleanResult = await clean.ingest({ roots: [root] }, () => undefined);
    assert.equal(result.tokens, cleanResult.tokens);
    const cleanAnswer = await clean.ask({ question: 'What does twice do?', sampling: greedy }, () => undefined);
    assert.equal(answer.text, cleanAnswer.text, 'the state after the crash answers exactly like a clean ingest');
  });

  test('a model folder that cannot be opened is a UserError naming it, and the client recovers once fixed', async () => {
    const missing = tempDir('no-model');
    let dir: string | undefined = missing;
    const cacheDir = tempDir('cache');
    const c = new EngineClient({ enginePath, openParams: () => ({ modelDir: dir, backend: 'reference', cacheDir }), log: () => undefined });
    clients.push(c);
    await assert.rejects(c.status(), (e) => isUserError(e) && e.message.includes(missing));
    assert.equal(c.pid, undefined, 'the failed engine process is stopped');
    assert.equal(c.lastStatus.process, 'stopped');
    dir = modelDir;
    assert.equal((await c.status()).repo.state, 'none');
  });

  test('dispose stops the engine process', async () => {
    const { client: c } = client();
    await c.status();
    const pid = c.pid!;
    await c.dispose();
    assert.throws(() => process.kill(pid, 0), /ESRCH/);
  });
});
