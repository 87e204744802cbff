/** The decode loop on the bundled tiny checkpoint: streaming, stop tokens, token limit, cancellation. */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { generate } from '../../../src/engine/generate';
import { loadModel, type Model } from '../../../src/engine/model/model';
import { loadTokenizer } from '../../../src/engine/model/tokenizer';
import type { Tokenizer } from '../../../src/engine/model/tokenizer/types';
import { questionTokens, stopIds } from '../../../src/engine/chat-template';
import { bundledModelDir } from '../../../src/common/package-root';

let model: Model;
let tok: Tokenizer;
let prompt: number[];
const greedy = { temperature: 0, topP: 1, topK: 0, maxNewTokens: 12 };

before(async () => {
  model = await loadModel(bundledModelDir(), { backend: 'reference' });
  tok = await loadTokenizer(bundledModelDir());
  prompt = questionTokens(tok, 'Explain the KDA recurrence in src/engine/reference/kda.ts.');
});

test('streamed pieces add up to the answer, which is the decoded non-control tokens', async () => {
  const pieces: string[] = [];
  const r = await generate(model, tok, model.newState(), prompt, { sampling: greedy, stopIds: new Set(), onText: (d) => pieces.push(d) });
  assert.equal(r.stopReason, 'max_tokens');
  assert.equal(r.tokens, 12);
  assert.equal(pieces.join(''), r.text);
  const special = new Set(tok.specialTokens.values());
  assert.equal(r.text, tok.decode(r.ids.filter((id) => !special.has(id))));
  assert.ok(r.ttftMs > 0);
});

test('greedy decoding is repeatable and stops on an end token without emitting it', async () => {
  const a = await generate(model, tok, model.newState(), prompt, { sampling: greedy, stopIds: new Set() });
  const b = await generate(model, tok, model.newState(), prompt, { sampling: greedy, stopIds: new Set() });
  assert.deepEqual(a.ids, b.ids);
  const stopAtThird = await generate(model, tok, model.newState(), prompt, { sampling: greedy, stopIds: new Set([a.ids[2], ...stopIds(tok)]) });
  const firstStop = a.ids.findIndex((id) => id === a.ids[2]);
  assert.equal(stopAtThird.stopReason, 'eos');
  assert.deepEqual(stopAtThird.ids, a.ids.slice(0, firstStop));
});

test('cancellation stops between tokens', async () => {
  const controller = new AbortController();
  let seen = 0;
  const r = await generate(model, tok, model.newState(), prompt, {
    sampling: { ...greedy, maxNewTokens: 200 },
    stopIds: new Set(),
    signal: controller.signal,
    onText: () => {
      seen++;
      if (seen === 3) controller.abort();
    },
  });
  assert.equal(r.stopReason, 'cancelled');
  assert.ok(r.tokens < 10, `stopped after ${r.tokens} tokens`);
});

test('a cancelled prompt prefill ends before any token', async () => {
  const controller = new AbortController();
  controller.abort();
  const r = await generate(model, tok, model.newState(), prompt, { sampling: greedy, stopIds: new Set(), signal: controller.signal });
  assert.equal(r.stopReason, 'cancelled');
  assert.equal(r.tokens, 0);
});

test('ids beyond the tokenizer (padded embedding rows) are never sampled', async () => {
  const extra = 64;
  const padded = {
    prefill: async (...args: Parameters<Model['prefill']>) => pad(await model.prefill(...args)),
    decode: async (...args: Parameters<Model['decode']>) => pad(await model.decode(...args)),
  };
  function pad(logits: Float32Array): Float32Array {
    const out = new Float32Array(logits.length + extra).fill(1e6);
    out.set(logits);
    return out;
  }
  const r = await generate(padded, tok, model.newState(), prompt, { sampling: greedy, stopIds: new Set() });
  const plain = await generate(model, tok, model.newState(), prompt, { sampling: greedy, stopIds: new Set() });
  assert.deepEqual(r.ids, plain.ids);
  assert.ok(r.ids.every((id) => id < tok.vocabSize));
});
