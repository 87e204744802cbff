/**
 * One workspace behind `klc serve`: its model id, its session (whose ingested repository state
 * every request continues from), and the two ways a request uses it — a chat turn after the
 * repository (session.ask) or a raw continuation of a prompt after it (/v1/completions).
 */
import { basename } from 'node:path';
import type { AskRequest, AskResult, SamplingOptions } from '../engine/api';
import { askFromChat } from '../common/chat-to-ask';
import { questionTokens, repoClosing, repoPreamble, repoSystemContent, stopIds } from '../engine/chat-template';
import { generate } from '../engine/generate';
import type { EngineSession } from '../engine/session';
import { UserError } from '../common/errors';
import type { ChatMessage } from './openai-request';

export const MODEL_ID_PREFIX = 'kimi-linear@';

export function modelIdFor(root: string): string {
  return `${MODEL_ID_PREFIX}${basename(root)}`;
}

export interface Generation {
  result: AskResult;
  /** Tokens of the whole prompt, repository included. */
  promptTokens: number;
  /** Tokens of the prompt served from the cached repository state. */
  cachedTokens: number;
}

export class ServedWorkspace {
  private systemContent: { ids: Int32Array; text: string } | null = null;

  constructor(
    readonly id: string,
    readonly session: EngineSession,
  ) {}

  get repoTokens(): number {
    return this.session.repoIds()?.length ?? 0;
  }

  /**
   * The repository's system message as a remote client sends it (the system prompt and the packed
   * text), decoded once per ingested state, so that a request that carries it is recognised.
   */
  private repoSystemText(): string | null {
    const ids = this.session.repoIds();
    if (!ids) return null;
    if (this.systemContent?.ids !== ids) {
      const tok = this.session.tokenizer;
      const packed = tok.decode(ids.subarray(repoPreamble(tok).length, ids.length - repoClosing(tok).length));
      this.systemContent = { ids, text: repoSystemContent(packed) };
    }
    return this.systemContent.text;
  }

  /** The ask request of a chat; a first system message equal to the packed repository is the cached state itself. */
  askRequestOf(messages: readonly ChatMessage[], sampling: SamplingOptions): AskRequest {
    const carriesRepo = messages[0]?.role === 'system' && messages[0].content === this.repoSystemText();
    return { ...askFromChat(carriesRepo ? messages.slice(1) : messages), sampling };
  }

  async chat(request: AskRequest, onText: (delta: string) => void, signal: AbortSignal): Promise<Generation> {
    const promptTokens = this.repoTokens + questionTokens(this.session.tokenizer, request.question, request.history).length;
    const result = await this.session.ask(request, onText, signal);
    return { result, promptTokens, cachedTokens: this.repoTokens };
  }

  /**
   * Several chat turns answered in one decode batch; `onAnswer` gets each as it ends. Each job's
   * signal cancels that answer alone.
   */
  async chatBatch(
    jobs: readonly { request: AskRequest; onText: (delta: string) => void; signal: AbortSignal }[],
    onAnswer: (index: number, g: Generation) => void,
  ): Promise<void> {
    const repoTokens = this.repoTokens;
    const promptTokens = jobs.map((j) => repoTokens + questionTokens(this.session.tokenizer, j.request.question, j.request.history).length);
    await this.session.askBatch(
      jobs.map((j) => j.request),
      (i, delta) => jobs[i].onText(delta),
      jobs.map((j) => j.signal),
      (i, result) => onAnswer(i, { result, promptTokens: promptTokens[i], cachedTokens: repoTokens }),
    );
  }

  /** Continues `prompt` as raw text after the repository's system turn (no chat turn around it). */
  async complete(prompt: string, sampling: SamplingOptions, onText: (delta: string) => void, signal: AbortSignal): Promise<Generation> {
    const { session } = this;
    const ids = session.tokenizer.encodeOrdinary(prompt);
    const repoTokens = this.repoTokens;
    if (repoTokens + ids.length + sampling.maxNewTokens > session.maxContext) {
      throw new UserError(
        `the prompt (${ids.length} tokens) and max_tokens (${sampling.maxNewTokens}) do not fit after the ${repoTokens}-token repository in the model's ${session.maxContext}-token context`,
      );
    }
    const fork = session.forkRepoState();
    if (!fork) throw new UserError(`${this.id} has no ingested repository yet`);
    try {
      const result = await generate(session.model, session.tokenizer, fork.state, ids, { sampling, stopIds: stopIds(session.tokenizer), onText, signal });
      return { result, promptTokens: repoTokens + ids.length, cachedTokens: repoTokens };
    } finally {
      session.model.releaseState(fork.state);
    }
  }
}
