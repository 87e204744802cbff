/**
 * Turning prompts into streamed answers: chunked prefill of each prompt into its (forked) state,
 * then the decode loop over all unfinished answers at once — pick, stream the text, stop on an
 * end token, the token limit or cancellation. Cancellation is checked between tokens and between
 * prefill chunks.
 */
import type { AskResult, SamplingOptions } from './api';
import { pickToken, seededRandom, tokenPick, type TokenPick } from './sampler';
import type { SequenceState } from './state/types';
import type { Tokenizer } from './model/tokenizer/types';

/** What generation needs from a model; prefill and decode are separate, as in gpt-fast. */
export interface CausalLM {
  prefill(state: SequenceState, ids: Int32Array, opts?: { logits?: 'all' | 'last' | 'none' }): Float32Array | Promise<Float32Array>;
  /** One decode step of several sequences (ids[i] continues states[i]) and one token picked per row. */
  decodeAndPick(states: readonly SequenceState[], ids: Int32Array, picks: readonly TokenPick[]): Int32Array | Promise<Int32Array>;
  /** Frees a state's device memory now; generateBatch calls it for states its factory made, once their answer ends. */
  releaseState?(state: SequenceState): void;
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
  /** Called once when the answer ends (end token, limit or cancellation), before the others in its batch may have. */
  onDone?: (result: Generated) => void;
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
  const [result] = await generateBatch(model, tokenizer, [state], [promptIds], [opts]);
  return result;
}

/**
 * Where generateBatch gets each sequence's state: all given up front, or made when the sequence
 * starts, so that queued sequences hold no state yet.
 */
export type StateSource = readonly SequenceState[] | ((index: number) => SequenceState);

/**
 * Answers several prompts together: each prompt is prefilled into its state (which it consumes),
 * one sequence after another, then every unfinished sequence decodes in one batch per step. At
 * most `maxBatch` sequences run at once; the rest wait in order and each joins as soon as a
 * running one ends. Each sequence has its own sampling settings, seed, stop ids, token limit,
 * text stream and signal; a finished or cancelled sequence leaves the batch and its state is not
 * advanced further. A sequence draws from its own seeded PRNG only for picks that sample, so it
 * gets the same tokens as it would alone.
 */
export async function generateBatch(
  model: CausalLM,
  tokenizer: Tokenizer,
  states: StateSource,
  prompts: readonly ArrayLike<number>[],
  opts: readonly GenerateOptions[],
  maxBatch = Infinity,
): Promise<Generated[]> {
  const stateOf = typeof states === 'function' ? states : (i: number) => states[i];
  if (opts.length !== prompts.length || (typeof states !== 'function' && states.length !== prompts.length)) {
    throw new Error(`generateBatch: ${typeof states === 'function' ? 'state factory' : `${states.length} states`}, ${prompts.length} prompts and ${opts.length} option sets`);
  }
  if (!(maxBatch >= 1)) throw new Error(`generateBatch: maxBatch must be at least 1, got ${maxBatch}`);
  // Control tokens are part of the conversation's structure, not of the answer's text.
  const special = new Set(tokenizer.specialTokens.values());
  const started = performance.now();
  const answers = opts.map((o) => new Answer(tokenizer, special, o, o.startedAt ?? started));
  try {
    await runBatch(model, answers, stateOf, prompts, typeof states === 'function', maxBatch);
  } catch (e) {
    // A failed step (out of memory, say) ends every answer; the states the factory made go with them.
    for (const a of answers) a.abandon();
    throw e;
  }
  return answers.map((a) => a.result());
}

async function runBatch(
  model: CausalLM,
  answers: Answer[],
  stateOf: (i: number) => SequenceState,
  prompts: readonly ArrayLike<number>[],
  madeHere: boolean,
  maxBatch: number,
): Promise<void> {
  let queued = 0;
  let running: Answer[] = [];
  while (queued < answers.length || running.length > 0) {
    while (running.length < maxBatch && queued < answers.length) {
      const i = queued++;
      const release = madeHere && model.releaseState ? (s: SequenceState) => model.releaseState!(s) : undefined;
      if (await answers[i].start(model, () => stateOf(i), prompts[i], release)) running.push(answers[i]);
    }
    if (running.length === 0) continue;
    await tick();
    for (const a of running) if (a.opts.signal?.aborted) a.finish('cancelled');
    running = running.filter((a) => !a.done);
    if (running.length === 0) continue;
    const last = Int32Array.from(running, (a) => a.lastId);
    const picked = await model.decodeAndPick(running.map((a) => a.state), last, running.map((a) => a.nextPick()));
    running.forEach((a, j) => a.accept(picked[j]));
    running = running.filter((a) => !a.done);
  }
}

