/**
 * The few calls the remote backend makes to an OpenAI-compatible server (vLLM, SGLang, klc serve):
 * list the models with their context length, and stream one chat completion. Plain fetch and SSE
 * parsing; failures become UserErrors that say which server answered what.
 */
import { UserError } from '../common/errors';

export interface RemoteEndpoint {
  /** Base URL up to and including /v1, e.g. http://gpu-box:8000/v1. */
  url: string;
  /** The model id the server serves (GET /v1/models). */
  model: string;
  apiKey?: string;
}

export interface RemoteModel {
  id: string;
  /** The server's context length, where it says (vLLM: max_model_len, SGLang: context_length). */
  contextLength?: number;
}

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

export interface StreamedChat {
  text: string;
  finishReason: string | null;
  completionTokens?: number;
  promptTokens?: number;
  cachedTokens?: number;
  ttftMs: number;
  cancelled: boolean;
}

/** The base URL with /v1 and without a trailing slash: users paste either form. */
export function apiBase(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new UserError(`the remote endpoint "${url}" is not a URL; give one like http://localhost:8000/v1`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new UserError(`the remote endpoint ${url} must be an http:// or https:// URL`);
  const base = parsed.href.replace(/\/+$/, '');
  return /\/v1$/.test(base) ? base : `${base}/v1`;
}

function headers(endpoint: RemoteEndpoint): Record<string, string> {
  return { 'Content-Type': 'application/json', ...(endpoint.apiKey ? { Authorization: `Bearer ${endpoint.apiKey}` } : {}) };
}

async function call(endpoint: RemoteEndpoint, path: string, init: RequestInit): Promise<Response> {
  const url = `${apiBase(endpoint.url)}${path}`;
  let res: Response;
  try {
    res = await fetch(url, { ...init, headers: headers(endpoint) });
  } catch (e) {
    if ((e as Error).name === 'AbortError') throw e;
    const cause = (e as { cause?: { code?: string; message?: string } }).cause;
    throw new UserError(`cannot reach the remote endpoint ${url}: ${cause?.code ?? cause?.message ?? (e as Error).message}. Is the server running?`);
  }
  if (!res.ok) {
    const body = await res.text().catch(() => '');
    let message = body.slice(0, 500);
    try {
      message = (JSON.parse(body) as { error?: { message?: string }; message?: string }).error?.message ?? message;
    } catch {
      // Not JSON: the raw text is the best description there is.
    }
    const hint = res.status === 401 || res.status === 403 ? ' Set the API key (Kimi Linear: Set Remote API Key, or klc --api-key-file).' : '';
    throw new UserError(`the remote endpoint ${url} answered ${res.status}: ${message}.${hint}`);
  }
  return res;
}

export async function remoteModel(endpoint: RemoteEndpoint, signal?: AbortSignal): Promise<RemoteModel> {
  const res = await call(endpoint, '/models', { method: 'GET', signal });
  const list = (await res.json()) as { data?: { id?: string; max_model_len?: number; context_length?: number; context_window?: number }[] };
  const models = list.data ?? [];
  const card = models.find((m) => m.id === endpoint.model);
  if (!card) {
    throw new UserError(`the remote endpoint ${apiBase(endpoint.url)} does not serve the model "${endpoint.model}"; it serves ${models.map((m) => m.id).join(', ') || 'none'}`);
  }
  const length = card.max_model_len ?? card.context_length ?? card.context_window;
  return { id: endpoint.model, ...(typeof length === 'number' && length > 0 ? { contextLength: length } : {}) };
}

/**
 * Streams one chat completion. `body` holds the sampling fields; a fired signal ends the request
 * and returns what arrived so far with `cancelled` set.
 */
export async function streamChat(
  endpoint: RemoteEndpoint,
  messages: ChatMessage[],
  body: Record<string, unknown>,
  onText: (delta: string) => void,
  signal?: AbortSignal,
): Promise<StreamedChat> {
  const started = performance.now();
  const out: StreamedChat = { text: '', finishReason: null, ttftMs: 0, cancelled: false };
  try {
    const res = await call(endpoint, '/chat/completions', {
      method: 'POST',
      signal,
      body: JSON.stringify({ model: endpoint.model, messages, stream: true, stream_options: { include_usage: true }, ...body }),
    });
    const decoder = new TextDecoder();
    let buffer = '';
    for await (const bytes of res.body as unknown as AsyncIterable<Uint8Array>) {
      buffer += decoder.decode(bytes, { stream: true });
      let end: number;
      while ((end = buffer.search(/\r?\n\r?\n/)) >= 0) {
        const event = buffer.slice(0, end);
        buffer = buffer.slice(end).replace(/^\r?\n\r?\n/, '');
        for (const line of event.split(/\r?\n/)) {
          if (!line.startsWith('data:')) continue;
          const data = line.slice(5).trim();
          if (data === '[DONE]') return out;
          readChunk(JSON.parse(data), out, started, onText, endpoint);
        }
      }
    }
    return out;
  } catch (e) {
    if (signal?.aborted) return { ...out, cancelled: true };
    throw e;
  }
}

interface Chunk {
  error?: { message?: string };
  choices?: { delta?: { content?: string | null }; finish_reason?: string | null }[];
  usage?: { prompt_tokens?: number; completion_tokens?: number; prompt_tokens_details?: { cached_tokens?: number } | null } | null;
}

function readChunk(chunk: Chunk, out: StreamedChat, started: number, onText: (delta: string) => void, endpoint: RemoteEndpoint): void {
  if (chunk.error) throw new UserError(`the remote endpoint ${apiBase(endpoint.url)} failed during the answer: ${chunk.error.message ?? JSON.stringify(chunk.error)}`);
  const choice = chunk.choices?.[0];
  const delta = choice?.delta?.content;
  if (delta) {
    if (!out.text) out.ttftMs = performance.now() - started;
    out.text += delta;
    onText(delta);
  }
  if (choice?.finish_reason) out.finishReason = choice.finish_reason;
  if (chunk.usage) {
    out.promptTokens = chunk.usage.prompt_tokens;
    out.completionTokens = chunk.usage.completion_tokens;
    out.cachedTokens = chunk.usage.prompt_tokens_details?.cached_tokens;
  }
}
