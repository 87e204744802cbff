/**
 * The OpenAI-compatible HTTP API of `klc serve` on Node's http module: /v1/models,
 * /v1/chat/completions and /v1/completions (JSON or SSE streams ending in `data: [DONE]`) and
 * /health. Every request with a body is bounded (size, max_tokens, requests at once), every
 * failure is a JSON error with its status, and a client that goes away cancels its generation.
 * One loaded model serves every workspace; GenerationQueue decides which requests use it when.
 */
import { createHash, randomUUID, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { isUserError } from '../common/errors';
import { ApiError } from './api-error';
import { GenerationQueue } from './generation-queue';
import { parseChatRequest, parseCompletionRequest, type ParsedRequest } from './openai-request';
import { readJsonBody } from './request-body';
import type { Generation, ServedWorkspace } from './served-workspace';
import { StopMatcher } from './stop-matcher';

export interface ServeLimits {
  /** Largest request body accepted (a remote client sends the packed repository in it). */
  maxBodyBytes: number;
  /** Generation requests accepted at once, running or waiting; more get 429. */
  maxConcurrent: number;
  /** Largest max_tokens a request may ask for. */
  maxCompletionTokens: number;
}

export const DEFAULT_LIMITS: ServeLimits = { maxBodyBytes: 64 * 1024 * 1024, maxConcurrent: 16, maxCompletionTokens: 8192 };

export interface ApiServerOptions {
  workspaces: readonly ServedWorkspace[];
  /** Context length reported per model (vLLM's max_model_len), which remote clients budget by. */
  maxContext: number;
  /** Required as `Authorization: Bearer <key>` on /v1 when set. */
  apiKey?: string;
  limits: ServeLimits;
  log: (line: string) => void;
}

export interface ApiServer {
  server: Server;
  /** Cancels every running generation and closes the server. */
  close(): Promise<void>;
}

type Kind = 'chat' | 'completion';

const LOOPBACK_HOSTS = new Set(['localhost', '127.0.0.1', '::1', '[::1]']);

export function createApiServer(options: ApiServerOptions): ApiServer {
  const { log, limits } = options;
  const byId = new Map(options.workspaces.map((w) => [w.id, w]));
  const created = Math.floor(Date.now() / 1000);
  const running = new Set<AbortController>();
  let accepted = 0;
  const queue = new GenerationQueue(log);
  const keyDigest = options.apiKey !== undefined ? digest(options.apiKey) : undefined;

  function authorize(req: IncomingMessage): void {
    if (keyDigest === undefined) {
      // Without a key the server is loopback-only; a Host that is not loopback means a page
      // reached it through DNS rebinding, which must not read the repository's answers.
      const host = (req.headers.host ?? '').replace(/:\d+$/, '').toLowerCase();
      if (!LOOPBACK_HOSTS.has(host)) throw new ApiError(403, `requests must address the server as localhost, not ${JSON.stringify(host)}`, 'permission_error', 'forbidden_host');
      return;
    }
    const match = /^Bearer\s+(.+)$/i.exec(req.headers.authorization ?? '');
    if (!match || !timingSafeEqual(digest(match[1].trim()), keyDigest)) {
      throw new ApiError(401, 'missing or wrong API key: send it as "Authorization: Bearer <key>"', 'authentication_error', 'invalid_api_key');
    }
  }

  function models() {
    return {
      object: 'list',
      data: options.workspaces.map((w) => modelCard(w)),
    };
  }

  function modelCard(w: ServedWorkspace) {
    return { id: w.id, object: 'model', created, owned_by: 'kimi-linear-code', max_model_len: options.maxContext, repository_tokens: w.repoTokens };
  }

  function workspaceFor(id: string): ServedWorkspace {
    const w = byId.get(id);
    if (!w) throw new ApiError(404, `the model '${id}' does not exist; this server serves ${[...byId.keys()].join(', ')}`, 'invalid_request_error', 'model_not_found', 'model');
    return w;
  }

  async function generation(req: IncomingMessage, res: ServerResponse, kind: Kind): Promise<void> {
    if (!/^application\/json\b/i.test(req.headers['content-type'] ?? '')) {
      throw new ApiError(415, 'send the request body as JSON with "Content-Type: application/json"', 'invalid_request_error', 'unsupported_media_type');
    }
    if (accepted >= limits.maxConcurrent) {
      res.setHeader('Retry-After', '1');
      throw new ApiError(429, `the server is busy with ${accepted} requests (klc serve --max-concurrent ${limits.maxConcurrent}); retry shortly`, 'rate_limit_error', 'too_many_requests');
    }
    accepted++;
    const controller = new AbortController();
    running.add(controller);
    const onClose = () => {
      if (!res.writableFinished) controller.abort();
    };
    res.on('close', onClose);
    try {
      const body = await readJsonBody(req, limits.maxBodyBytes);
      const parsed = kind === 'chat' ? parseChatRequest(body, limits.maxCompletionTokens) : parseCompletionRequest(body, limits.maxCompletionTokens);
      const workspace = workspaceFor(parsed.model);
      const askRequest = 'messages' in parsed ? workspace.askRequestOf(parsed.messages, parsed.sampling) : undefined;
      const out = new ResponseWriter(res, kind, parsed);
      const stops = new StopMatcher(parsed.stop);
      const onText = (delta: string) => {
        const text = stops.push(delta);
        if (text) out.text(text);
        if (stops.stopped) controller.abort();
      };
      const g = askRequest
        ? await queue.chat(workspace, askRequest, onText, controller.signal)
        : await queue.alone(() => workspace.complete((parsed as { prompt: string }).prompt, parsed.sampling, onText, controller.signal), controller.signal);
      if (!g || (g.result.stopReason === 'cancelled' && !stops.stopped)) {
        log(`${kind} for ${parsed.model}: cancelled (the client went away)`);
        return;
      }
      const tail = stops.flush();
      if (tail) out.text(tail);
      out.end(g, stops.stopped || g.result.stopReason === 'eos' ? 'stop' : 'length');
      log(`${kind} for ${parsed.model}: ${g.result.tokens} tokens, first after ${g.result.ttftMs.toFixed(0)} ms, ${g.cachedTokens}/${g.promptTokens} prompt tokens cached`);
    } finally {
      accepted--;
      running.delete(controller);
      res.off('close', onClose);
    }
  }

  async function route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = new URL(req.url ?? '/', 'http://localhost').pathname.replace(/\/+$/, '') || '/';
    const method = req.method ?? 'GET';
    const only = (allowed: string) => {
      if (method !== allowed) {
        res.setHeader('Allow', allowed);
        throw new ApiError(405, `${path} takes ${allowed} requests, not ${method}`, 'invalid_request_error', 'method_not_allowed');
      }
    };
    if (path === '/health') {
      only('GET');
      return sendJson(res, 200, { status: 'ok' });
    }
    if (!path.startsWith('/v1/')) throw new ApiError(404, `no such endpoint: ${path}; this server serves /v1/models, /v1/chat/completions, /v1/completions and /health`, 'invalid_request_error', 'not_found');
    authorize(req);
    if (path === '/v1/models') {
      only('GET');
      return sendJson(res, 200, models());
    }
    if (path.startsWith('/v1/models/')) {
      only('GET');
      return sendJson(res, 200, modelCard(workspaceFor(decodeURIComponent(path.slice('/v1/models/'.length)))));
    }
    if (path === '/v1/chat/completions') {
      only('POST');
      return generation(req, res, 'chat');
    }
    if (path === '/v1/completions') {
      only('POST');
      return generation(req, res, 'completion');
    }
    throw new ApiError(404, `no such endpoint: ${path}; this server serves /v1/models, /v1/chat/completions, /v1/completions and /health`, 'invalid_request_error', 'not_found');
  }

  const server = createServer((req, res) => {
    route(req, res).catch((e: unknown) => {
      // A client that went away while sending its body has nobody left to answer.
      if (res.destroyed) return;
      const err = toApiError(e, log);
      if (res.headersSent) {
        // A stream already under way can only report the error in the stream.
        if (!res.writableEnded) res.end(`data: ${JSON.stringify(err.body())}\n\n`);
        return;
      }
      // The rest of a refused body is not read; the connection closes so it is not parsed as a request.
      if (!req.complete) res.setHeader('Connection', 'close');
      sendJson(res, err.status, err.body());
    });
  });

  return {
    server,
    close: () =>
      new Promise<void>((resolve) => {
        for (const c of running) c.abort();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

function toApiError(e: unknown, log: (line: string) => void): ApiError {
  if (e instanceof ApiError) return e;
  if (isUserError(e)) return new ApiError(400, e.message, 'invalid_request_error', /do not fit/.test(e.message) ? 'context_length_exceeded' : null);
  const err = e instanceof Error ? e : new Error(String(e));
  log(`internal error: ${err.stack ?? err.message}`);
  return new ApiError(500, `internal error: ${err.message}`, 'server_error', 'internal_error');
}

function digest(key: string): Buffer {
  return createHash('sha256').update(key).digest();
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

/**
 * Writes one answer as OpenAI does: a whole JSON object at the end, or an SSE stream whose
 * headers go out with the first text (so an error before it is still a plain JSON error).
 */
class ResponseWriter {
  private readonly id: string;
  private readonly created = Math.floor(Date.now() / 1000);
  private text_ = '';
  private started = false;

  constructor(
    private readonly res: ServerResponse,
    private readonly kind: Kind,
    private readonly request: ParsedRequest,
  ) {
    this.id = `${kind === 'chat' ? 'chatcmpl' : 'cmpl'}-${randomUUID()}`;
  }

  text(delta: string): void {
    if (!this.request.stream) {
      this.text_ += delta;
      return;
    }
    this.start();
    this.event(this.chunk(this.kind === 'chat' ? { content: delta } : delta, null));
  }

  end(g: Generation, finishReason: 'stop' | 'length'): void {
    const usage = {
      prompt_tokens: g.promptTokens,
      completion_tokens: g.result.tokens,
      total_tokens: g.promptTokens + g.result.tokens,
      prompt_tokens_details: { cached_tokens: g.cachedTokens },
    };
    if (!this.request.stream) {
      const choice = this.kind === 'chat'
        ? { index: 0, message: { role: 'assistant', content: this.text_ }, logprobs: null, finish_reason: finishReason }
        : { index: 0, text: this.text_, logprobs: null, finish_reason: finishReason };
      sendJson(this.res, 200, { id: this.id, object: this.kind === 'chat' ? 'chat.completion' : 'text_completion', created: this.created, model: this.request.model, choices: [choice], usage });
      return;
    }
    this.start();
    this.event({ ...this.chunk(this.kind === 'chat' ? {} : '', finishReason), ...(this.request.includeUsage ? {} : { usage }) });
    if (this.request.includeUsage) this.event({ ...this.chunk(null, null), choices: [], usage });
    this.res.end('data: [DONE]\n\n');
  }

  private start(): void {
    if (this.started) return;
    this.started = true;
    this.res.writeHead(200, { 'Content-Type': 'text/event-stream; charset=utf-8', 'Cache-Control': 'no-cache', Connection: 'keep-alive', 'X-Accel-Buffering': 'no' });
    this.res.flushHeaders();
    if (this.kind === 'chat') this.event(this.chunk({ role: 'assistant', content: '' }, null));
  }

  private chunk(delta: Record<string, string> | string | null, finishReason: 'stop' | 'length' | null) {
    const object = this.kind === 'chat' ? 'chat.completion.chunk' : 'text_completion';
    const choice = this.kind === 'chat'
      ? { index: 0, delta, logprobs: null, finish_reason: finishReason }
      : { index: 0, text: delta, logprobs: null, finish_reason: finishReason };
    return { id: this.id, object, created: this.created, model: this.request.model, choices: [choice] };
  }

  private event(data: unknown): void {
    this.res.write(`data: ${JSON.stringify(data)}\n\n`);
  }
}
