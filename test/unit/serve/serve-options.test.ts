/** The pure parts of klc serve: who may bind where, request validation, stop sequences, chat mapping. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { apiKeyOf, isLoopback } from '../../../src/cli/serve';
import { isUserError } from '../../../src/common/errors';
import { ApiError } from '../../../src/serve/api-error';
import { parseChatRequest, parseCompletionRequest } from '../../../src/serve/openai-request';
import { StopMatcher } from '../../../src/serve/stop-matcher';
import { tempDir } from '../client/engine-fixture';

test('only loopback addresses are loopback', () => {
  for (const h of ['127.0.0.1', '127.1.2.3', 'localhost', '::1', '[::1]']) assert.equal(isLoopback(h), true, h);
  for (const h of ['0.0.0.0', '::', '192.168.1.2', 'example.com', '128.0.0.1']) assert.equal(isLoopback(h), false, h);
});

test('binding beyond loopback needs a key file with a usable key', () => {
  assert.equal(apiKeyOf(undefined, '127.0.0.1'), undefined);
  assert.throws(() => apiKeyOf(undefined, '0.0.0.0'), (e: Error) => isUserError(e) && /--api-key-file/.test(e.message));
  const dir = tempDir('serve-keys');
  writeFileSync(join(dir, 'good'), '  s3cret-key-value\n');
  writeFileSync(join(dir, 'short'), 'abc\n');
  assert.equal(apiKeyOf(join(dir, 'good'), '0.0.0.0'), 's3cret-key-value');
  assert.throws(() => apiKeyOf(join(dir, 'short'), '0.0.0.0'), /at least 8 characters/);
  assert.throws(() => apiKeyOf(join(dir, 'missing'), '0.0.0.0'), /cannot read the API key file/);
});

test('a chat request keeps text content, maps developer to system and OpenAI sampling fields to ours', () => {
  const r = parseChatRequest({
    model: 'm',
    messages: [{ role: 'developer', content: 'be brief' }, { role: 'user', content: [{ type: 'text', text: 'a' }, { type: 'text', text: 'b' }] }],
    max_completion_tokens: 7,
    temperature: 0.5,
    top_p: 0.9,
    seed: 3,
    stop: 'END',
    stream: true,
    stream_options: { include_usage: true },
    tools: [],
  }, 100);
  assert.deepEqual(r.messages, [{ role: 'system', content: 'be brief' }, { role: 'user', content: 'ab' }]);
  assert.deepEqual(r.sampling, { temperature: 0.5, topP: 0.9, topK: 0, maxNewTokens: 7, seed: 3 });
  assert.deepEqual(r.stop, ['END']);
  assert.equal(r.stream, true);
  assert.equal(r.includeUsage, true);
});

test('requests the engine cannot honour are refused with the field named', () => {
  const bad = (body: unknown, param: string) =>
    assert.throws(() => parseChatRequest(body, 100), (e: ApiError) => e instanceof ApiError && e.status === 400 && e.param === param, param);
  const messages = [{ role: 'user', content: 'q' }];
  bad([], 'body');
  bad({ messages }, 'model');
  bad({ model: 'm', messages: [] }, 'messages');
  bad({ model: 'm', messages, max_tokens: 101 }, 'max_tokens');
  bad({ model: 'm', messages, temperature: 3 }, 'temperature');
  bad({ model: 'm', messages, stop: ['a', 'b', 'c', 'd', 'e'] }, 'stop');
  bad({ model: 'm', messages: [{ role: 'tool', content: 'x' }, ...messages] }, 'messages[0].role');
  bad({ model: 'm', messages: [{ role: 'user', content: [{ type: 'image_url', image_url: {} }] }] }, 'messages[0].content');
  assert.throws(() => parseCompletionRequest({ model: 'm', prompt: 'x', echo: true }, 100), (e: ApiError) => e.param === 'echo');
  assert.throws(() => parseCompletionRequest({ model: 'm', prompt: ['a', 'b'] }, 100), (e: ApiError) => e.param === 'prompt');
  assert.equal(parseCompletionRequest({ model: 'm', prompt: ['only'] }, 100).prompt, 'only');
});

test('a stop sequence split over deltas is never sent, and the text before it is', () => {
  const m = new StopMatcher(['STOP', 'xy']);
  let out = '';
  for (const d of ['ab', 'cS', 'T', 'O', 'zz', 'S', 'TO', 'P!', 'more']) out += m.push(d);
  assert.equal(out, 'abcSTOzz');
  assert.equal(m.stopped, true);
  assert.equal(m.flush(), '');
  const open = new StopMatcher(['END']);
  assert.equal(open.push('hello E'), 'hello ');
  assert.equal(open.push('N'), '');
  assert.equal(open.flush(), 'EN');
  const none = new StopMatcher([]);
  assert.equal(none.push('as is'), 'as is');
});
