/**
 * The remote backend against a real OpenAI-compatible server (`klc serve` on loopback): its
 * answers equal a local session's for the same question, the server reports the repository as
 * cached, batches and cancellation work, and the server's refusals reach the user as UserErrors.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { isUserError } from '../../../src/common/errors';
import { EngineSession } from '../../../src/engine/session';
import { apiBase } from '../../../src/remote/openai-endpoint';
import { RemoteSession } from '../../../src/remote/remote-session';
import { makeWorkspace, SMALL_WORKSPACE, tempDir } from '../client/engine-fixture';
import { startServe, type ServeProcess } from '../serve/serve-process';

const KEY = 'remote-test-key-42';
const repoRoot = resolve(__dirname, '..', '..', '..');
const ws = makeWorkspace(SMALL_WORKSPACE);
const model = `kimi-linear@${basename(ws)}`;
let server: ServeProcess;
let local: EngineSession;
let keyFile: string;

before(async () => {
  keyFile = join(tempDir('remote-key'), 'key');
  writeFileSync(keyFile, KEY);
  server = await startServe(['--workspace', ws, '--api-key-file', keyFile]);
  local = await EngineSession.open({ backend: 'reference', cacheDir: tempDir('remote-local-cache'), workspace: { roots: [ws] }, log: () => {} });
  await local.ingest(undefined);
});

after(async () => {
  assert.equal(await server.stop(), 0, server.log());
  await local.dispose();
});

function open(extra: { model?: string; apiKey?: string } = {}) {
  const lines: string[] = [];
  const session = RemoteSession.open({
    endpoint: { url: server.url, model: extra.model ?? model, apiKey: extra.apiKey ?? KEY },
    workspace: { roots: [ws] },
    log: (l) => lines.push(l),
  });
  return { session, lines };
}

test('the endpoint URL is taken with or without /v1', () => {
  assert.equal(apiBase('http://h:8000'), 'http://h:8000/v1');
  assert.equal(apiBase('http://h:8000/v1/'), 'http://h:8000/v1');
  assert.throws(() => apiBase('h:8000'), (e: Error) => isUserError(e) && /http/.test(e.message));
});

test('a remote answer equals the local one, and the server serves the repository from its cache', async () => {
  const { session: opening, lines } = open();
  const session = await opening;
  try {
    assert.equal(session.contextLength, local.maxContext);
    const ingest = await session.ingest(undefined);
    assert.equal(ingest.tokens, local.status().repo.tokens);
    assert.equal(ingest.files, 3);
    assert.equal(session.status().repo.state, 'ready');
    assert.equal(session.status().backend, 'remote');
    for (const question of ['What does twice do?', 'Where is main?']) {
      let streamed = '';
      const r = await session.ask({ question, sampling: { maxNewTokens: 10 } }, (d) => (streamed += d));
      const want = await local.ask({ question, sampling: { maxNewTokens: 10 } });
      assert.equal(r.text, want.text);
      assert.equal(streamed, want.text);
      assert.equal(r.tokens, want.tokens);
      assert.equal(r.stopReason, want.stopReason);
    }
    const cached = lines.filter((l) => /prompt tokens came from/.test(l));
    assert.equal(cached.length, 2, lines.join('\n'));
    for (const l of cached) assert.match(l, new RegExp(`^remote: ${ingest.tokens} of \\d+ prompt tokens`));
    const again = await session.ingest(undefined);
    assert.equal(again.upToDate, true);
  } finally {
    await session.dispose();
  }
});

test('askBatch answers every question as ask does, and a cancelled ask ends as cancelled', async () => {
  const session = await open().session;
  try {
    const questions = ['What is add?', 'What is twice?', 'What does the README say?'];
    const got: number[] = [];
    const answers = await session.askBatch(questions.map((question) => ({ question, sampling: { maxNewTokens: 6 } })), () => {}, undefined, (i) => got.push(i));
    for (const [i, question] of questions.entries()) assert.equal(answers[i].text, (await local.ask({ question, sampling: { maxNewTokens: 6 } })).text);
    assert.deepEqual(got.sort(), [0, 1, 2]);
    const controller = new AbortController();
    let pieces = 0;
    const r = await session.ask({ question: 'Tell a long story.', sampling: { maxNewTokens: 4000 } }, () => {
      if (++pieces === 2) controller.abort();
    }, controller.signal);
    assert.equal(r.stopReason, 'cancelled');
    assert.ok(r.text.length > 0 && r.tokens < 4000);
  } finally {
    await session.dispose();
  }
});

test('a wrong key or an unknown model is a UserError that says what to do', async () => {
  await assert.rejects(open({ apiKey: 'wrong-key-123' }).session, (e: Error) => isUserError(e) && /answered 401/.test(e.message) && /API key/.test(e.message));
  await assert.rejects(open({ model: 'kimi-linear@other' }).session, (e: Error) => isUserError(e) && e.message.includes(`it serves ${model}`));
  await assert.rejects(
    RemoteSession.open({ endpoint: { url: 'http://127.0.0.1:9', model } }),
    (e: Error) => isUserError(e) && /cannot reach the remote endpoint/.test(e.message),
  );
});

test('klc ask --backend remote answers through the server', () => {
  const r = spawnSync(process.execPath, [
    '--import', 'tsx', join(repoRoot, 'src/cli.ts'), 'ask', 'What does twice do?', '--workspace', ws,
    '--backend', 'remote', '--endpoint', server.url, '--remote-model', model, '--api-key-file', keyFile, '--max-new-tokens', '10',
  ], { encoding: 'utf8', cwd: repoRoot });
  assert.equal(r.status, 0, r.stderr);
  return local.ask({ question: 'What does twice do?', sampling: { maxNewTokens: 10 } }).then((want) => {
    assert.equal(r.stdout, `${want.text}\n`);
    assert.match(r.stderr, /\(max_tokens, remote\)|\(eos, remote\)/);
  });
});
