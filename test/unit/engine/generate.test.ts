/** The decode loop on the bundled tiny checkpoint: streaming, stop tokens, token limit, cancellation. */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { generate, generateBatch, type CausalLM } from '../../../src/engine/generate';
import { pickToken, sampleToken, seededRandom } from '../../../src/engine/sampler';
import type { SequenceState } from '../../../src/engine/state/types';
import type { SamplingOptions } from '../../../src/engine/api';
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
  const V = model.config.vocabSize;
  const padded: CausalLM = {
    prefill: async (...args: Parameters<Model['prefill']>) => pad(await model.prefill(...args), 1),
    decodeAndPick: async (states, ids, picks) => {
      const logits = pad(await model.decodeBatch(states, ids), states.length);
      return Int32Array.from(picks, (p, i) => pickToken(logits.subarray(i * (V + extra), (i + 1) * (V + extra)), p));
    },
  };
  function pad(logits: Float32Array, rows: number): Float32Array {
    const out = new Float32Array(rows * (V + extra)).fill(1e6);
    for (let r = 0; r < rows; r++) out.set(logits.subarray(r * V, (r + 1) * V), r * (V + extra));
    return out;
  }
  const r = await generate(padded, tok, model.newState(), prompt, { sampling: greedy, stopIds: new Set() });
  const plain = await generate(model, tok, model.newState(), prompt, { sampling: greedy, stopIds: new Set() });
  assert.deepEqual(r.ids, plain.ids);
  assert.ok(r.ids.every((id) => id < tok.vocabSize));
});

/** The decode loop as it was before batching: one sequence, host logits, sampleToken. */
async function hostLoop(state: SequenceState, ids: number[], sampling: SamplingOptions): Promise<number[]> {
  const random = seededRandom(sampling.seed ?? 0x5eed);
  let logits = await model.prefill(state, Int32Array.from(ids));
  const out: number[] = [];
  while (out.length < sampling.maxNewTokens) {
    const id = sampleToken(logits.subarray(0, tok.vocabSize), sampling, random);
    out.push(id);
    if (out.length >= sampling.maxNewTokens) break;
    logits = await model.decode(state, id);
  }
  return out;
}

test('a batch of three prompts gives each the tokens it gets alone, with its own sampling, seed and limit', async () => {
  const prompts = [prompt, questionTokens(tok, 'What does the packer do with secrets?'), questionTokens(tok, 'List the CLI commands.')];
  const sampling: SamplingOptions[] = [
    greedy,
    { temperature: 0.9, topP: 0.95, topK: 50, maxNewTokens: 10, seed: 1234 },
    { temperature: 1.2, topP: 1, topK: 0, maxNewTokens: 3, seed: 99 },
  ];
  const streamed = ['', '', ''];
  const batch = await generateBatch(model, tok, prompts.map(() => model.newState()), prompts, sampling.map((s, i) => ({
    sampling: s,
    stopIds: new Set<number>(),
    onText: (d: string) => (streamed[i] += d),
  })));
  for (const [i, p] of prompts.entries()) {
    const alone = await generate(model, tok, model.newState(), p, { sampling: sampling[i], stopIds: new Set() });
    assert.deepEqual(batch[i].ids, alone.ids, `prompt ${i}`);
    assert.equal(batch[i].text, alone.text);
    assert.equal(streamed[i], alone.text);
    assert.equal(batch[i].tokens, sampling[i].maxNewTokens);
    assert.equal(batch[i].stopReason, 'max_tokens');
    assert.deepEqual(alone.ids, await hostLoop(model.newState(), p, sampling[i]), `prompt ${i} against the unbatched host loop`);
  }
});

test('a sequence that ends leaves the batch with its state not advanced; the others go on', async () => {
  const other = questionTokens(tok, 'Where is the tokenizer loaded?');
  const first = await generate(model, tok, model.newState(), prompt, { sampling: greedy, stopIds: new Set() });
  const states = [model.newState(), model.newState()];
  const stopAtThird = new Set([first.ids[2]]);
  const [stopped, full] = await generateBatch(model, tok, states, [prompt, other], [
    { sampling: greedy, stopIds: stopAtThird },
    { sampling: greedy, stopIds: new Set() },
  ]);
  const firstStop = first.ids.indexOf(first.ids[2]);
  assert.equal(stopped.stopReason, 'eos');
  assert.deepEqual(stopped.ids, first.ids.slice(0, firstStop));
  // The prompt, then one decode per token before the end token (the last accepted token is not fed).
  assert.equal(states[0].length, prompt.length + Math.max(0, firstStop));
  assert.equal(full.tokens, 12);
  assert.equal(states[1].length, other.length + 11);
});

test('a fired signal cancels every sequence of a batch', async () => {
  const controller = new AbortController();
  let seen = 0;
  const opts = (onText?: () => void) => ({ sampling: { ...greedy, maxNewTokens: 200 }, stopIds: new Set<number>(), signal: controller.signal, onText });
  const results = await generateBatch(model, tok, [model.newState(), model.newState()], [prompt, prompt], [
    opts(() => {
      seen++;
      if (seen === 3) controller.abort();
    }),
    opts(),
  ]);
  for (const r of results) {
    assert.equal(r.stopReason, 'cancelled');
    assert.ok(r.tokens < 10, `stopped after ${r.tokens} tokens`);
  }
});

test('with maxBatch 2 the third prompt waits, starts when the shorter answer ends, and still gets its own tokens', async () => {
  const prompts = [prompt, questionTokens(tok, 'Where is the tokenizer loaded?'), questionTokens(tok, 'List the CLI commands.')];
  const limits = [3, 8, 5];
  const sizes: number[] = [];
  const events: string[] = [];
  const counted: CausalLM = {
    prefill: (...args: Parameters<Model['prefill']>) => model.prefill(...args),
    decodeAndPick: (states, ids, picks) => {
      sizes.push(states.length);
      return model.decodeAndPick(states, ids, picks);
    },
  };
  const batch = await generateBatch(counted, tok, (i) => {
    events.push(`start ${i}`);
    return model.newState();
  }, prompts, limits.map((n, i) => ({ sampling: { ...greedy, maxNewTokens: n }, stopIds: new Set<number>(), onDone: () => events.push(`end ${i}`) })), 2);
  assert.deepEqual(events.slice(0, 4), ['start 0', 'start 1', 'end 0', 'start 2']);
  assert.ok(sizes.every((n) => n <= 2) && sizes.includes(2), sizes.join(','));
  for (const [i, p] of prompts.entries()) {
    const alone = await generate(model, tok, model.newState(), p, { sampling: { ...greedy, maxNewTokens: limits[i] }, stopIds: new Set() });
    assert.deepEqual(batch[i].ids, alone.ids, `prompt ${i}`);
  }
});
