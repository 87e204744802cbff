/**
 * Engine requests with missing or ill-typed params: a user error naming the field, the handler
 * never runs, and a bad engine/open keeps the model that is open. Driven through serveEngine on an
 * in-memory JSON-RPC connection with the bundled tiny checkpoint.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { createMessageConnection, ResponseError, StreamMessageReader, StreamMessageWriter } from 'vscode-jsonrpc/node';
import { requestParamsError } from '../../../src/engine/host/request-params';
import { serveEngine } from '../../../src/engine/host/serve';
import { EngineErrorCode } from '../../../src/common/engine-protocol';

test('each ill-formed params is named precisely', () => {
  const cases: [string, unknown, string][] = [
    ['engine/open', undefined, 'engine/open: params must be an object, got nothing'],
    ['engine/open', { backend: 'gpu', cacheDir: '/c' }, 'engine/open: params.backend must be one of auto, cuda, onnx, reference, remote, got "gpu"'],
    ['engine/open', { backend: 'auto', cacheDir: 'relative/dir' }, 'engine/open: params.cacheDir must be an absolute path, got "relative/dir"'],
    ['engine/open', { backend: 'auto', cacheDir: '/c', modelDir: '' }, 'engine/open: params.modelDir must be a non-empty string, got ""'],
    ['engine/ingest', { settings: { roots: [] }, progressToken: 'p' }, 'engine/ingest: params.settings.roots must hold at least 1 item'],
    ['engine/ingest', { settings: { roots: ['/w'], maxTokens: 1.5 }, progressToken: 'p' }, 'engine/ingest: params.settings.maxTokens must be a whole number ≥ 1, got 1.5'],
    ['engine/ingest', { settings: { roots: ['/w'] } }, 'engine/ingest: params.progressToken must be a string, got nothing'],
    ['engine/ask', { request: { question: 7 }, textToken: 't' }, 'engine/ask: params.request.question must be a string, got 7'],
    ['engine/ask', { request: { question: 'q', sampling: { topP: 2 } }, textToken: 't' }, 'engine/ask: params.request.sampling.topP must be a number from 0 to 1, got 2'],
    ['engine/ask', { request: { question: 'q', history: [{ role: 'system', content: 'x' }] }, textToken: 't' }, 'engine/ask: params.request.history[0].role must be one of user, assistant, got "system"'],
    ['engine/askBatch', { requests: [], textToken: 't' }, 'engine/askBatch: params.requests must hold at least 1 item'],
    ['engine/markStale', { paths: 'a.ts' }, 'engine/markStale: params.paths must be a list, got "a.ts"'],
  ];
  for (const [method, params, message] of cases) assert.equal(requestParamsError(method, params), message);
  assert.equal(requestParamsError('engine/ask', { request: { question: 'q', sampling: { temperature: 0.3, seed: 4 } }, textToken: 't' }), undefined);
  assert.equal(requestParamsError('engine/status', undefined), undefined);
  assert.equal(requestParamsError('engine/open', { backend: 'remote', cacheDir: '/c', remote: { url: 'http://h:8000/v1', model: 'm' } }), undefined);
  assert.equal(requestParamsError('engine/open', { backend: 'cuda', cacheDir: '/c', memory: { contextTokens: 1000, quantization: 'int4' } }), undefined);
  assert.equal(requestParamsError('engine/open', { backend: 'cuda', cacheDir: '/c', memory: { forks: -1 } }), 'engine/open: params.memory.forks must be a whole number ≥ 0, got -1');
});

test('through the engine host: bad params are user errors and a bad open keeps the open model', async () => {
  const toEngine = new PassThrough();
  const fromEngine = new PassThrough();
  const engine = createMessageConnection(new StreamMessageReader(toEngine), new StreamMessageWriter(fromEngine));
  const client = createMessageConnection(new StreamMessageReader(fromEngine), new StreamMessageWriter(toEngine));
  serveEngine(engine, { log: () => undefined, exit: () => undefined });
  engine.listen();
  client.listen();
  try {
    const cacheDir = mkdtempSync(join(tmpdir(), 'klc-params-cache-'));
    const opened = (await client.sendRequest('engine/open', { backend: 'reference', cacheDir })) as { model: { path: string } };
    const refused = async (method: string, params: unknown, pattern: RegExp) => {
      await assert.rejects(client.sendRequest(method, params), (e: unknown) => {
        assert.ok(e instanceof ResponseError, String(e));
        assert.equal(e.code, EngineErrorCode.User);
        assert.match(e.message, pattern);
        return true;
      });
    };
    await refused('engine/open', { backend: 'gpu', cacheDir }, /params\.backend must be one of/);
    const status = (await client.sendRequest('engine/status')) as { model: { path: string } | null };
    assert.equal(status.model?.path, opened.model.path, 'the open model is still loaded');
    await refused('engine/open', { backend: 'reference', cacheDir, modelDir: join(cacheDir, 'no-model-here') }, /no-model-here is not a model folder \(it has no config\.json\); the open model stays loaded/);
    assert.equal(((await client.sendRequest('engine/status')) as { model: { path: string } | null }).model?.path, opened.model.path);
    await refused('engine/ingest', { settings: { roots: 'nope' }, progressToken: 'p' }, /params\.settings\.roots must be a list/);
    await refused('engine/ask', { request: {}, textToken: 't' }, /params\.request\.question must be a string, got nothing/);
    await refused('engine/markStale', undefined, /engine\/markStale: params must be an object/);
  } finally {
    await client.sendRequest('engine/shutdown').catch(() => undefined);
    client.dispose();
    engine.dispose();
  }
});
