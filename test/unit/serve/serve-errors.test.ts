/**
 * Bad requests to `klc serve` (here with an API key, on loopback): each gets a JSON error with its
 * 4xx status, and the server goes on answering good requests after every one of them.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { makeWorkspace, tempDir } from '../client/engine-fixture';
import { startServe, type ServeProcess } from './serve-process';

const KEY = 'test-key-0123456789';
const ws = makeWorkspace({ 'a.txt': 'alpha beta gamma\n' });
const model = `kimi-linear@${basename(ws)}`;
let server: ServeProcess;

before(async () => {
  const keyFile = join(tempDir('serve-key'), 'key');
  writeFileSync(keyFile, `${KEY}\n`);
  server = await startServe(['--workspace', ws, '--api-key-file', keyFile, '--max-body-bytes', '4096', '--max-completion-tokens', '64', '--max-concurrent', '2']);
});

after(async () => {
  assert.equal(await server.stop(), 0, server.log());
});

interface Reply {
  status: number;
  body: { error?: { message: string; type: string; code: string | null; param: string | null }; choices?: unknown[] };
}

async function call(path: string, init: { method?: string; body?: string; key?: string | null; type?: string } = {}): Promise<Reply> {
  const headers: Record<string, string> = { 'Content-Type': init.type ?? 'application/json' };
  if (init.key !== null) headers.Authorization = `Bearer ${init.key ?? KEY}`;
  const res = await fetch(`${server.url}${path}`, { method: init.method ?? (init.body !== undefined ? 'POST' : 'GET'), headers, body: init.body });
  assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
  return { status: res.status, body: await res.json() };
}

const chat = (extra: Record<string, unknown> = {}) => JSON.stringify({ model, messages: [{ role: 'user', content: 'What is in a.txt?' }], max_tokens: 2, ...extra });

async function stillServing(): Promise<void> {
  const r = await call('/v1/chat/completions', { body: chat() });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.equal(r.body.choices?.length, 1);
}

test('every bad request gets its 4xx and a JSON error, and the server keeps serving', async () => {
  const cases: { name: string; path: string; init: Parameters<typeof call>[1]; status: number; code: string }[] = [
    { name: 'malformed JSON', path: '/v1/chat/completions', init: { body: '{"model": ' }, status: 400, code: 'invalid_json' },
    { name: 'oversized body', path: '/v1/chat/completions', init: { body: chat({ user: 'x'.repeat(8000) }) }, status: 413, code: 'request_too_large' },
    { name: 'no key', path: '/v1/chat/completions', init: { body: chat(), key: null }, status: 401, code: 'invalid_api_key' },
    { name: 'wrong key', path: '/v1/chat/completions', init: { body: chat(), key: 'not-the-key' }, status: 401, code: 'invalid_api_key' },
    { name: 'wrong key on /v1/models', path: '/v1/models', init: { key: 'not-the-key' }, status: 401, code: 'invalid_api_key' },
    { name: 'unknown model', path: '/v1/chat/completions', init: { body: chat({ model: 'gpt-4o' }) }, status: 404, code: 'model_not_found' },
    { name: 'max_tokens over the limit', path: '/v1/chat/completions', init: { body: chat({ max_tokens: 65 }) }, status: 400, code: 'invalid_value' },
    { name: 'last message not the user\'s', path: '/v1/chat/completions', init: { body: JSON.stringify({ model, messages: [{ role: 'assistant', content: 'x' }] }) }, status: 400, code: 'invalid_value' },
    { name: 'n > 1', path: '/v1/chat/completions', init: { body: chat({ n: 2 }) }, status: 400, code: 'invalid_value' },
    { name: 'not JSON content', path: '/v1/chat/completions', init: { body: chat(), type: 'text/plain' }, status: 415, code: 'unsupported_media_type' },
    { name: 'wrong method', path: '/v1/chat/completions', init: { method: 'GET' }, status: 405, code: 'method_not_allowed' },
    { name: 'unknown endpoint', path: '/v1/embeddings', init: { body: '{}' }, status: 404, code: 'not_found' },
    { name: 'completion without prompt', path: '/v1/completions', init: { body: JSON.stringify({ model }) }, status: 400, code: 'invalid_value' },
  ];
  for (const c of cases) {
    const r = await call(c.path, c.init);
    assert.equal(r.status, c.status, `${c.name}: ${JSON.stringify(r.body)}`);
    assert.equal(r.body.error?.code, c.code, c.name);
    assert.ok(r.body.error!.message.length > 10, c.name);
    await stillServing();
  }
  const health = await fetch(`${server.url}/health`);
  assert.equal(health.status, 200);
  assert.deepEqual(await health.json(), { status: 'ok' });
});

test('requests beyond --max-concurrent get 429 until one ends', async () => {
  const url = new URL(`${server.url}/v1/chat/completions`);
  // Requests whose bodies never finish arriving hold their places without using the model.
  const held = [0, 1].map(() => {
    const req = request({ host: url.hostname, port: url.port, path: url.pathname, method: 'POST', headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${KEY}`, 'Content-Length': '1000' } });
    req.on('error', () => {});
    req.write('{"model":');
    return req;
  });
  await new Promise((r) => setTimeout(r, 300));
  const busy = await call('/v1/chat/completions', { body: chat() });
  assert.equal(busy.status, 429, JSON.stringify(busy.body));
  assert.equal(busy.body.error?.code, 'too_many_requests');
  for (const req of held) req.destroy();
  const deadline = Date.now() + 5000;
  let r = busy;
  while (r.status === 429 && Date.now() < deadline) {
    await new Promise((ok) => setTimeout(ok, 50));
    r = await call('/v1/chat/completions', { body: chat() });
  }
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.doesNotMatch(server.log(), /internal error/);
});
