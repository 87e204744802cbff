/**
 * The `remote` backend: the workspace is packed here and every question goes to an
 * OpenAI-compatible server (vLLM, SGLang, klc serve) as [system: the packed repository, …history,
 * user: the question]. The system message is byte-identical across questions until the next
 * ingest, so the server's prefix cache computes the repository once; `cache_salt` (vLLM) keeps
 * each workspace's cached prefix to requests for that workspace. Ingest packs the workspace and
 * sends the repository once with a one-token answer, so that the server has it cached before the
 * first question.
 */
import { createHash } from 'node:crypto';
import { join, resolve } from 'node:path';
import type { AskRequest, AskResult, EngineStatus, IngestProgress, IngestResult, PackedFile, PackSettings } from '../engine/api';
import { questionText, repoClosing, repoPreamble, repoSystemContent } from '../engine/chat-template';
import { CancelledError } from '../engine/generate';
import type { RepoSession } from '../engine/repo-session';
import { DEFAULT_SAMPLING } from '../engine/sampler';
import { ASK_BATCH_LIMIT, questionReserve } from '../engine/session';
import { loadTokenizer } from '../engine/model/tokenizer';
import type { Tokenizer } from '../engine/model/tokenizer/types';
import { UserError } from '../common/errors';
import { mapPool } from '../workspace/pool';
import { packWorkspace } from '../workspace';
import { apiBase, type ChatMessage, type RemoteEndpoint, remoteModel, streamChat } from './openai-endpoint';

export interface RemoteSessionOptions {
  endpoint: RemoteEndpoint;
  /**
   * Folder whose tokenizer counts the packed tokens: the checkpoint's own where a copy is local,
   * else the bundled tokenizer (an estimate of the server's count).
   */
  tokenizerDir?: string;
  /** The workspace that ask() ingests when nothing was ingested yet. */
  workspace?: PackSettings;
  log?: (line: string) => void;
}

/** Used when the server does not say its context length. */
const UNKNOWN_CONTEXT = 131_072;

interface Packed {
  settings: PackSettings;
  system: string;
  tokens: number;
  files: number;
  packed: PackedFile[];
  salt: string;
  stale: boolean;
}

export class RemoteSession implements RepoSession {
  private repo: Packed | null = null;
  private ingesting = false;

  private constructor(
    private readonly opts: RemoteSessionOptions,
    private readonly tokenizer: Tokenizer,
    readonly contextLength: number,
    private readonly log: (line: string) => void,
  ) {}

  static async open(opts: RemoteSessionOptions): Promise<RemoteSession> {
    const log = opts.log ?? (() => {});
    const [tokenizer, model] = await Promise.all([loadTokenizer(opts.tokenizerDir), remoteModel(opts.endpoint)]);
    if (model.contextLength === undefined) log(`remote: ${apiBase(opts.endpoint.url)} does not report a context length for ${model.id}; assuming ${UNKNOWN_CONTEXT} tokens`);
    const contextLength = model.contextLength ?? UNKNOWN_CONTEXT;
    log(`remote model ${model.id} at ${apiBase(opts.endpoint.url)}, context ${contextLength} tokens`);
    return new RemoteSession(opts, tokenizer, contextLength, log);
  }

  status(): EngineStatus {
    const base = apiBase(this.opts.endpoint.url);
    return {
      model: { path: base, name: this.opts.endpoint.model, bundled: false, parameters: 0 },
      backend: 'remote',
      device: base,
      repo: {
        roots: this.repo?.settings.roots ?? this.opts.workspace?.roots ?? [],
        files: this.repo?.files ?? 0,
        tokens: this.repo?.tokens ?? 0,
        state: this.ingesting ? 'ingesting' : !this.repo ? 'none' : this.repo.stale ? 'stale' : 'ready',
      },
    };
  }

  manifest(): PackedFile[] {
    return this.repo ? this.repo.packed.map((f) => ({ ...f })) : [];
  }

  markStale(changedPaths: string[]): void {
    if (this.repo && changedPaths.length > 0) this.repo.stale = true;
  }

  async ingest(settings: PackSettings | undefined, onProgress: (p: IngestProgress) => void = () => {}, signal?: AbortSignal): Promise<IngestResult> {
    const ws = settings ?? this.opts.workspace;
    if (!ws || ws.roots.length === 0) throw new UserError('no workspace folder to ingest: open a folder, or pass one to klc');
    if (this.ingesting) throw new UserError('an ingest is already running; wait for it or cancel it');
    this.ingesting = true;
    try {
      return await this.runIngest(ws, onProgress, signal);
    } finally {
      this.ingesting = false;
    }
  }