/** One sequence's answer while it is generated: its tokens, text, PRNG, timing and end. */
class Answer {
  readonly ids: number[] = [];
  text = '';
  done = false;
  private stopReason: AskResult['stopReason'] = 'max_tokens';
  private readonly random: () => number;
  private readonly decoder = new TextDecoder('utf-8');
  private ttftMs = 0;
  private decodeStart = 0;
  private decodeEnd = 0;

  private started: SequenceState | null = null;
  private release: ((s: SequenceState) => void) | undefined;

  constructor(
    private readonly tokenizer: Tokenizer,
    private readonly special: Set<number>,
    readonly opts: GenerateOptions,
    private readonly startedAt: number,
  ) {
    this.random = seededRandom(opts.sampling.seed ?? 0x5eed);
  }

  get state(): SequenceState {
    if (!this.started) throw new Error('generate: the answer has not started');
    return this.started;
  }

  /**
   * Prefills the prompt into the state `make` returns and picks the first token; returns whether
   * the answer goes on to decode. A fired signal ends it as cancelled, before its state is made.
   */
  async start(model: CausalLM, make: () => SequenceState, prompt: ArrayLike<number>, release?: (s: SequenceState) => void): Promise<boolean> {
    if (this.opts.signal?.aborted) {
      this.finish('cancelled');
      return false;
    }
    this.started = make();
    this.release = release;
    let logits: Float32Array | null;
    try {
      logits = await prefillChunked(model, this.started, prompt, { signal: this.opts.signal });
    } catch (e) {
      if (!(e instanceof CancelledError)) throw e;
      this.finish('cancelled');
      return false;
    }
    if (!logits) throw new Error('generate: empty prompt');
    if (this.wantsToken()) this.accept(pickToken(logits, this.nextPick()));
    return !this.done;
  }

  get lastId(): number {
    return this.ids[this.ids.length - 1];
  }

  /** False once the token limit is reached (a limit of 0 asks for no token at all). */
  wantsToken(): boolean {
    if (this.ids.length < this.opts.sampling.maxNewTokens) return true;
    this.finish('max_tokens');
    return false;
  }

  /**
   * The pick of the next token. A checkpoint's embedding may have more rows than its tokenizer has
   * ids (padding for the GPU); those ids decode to nothing, so they are never picked.
   */
  nextPick(): TokenPick {
    return tokenPick(this.opts.sampling, this.tokenizer.vocabSize, this.random);
  }

  /** Takes a picked token: an end token finishes the answer unseen, any other is streamed. */
  accept(id: number): void {
    if (this.ids.length === 0) {
      this.ttftMs = performance.now() - this.startedAt;
      this.decodeStart = performance.now();
    }
    if (this.opts.stopIds.has(id)) {
      this.finish('eos');
      return;
    }
    this.ids.push(id);
    if (!this.special.has(id)) this.emit(this.tokenizer.decodeBytes([id]));
    this.wantsToken();
  }

  /** Lets go of the state without reporting an end (the batch failed). */
  abandon(): void {
    if (this.started) this.release?.(this.started);
    this.started = null;
  }

  finish(reason: AskResult['stopReason']): void {
    if (this.done) return;
    this.done = true;
    // Its state is not needed any more: free it (its device copy, where it owns it) while others run.
    if (this.started) this.release?.(this.started);
    this.started = null;
    this.stopReason = reason;
    this.decodeEnd = performance.now();
    this.emit(new Uint8Array(0), true);
    this.opts.onDone?.(this.result());
  }

  result(): Generated {
    const decodeSeconds = (this.decodeEnd - this.decodeStart) / 1000;
    const n = this.ids.length;
    return {
      ids: this.ids,
      text: this.text,
      tokens: n,
      ttftMs: this.ttftMs,
      decodeTokensPerSecond: n > 1 && decodeSeconds > 0 ? (n - 1) / decodeSeconds : 0,
      stopReason: this.stopReason,
    };
  }

  private emit(bytes: Uint8Array, final = false): void {
    const delta = this.decoder.decode(bytes, { stream: !final });
    if (delta) {
      this.text += delta;
      this.opts.onText?.(delta);
    }
  }
}
