/**
 * Validation of OpenAI request bodies (chat completions and completions) into the few fields the
 * engine uses. Fields the engine has no use for (tools, user, metadata, …) are ignored as OpenAI
 * ignores unknown ones; fields whose meaning it cannot honour (n > 1, logprobs, echo, suffix)
 * are refused, so a client never gets an answer that silently differs from what it asked for.
 */
import type { SamplingOptions } from '../engine/api';
import { DEFAULT_SAMPLING } from '../engine/sampler';
import { badField } from './api-error';

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

export interface ParsedRequest {
  model: string;
  stream: boolean;
  /** stream_options.include_usage: a last chunk with the usage and no choices. */
  includeUsage: boolean;
  sampling: SamplingOptions;
  /** Texts that end the answer where they first appear (not included in it). */
  stop: string[];
}

export interface ParsedChat extends ParsedRequest {
  messages: ChatMessage[];
}

export interface ParsedCompletion extends ParsedRequest {
  prompt: string;
}

/** OpenAI's own limit on the number of stop sequences. */
const MAX_STOPS = 4;

function objectBody(body: unknown): Record<string, unknown> {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw badField('body', 'the request body must be a JSON object');
  return body as Record<string, unknown>;
}

function optionalNumber(b: Record<string, unknown>, name: string, min: number, max: number, integer = false): number | undefined {
  const v = b[name];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max || (integer && !Number.isInteger(v))) {
    throw badField(name, `${name} must be ${integer ? 'an integer' : 'a number'} in [${min}, ${max}], got ${JSON.stringify(v)}`);
  }
  return v;
}

function refuse(b: Record<string, unknown>, name: string, allowed: (v: unknown) => boolean, why: string): void {
  const v = b[name];
  if (v !== undefined && v !== null && !allowed(v)) throw badField(name, `${name}=${JSON.stringify(v)} is not supported: ${why}`);
}

function common(b: Record<string, unknown>, maxCompletionTokens: number): ParsedRequest {
  if (typeof b.model !== 'string' || !b.model) throw badField('model', 'model must be the id of a served model (GET /v1/models lists them)');
  if (b.stream !== undefined && b.stream !== null && typeof b.stream !== 'boolean') throw badField('stream', 'stream must be true or false');
  refuse(b, 'n', (v) => v === 1, 'this server returns one choice per request');
  refuse(b, 'logprobs', (v) => v === false, 'this server does not return log probabilities');
  refuse(b, 'best_of', (v) => v === 1, 'this server returns one choice per request');
  const streamOptions = b.stream_options;
  if (streamOptions !== undefined && streamOptions !== null && (typeof streamOptions !== 'object' || Array.isArray(streamOptions))) {
    throw badField('stream_options', 'stream_options must be an object');
  }
  const maxTokens = optionalNumber(b, 'max_completion_tokens', 1, maxCompletionTokens, true) ?? optionalNumber(b, 'max_tokens', 1, maxCompletionTokens, true);
  const sampling: SamplingOptions = {
    ...DEFAULT_SAMPLING,
    maxNewTokens: maxTokens ?? Math.min(DEFAULT_SAMPLING.maxNewTokens, maxCompletionTokens),
  };
  const temperature = optionalNumber(b, 'temperature', 0, 2);
  if (temperature !== undefined) sampling.temperature = temperature;
  const topP = optionalNumber(b, 'top_p', 0, 1);
  if (topP !== undefined) sampling.topP = topP;
  const topK = optionalNumber(b, 'top_k', -1, 1_000_000, true);
  if (topK !== undefined) sampling.topK = Math.max(0, topK);
  const seed = optionalNumber(b, 'seed', -(2 ** 53), 2 ** 53, true);
  if (seed !== undefined) sampling.seed = seed >>> 0;
  return {
    model: b.model,
    stream: b.stream === true,
    includeUsage: b.stream === true && (streamOptions as { include_usage?: unknown } | undefined)?.include_usage === true,
    sampling,
    stop: stopTexts(b.stop),
  };
}

function stopTexts(v: unknown): string[] {
  if (v === undefined || v === null) return [];
  const list = typeof v === 'string' ? [v] : v;
  if (!Array.isArray(list) || list.length > MAX_STOPS || list.some((s) => typeof s !== 'string' || s === '')) {
    throw badField('stop', `stop must be a non-empty string or an array of at most ${MAX_STOPS} non-empty strings`);
  }
  return list as string[];
}

/** The text of a message's content: a string, or an array of text parts (other parts are refused). */
function contentText(content: unknown, index: number): string {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) {
    return content
      .map((part: unknown) => {
        const p = part as { type?: unknown; text?: unknown } | null;
        if (p?.type !== 'text' || typeof p.text !== 'string') {
          throw badField(`messages[${index}].content`, `messages[${index}] has a content part of type ${JSON.stringify(p?.type)}; this model reads text parts only`);
        }
        return p.text;
      })
      .join('');
  }
  throw badField(`messages[${index}].content`, `messages[${index}].content must be a string or an array of text parts`);
}

export function parseChatRequest(body: unknown, maxCompletionTokens: number): ParsedChat {
  const b = objectBody(body);
  const parsed = common(b, maxCompletionTokens);
  if (!Array.isArray(b.messages) || b.messages.length === 0) throw badField('messages', 'messages must be a non-empty array');
  const messages = b.messages.map((m: unknown, i): ChatMessage => {
    const msg = m as { role?: unknown; content?: unknown } | null;
    const role = msg?.role === 'developer' ? 'system' : msg?.role;
    if (role !== 'system' && role !== 'user' && role !== 'assistant') {
      throw badField(`messages[${i}].role`, `messages[${i}].role must be system, developer, user or assistant, got ${JSON.stringify(msg?.role)} (tool calls are not supported)`);
    }
    return { role, content: contentText(msg!.content, i) };
  });
  if (messages[messages.length - 1].role !== 'user') throw badField('messages', 'the last message must be the user\'s: the model answers it');
  return { ...parsed, messages };
}

export function parseCompletionRequest(body: unknown, maxCompletionTokens: number): ParsedCompletion {
  const b = objectBody(body);
  const parsed = common(b, maxCompletionTokens);
  refuse(b, 'echo', (v) => v === false, 'the prompt is not repeated in the answer');
  refuse(b, 'suffix', () => false, 'fill-in-the-middle is not supported');
  const prompt = Array.isArray(b.prompt) && b.prompt.length === 1 ? b.prompt[0] : b.prompt;
  if (typeof prompt !== 'string' || prompt === '') throw badField('prompt', 'prompt must be a non-empty string (one prompt per request)');
  return { ...parsed, prompt };
}