  private async runIngest(ws: PackSettings, onProgress: (p: IngestProgress) => void, signal?: AbortSignal): Promise<IngestResult> {
    const started = performance.now();
    const framing = repoPreamble(this.tokenizer).length + repoClosing(this.tokenizer).length;
    const budget = this.contextLength - questionReserve(this.contextLength) - framing;
    if (budget <= 0) throw new UserError(`the remote model's context (${this.contextLength} tokens) leaves no room for a repository`);
    onProgress({ phase: 'pack', filesDone: 0, filesTotal: 0, tokensDone: 0, tokensTotal: 0, tokensPerSecond: 0 });
    const pack = await packWorkspace({
      roots: ws.roots,
      tokenizer: this.tokenizer,
      maxTokens: Math.min(ws.maxTokens ?? budget, budget),
      include: ws.include,
      exclude: ws.exclude,
      maxFileBytes: ws.maxFileBytes,
      signal,
      onProgress: (p) => onProgress({ phase: 'pack', filesDone: p.done, filesTotal: p.total, tokensDone: 0, tokensTotal: 0, tokensPerSecond: 0 }),
    });
    const system = repoSystemContent(pack.blocks.map((b) => b.text).join(''));
    const tokens = pack.ids.length + framing;
    const files = pack.manifest.files.length;
    const common = { files, omitted: pack.manifest.omitted.length, tokens, secretsRedacted: pack.stats.secretsRedacted };
    if (this.repo && !this.repo.stale && this.repo.system === system) {
      return { ...common, resumedTokens: tokens, upToDate: true, seconds: (performance.now() - started) / 1000, tokensPerSecond: 0 };
    }
    const roots = ws.roots.map((r) => resolve(r)).sort();
    const salt = createHash('sha256').update(roots.join('\0')).digest('hex').slice(0, 32);
    onProgress({ phase: 'prefill', filesDone: 0, filesTotal: files, tokensDone: 0, tokensTotal: tokens, tokensPerSecond: 0 });
    const prefillStart = performance.now();
    const warm = await streamChat(this.opts.endpoint, [{ role: 'system', content: system }, { role: 'user', content: 'Reply with OK.' }], { max_tokens: 1, temperature: 0, cache_salt: salt }, () => {}, signal);
    if (warm.cancelled) throw new CancelledError();
    const prefillSeconds = (performance.now() - prefillStart) / 1000;
    const preamble = repoPreamble(this.tokenizer).length;
    const packed = pack.manifest.files.map((f) => ({ path: join(f.root, f.file), sha256: f.sha256, start: preamble + f.start, end: preamble + f.end }));
    this.repo = { settings: ws, system, tokens, files, packed, salt, stale: false };
    onProgress({ phase: 'save', filesDone: files, filesTotal: files, tokensDone: tokens, tokensTotal: tokens, tokensPerSecond: 0 });
    this.log(`remote: sent the ${tokens}-token repository (${files} files) in ${prefillSeconds.toFixed(2)} s; the server counted ${warm.promptTokens ?? '?'} prompt tokens`);
    return { ...common, resumedTokens: 0, upToDate: false, seconds: (performance.now() - started) / 1000, tokensPerSecond: prefillSeconds > 0 ? tokens / prefillSeconds : 0 };
  }

  async ask(req: AskRequest, onText: (delta: string) => void = () => {}, signal?: AbortSignal): Promise<AskResult> {
    const started = performance.now();
    if (!this.repo) await this.ingest(undefined, () => {}, signal);
    const repo = this.repo!;
    const sampling = { ...DEFAULT_SAMPLING, ...req.sampling };
    const messages: ChatMessage[] = [
      { role: 'system', content: repo.system },
      ...(req.history ?? []).map((t) => ({ role: t.role, content: t.content })),
      { role: 'user', content: questionText(req.question, req.selection) },
    ];
    const body: Record<string, unknown> = {
      max_tokens: sampling.maxNewTokens,
      temperature: sampling.temperature,
      top_p: sampling.topP,
      cache_salt: repo.salt,
      ...(sampling.topK > 0 ? { top_k: sampling.topK } : {}),
      ...(sampling.seed !== undefined ? { seed: sampling.seed } : {}),
    };
    const r = await streamChat(this.opts.endpoint, messages, body, onText, signal);
    if (r.cachedTokens !== undefined) this.log(`remote: ${r.cachedTokens} of ${r.promptTokens ?? '?'} prompt tokens came from the server's prefix cache`);
    const tokens = r.completionTokens ?? this.tokenizer.encodeOrdinary(r.text).length;
    const total = performance.now() - started;
    const decodeSeconds = (total - r.ttftMs) / 1000;
    return {
      text: r.text,
      tokens,
      ttftMs: r.ttftMs,
      decodeTokensPerSecond: decodeSeconds > 0 && tokens > 1 ? (tokens - 1) / decodeSeconds : 0,
      stopReason: r.cancelled ? 'cancelled' : r.finishReason === 'length' ? 'max_tokens' : 'eos',
    };
  }

  /** The server batches concurrent requests itself; up to ASK_BATCH_LIMIT are in flight at once. */
  async askBatch(
    requests: readonly AskRequest[],
    onText: (index: number, delta: string) => void = () => {},
    signal?: AbortSignal,
    onAnswer: (index: number, result: AskResult) => void = () => {},
  ): Promise<AskResult[]> {
    if (requests.length === 0) return [];
    if (!this.repo) await this.ingest(undefined, () => {}, signal);
    return mapPool([...requests.keys()], ASK_BATCH_LIMIT, async (i) => {
      const result = await this.ask(requests[i], (delta) => onText(i, delta), signal);
      onAnswer(i, result);
      return result;
    });
  }

  async dispose(): Promise<void> {
    this.repo = null;
  }
}

