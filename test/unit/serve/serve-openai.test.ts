/**
 * `klc serve` driven by the official openai client: models per workspace, chat completions with and
 * without streaming, completions, stop sequences and cancellation. Answers are compared with what
 * an EngineSession of its own (another cache, same greedy sampling) answers for the same question.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { basename } from 'node:path';
import OpenAI from 'openai';
import { questionTokens, repoClosing, repoPreamble, repoSystemContent } from '../../../src/engine/chat-template';
import { EngineSession } from '../../../src/engine/session';
import { makeWorkspace, SMALL_WORKSPACE, tempDir } from '../client/engine-fixture';
import { startServe, type ServeProcess } from './serve-process';

const alpha = makeWorkspace(SMALL_WORKSPACE);
const beta = makeWorkspace({ 'lib/util.py': 'def double(x):\n    return 2 * x\n' });
let server: ServeProcess;
let client: OpenAI;
let reference: EngineSession;
const alphaId = `kimi-linear@${basename(alpha)}`;

before(async () => {
  server = await startServe(['--workspace', alpha, '--workspace', beta]);
  client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused-on-loopback', maxRetries: 0 });
  reference = await EngineSession.open({ backend: 'reference', cacheDir: tempDir('serve-ref-cache'), workspace: { roots: [alpha] }, log: () => {} });
  await reference.ingest(undefined);
});

after(async () => {
  assert.equal(await server.stop(), 0, server.log());
  await reference.dispose();
});

async function expected(question: string, maxNewTokens: number, history: { role: 'user' | 'assistant'; content: string }[] = []) {
  const r = await reference.ask({ question, history, sampling: { maxNewTokens } });
  const repoTokens = reference.status().repo.tokens;
  return { text: r.text, tokens: r.tokens, repoTokens, promptTokens: repoTokens + questionTokens(reference.tokenizer, question, history).length };
}

test('GET /v1/models lists one kimi-linear@<folder> id per served workspace with its context length', async () => {
  const models = await client.models.list();
  const ids = models.data.map((m) => m.id).sort();
  assert.deepEqual(ids, [alphaId, `kimi-linear@${basename(beta)}`].sort());
  const card = models.data.find((m) => m.id === alphaId) as unknown as { max_model_len: number; repository_tokens: number };
  assert.equal(card.max_model_len, reference.maxContext);
  assert.equal(card.repository_tokens, reference.status().repo.tokens);
});

test('each workspace answers from its own repository, on the one loaded model', async () => {
  const other = await EngineSession.open({ backend: 'reference', cacheDir: tempDir('serve-ref-beta'), workspace: { roots: [beta] }, log: () => {} });
  try {
    await other.ingest(undefined);
    const want = await other.ask({ question: 'What does double do?', sampling: { maxNewTokens: 8 } });
    const r = await client.chat.completions.create({ model: `kimi-linear@${basename(beta)}`, messages: [{ role: 'user', content: 'What does double do?' }], max_tokens: 8 });
    assert.equal(r.choices[0].message.content, want.text);
    assert.equal(r.usage?.prompt_tokens_details?.cached_tokens, other.status().repo.tokens);
    assert.notEqual(other.status().repo.tokens, reference.status().repo.tokens);
  } finally {
    await other.dispose();
  }
});

test('a chat completion answers from the cached repository, and a second question reports its tokens as cached', async () => {
  for (const question of ['What does twice do?', 'Which file prints the result?']) {
    const want = await expected(question, 12);
    const r = await client.chat.completions.create({ model: alphaId, messages: [{ role: 'user', content: question }], max_tokens: 12 });
    assert.equal(r.choices[0].message.content, want.text);
    assert.equal(r.choices[0].finish_reason, want.tokens === 12 ? 'length' : 'stop');
    assert.equal(r.usage?.prompt_tokens, want.promptTokens);
    assert.equal(r.usage?.completion_tokens, want.tokens);
    assert.equal(r.usage?.prompt_tokens_details?.cached_tokens, want.repoTokens);
    assert.ok(want.repoTokens > 50, `the repository has ${want.repoTokens} tokens`);
  }
});

test('a streamed chat completion sends the same text in chunks, then the usage, then [DONE]', async () => {
  const question = 'Where is add defined?';
  const history = [{ role: 'user' as const, content: 'Hello' }, { role: 'assistant' as const, content: 'Hi. Ask about the code.' }];
  const want = await expected(question, 10, history);
  const stream = await client.chat.completions.create({
    model: alphaId,
    messages: [...history, { role: 'user', content: question }],
    max_tokens: 10,
    stream: true,
    stream_options: { include_usage: true },
  });
  let text = '';
  let chunks = 0;
  let usage: OpenAI.CompletionUsage | undefined | null;
  let finish: string | null = null;
  for await (const chunk of stream) {
    chunks++;
    if (chunk.choices[0]?.delta.content) text += chunk.choices[0].delta.content;
    if (chunk.choices[0]?.finish_reason) finish = chunk.choices[0].finish_reason;
    if (chunk.usage) usage = chunk.usage;
  }
  assert.equal(text, want.text);
  assert.ok(chunks >= 3, `${chunks} chunks`);
  assert.equal(finish, want.tokens === 10 ? 'length' : 'stop');
  assert.equal(usage?.prompt_tokens, want.promptTokens);
  assert.equal(usage?.prompt_tokens_details?.cached_tokens, want.repoTokens);
});

test('chat requests that wait together are answered in one batch, each as it is alone', async () => {
  // A long answer holds the model while the others arrive, so that they wait together.
  const holder = await client.chat.completions.create({ model: alphaId, messages: [{ role: 'user', content: 'Tell a long story.' }], max_tokens: 300, stream: true });
  const reader = holder[Symbol.asyncIterator]();
  await reader.next();
  const questions = ['What is add?', 'What is twice?', 'What does the README say?'];
  const answers = Promise.all(questions.map((q) => client.chat.completions.create({ model: alphaId, messages: [{ role: 'user', content: q }], max_tokens: 6 })));
  while ((await reader.next()).done !== true);
  const got = await answers;
  for (const [i, q] of questions.entries()) {
    const want = await expected(q, 6);
    assert.equal(got[i].choices[0].message.content, want.text, q);
    assert.equal(got[i].usage?.prompt_tokens, want.promptTokens, q);
    assert.equal(got[i].usage?.prompt_tokens_details?.cached_tokens, want.repoTokens, q);
  }
  assert.match(server.log(), new RegExp(`answered 3 chat requests for ${alphaId.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} in one batch`));
});

test('a request that carries the packed repository as its system message continues from the cached state', async () => {
  const ids = reference.repoIds()!;
  const tok = reference.tokenizer;
  const packed = tok.decode(ids.subarray(repoPreamble(tok).length, ids.length - repoClosing(tok).length));
  const question = 'What does twice do?';
  const want = await expected(question, 8);
  const r = await client.chat.completions.create({
    model: alphaId,
    messages: [{ role: 'system', content: repoSystemContent(packed) }, { role: 'user', content: question }],
    max_tokens: 8,
  });
  assert.equal(r.choices[0].message.content, want.text);
  assert.equal(r.usage?.prompt_tokens, want.promptTokens);
  assert.equal(r.usage?.prompt_tokens_details?.cached_tokens, want.repoTokens);
});

test('other system text goes in front of the first user turn, since the system turn holds the repository', async () => {
  const want = await expected('Be brief.\n\nWhat does add do?', 8, []);
  const r = await client.chat.completions.create({
    model: alphaId,
    messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'What does add do?' }],
    max_tokens: 8,
  });
  assert.equal(r.choices[0].message.content, want.text);
  assert.equal(r.usage?.prompt_tokens, want.promptTokens);
});

test('a stop sequence ends the answer before it, streamed or not', async () => {
  const question = 'Explain main.ts';
  const full = (await expected(question, 16)).text;
  const stop = full.slice(Math.floor(full.length / 2), Math.floor(full.length / 2) + 3);
  assert.ok(stop.length === 3, `the answer ${JSON.stringify(full)} is long enough to cut`);
  const cut = full.slice(0, full.indexOf(stop));
  const plain = await client.chat.completions.create({ model: alphaId, messages: [{ role: 'user', content: question }], max_tokens: 16, stop });
  assert.equal(plain.choices[0].message.content, cut);
  assert.equal(plain.choices[0].finish_reason, 'stop');
  const stream = await client.chat.completions.create({ model: alphaId, messages: [{ role: 'user', content: question }], max_tokens: 16, stop: [stop], stream: true });
  let text = '';
  for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? '';
  assert.equal(text, cut);
});

test('/v1/completions continues a raw prompt after the repository, streamed or not', async () => {
  const prompt = 'export function';
  const fork = reference.forkRepoState()!;
  const { generate } = await import('../../../src/engine/generate');
  const { stopIds } = await import('../../../src/engine/chat-template');
  const { DEFAULT_SAMPLING } = await import('../../../src/engine/sampler');
  const want = await generate(reference.model, reference.tokenizer, fork.state, reference.tokenizer.encodeOrdinary(prompt), {
    sampling: { ...DEFAULT_SAMPLING, maxNewTokens: 6 },
    stopIds: stopIds(reference.tokenizer),
  }).finally(() => reference.model.releaseState(fork.state));
  const r = await client.completions.create({ model: alphaId, prompt, max_tokens: 6 });
  assert.equal(r.choices[0].text, want.text);
  assert.equal(r.usage?.prompt_tokens, fork.ids.length + reference.tokenizer.encodeOrdinary(prompt).length);
  assert.equal((r.usage as { prompt_tokens_details?: { cached_tokens: number } }).prompt_tokens_details?.cached_tokens, fork.ids.length);
  const stream = await client.completions.create({ model: alphaId, prompt, max_tokens: 6, stream: true });
  let text = '';
  for await (const chunk of stream) text += chunk.choices[0]?.text ?? '';
  assert.equal(text, want.text);
});

test('a client that goes away mid-stream cancels its generation, and the server goes on serving', async () => {
  const stream = await client.chat.completions.create({ model: alphaId, messages: [{ role: 'user', content: 'Tell a long story.' }], max_tokens: 4000, stream: true });
  for await (const chunk of stream) {
    if (chunk.choices[0]?.delta.content) break;
  }
  const deadline = Date.now() + 20_000;
  while (!/chat for .*: cancelled \(the client went away\)/.test(server.log()) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  assert.match(server.log(), /cancelled \(the client went away\)/);
  assert.doesNotMatch(server.log(), /: 4000 tokens/);
  const r = await client.chat.completions.create({ model: alphaId, messages: [{ role: 'user', content: 'Still there?' }], max_tokens: 2 });
  assert.equal(r.usage?.completion_tokens, 2);
});
