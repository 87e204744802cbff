/**
 * Turning a prompt into a streamed answer: chunked prefill of the prompt into a (forked) state,
 * then the decode loop — sample, stream the text, stop on an end token, the token limit or
 * cancellation. Cancellation is checked between tokens and between prefill chunks.
 */
import type { AskResult, SamplingOptions } from './api';
import { sampleToken, seededRandom } from './sampler';
import type { SequenceState } from './state/types';
import type { Tokenizer } from './model/tokenizer/types';

/** What generation needs from a model; prefill and decode are separate, as in gpt-fast. */
export interface CausalLM {
  prefill(state: SequenceState, ids: Int32Array, opts?: { logits?: 'all' | 'last' | 'none' }): Float32Array | Promise<Float32Array>;
  decode(state: SequenceState, id: number): Float32Array | Promise<Float32Array>;
}

export const PREFILL_CHUNK = 512;

/** Yields to the event loop so that a cancellation request can arrive. */
const tick = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * Prefills `ids` into `state` in chunks and returns the logits of the last position. `onChunk`
 * reports progress; a fired signal stops between chunks with the state consistent at a chunk end.
 */
export async function prefillChunked(
  model: CausalLM,
  state: SequenceState,
  ids: ArrayLike<number>,
  opts: { chunk?: number; signal?: AbortSignal; onChunk?: (done: number) => void | Promise<void> } = {},
): Promise<Float32Array | null> {
  const chunk = opts.chunk ?? PREFILL_CHUNK;
  let logits: Float32Array | null = null;
  for (let start = 0; start < ids.length; start += chunk) {
    if (opts.signal?.aborted) throw new CancelledError();
    const end = Math.min(ids.length, start + chunk);
    const slice = Int32Array.from({ length: end - start }, (_, i) => ids[start + i]);
    logits = await model.prefill(state, slice, { logits: end === ids.length ? 'last' : 'none' });
    await opts.onChunk?.(end);
    await tick();
  }
  return logits;
}

export class CancelledError extends Error {
  constructor() {
    super('cancelled');
    this.name = 'CancelledError';
  }
}

export interface GenerateOptions {
  sampling: SamplingOptions;
  stopIds: Set<number>;
  onText?: (delta: string) => void;
  signal?: AbortSignal;
  /** When the request started, for time-to-first-token (default: now). */
  startedAt?: number;
}

export interface Generated extends AskResult {
  ids: number[];
}

/** Prefills `promptIds` into `state` (which it consumes) and generates the answer. */
export async function generate(
  model: CausalLM,
  tokenizer: Tokenizer,
  state: SequenceState,
  promptIds: ArrayLike<number>,
  opts: GenerateOptions,
): Promise<Generated> {
  const started = opts.startedAt ?? performance.now();
  const random = seededRandom(opts.sampling.seed ?? 0x5eed);
  const decoder = new TextDecoder('utf-8');
  const ids: number[] = [];
  // Control tokens are part of the conversation's structure, not of the answer's text.
  const special = new Set(tokenizer.specialTokens.values());
  let text = '';
  const emit = (bytes: Uint8Array, final = false) => {
    const delta = decoder.decode(bytes, { stream: !final });
    if (delta) {
      text += delta;
      opts.onText?.(delta);
    }
  };

  let logits: Float32Array | null;
  try {
    logits = await prefillChunked(model, state, promptIds, { signal: opts.signal });
  } catch (e) {
    if (e instanceof CancelledError) return { ids, text, tokens: 0, ttftMs: 0, decodeTokensPerSecond: 0, stopReason: 'cancelled' };
    throw e;
  }
  if (!logits) throw new Error('generate: empty prompt');

  // A checkpoint's embedding may have more rows than its tokenizer has ids (padding for the GPU);
  // those ids decode to nothing, so they are never sampled.
  const vocab = tokenizer.vocabSize;
  let ttftMs = 0;
  let decodeStart = 0;
  let stopReason: AskResult['stopReason'] = 'max_tokens';
  while (ids.length < opts.sampling.maxNewTokens) {
    const id = sampleToken(logits.length > vocab ? logits.subarray(0, vocab) : logits, opts.sampling, random);
    if (ids.length === 0) {
      ttftMs = performance.now() - started;
      decodeStart = performance.now();
    }
    if (opts.stopIds.has(id)) {
      stopReason = 'eos';
      break;
    }
    ids.push(id);
    if (!special.has(id)) emit(tokenizer.decodeBytes([id]));
    if (ids.length >= opts.sampling.maxNewTokens) break;
    await tick();
    if (opts.signal?.aborted) {
      stopReason = 'cancelled';
      break;
    }
    logits = await model.decode(state, id);
  }
  emit(new Uint8Array(0), true);
  const decodeSeconds = (performance.now() - decodeStart) / 1000;
  return {
    ids,
    text,
    tokens: ids.length,
    ttftMs,
    decodeTokensPerSecond: ids.length > 1 && decodeSeconds > 0 ? (ids.length - 1) / decodeSeconds : 0,
    stopReason,
  };
}
