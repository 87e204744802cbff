/**
 * The extension's (and any other host's) handle on the engine: starts the engine process on the
 * first request, restarts it after a crash (with RestartBackoff), and offers the EngineSession's
 * methods over JSON-RPC. Free of `vscode` so that it is tested in plain Node against the real
 * engine process.
 */
import { Emitter, type Event } from 'vscode-jsonrpc';
import type { AskRequest, AskResult, EngineStatus, IngestProgress, IngestResult, PackedFile, PackSettings } from '../engine/api';
import {
  askBatchRequest, askBatchText, askIngested, askRequest, askText, ingestProgress, ingestRequest, manifestRequest, markStaleRequest, openRequest, type OpenParams, statusRequest,
} from '../common/engine-protocol';
import { UserError } from '../common/errors';
import { type BackoffPolicy, defaultBackoff, RestartBackoff } from './backoff';
import { describeExit, EngineCrashedError, isCancelled, userMessageOf } from './engine-errors';
import { EngineProcess } from './engine-process';

export type LogLevel = 'info' | 'warn' | 'error';

export interface EngineClientOptions {
  /** The engine process bundle, dist/engine-host.js. */
  enginePath: string;
  /** Node (or Electron run as Node) that runs the bundle; defaults to this process's own. */
  execPath?: string;
  /** Read at every start, so that changed settings apply after a restart. */
  openParams: () => OpenParams | Promise<OpenParams>;
  /**
   * The workspace an ask ingests first when the engine has no repository state yet. It may throw
   * (a UserError) to refuse the ask, e.g. in an untrusted workspace.
   */
  workspace?: () => PackSettings | undefined;
  log: (line: string, level: LogLevel) => void;
  backoff?: BackoffPolicy;
}

/** The stream tokens and workspace an ask request carries besides its questions. */
interface AskTokens {
  textToken: string;
  workspace: PackSettings | undefined;
  progressToken: string;
  ingestedToken: string;
}

export type EngineProcessState = 'stopped' | 'starting' | 'running' | 'crashed';

export interface EngineClientStatus {
  process: EngineProcessState;
  /** The engine's last reported status; kept after a crash so that surfaces can still show it. */
  engine: EngineStatus | null;
  /** Progress of the ingest in flight, if any. */
  ingest: IngestProgress | null;
  /** The last failure to show, e.g. the crash message. */
  error: string | null;
}

export class EngineClient {
  private readonly statusEmitter = new Emitter<EngineClientStatus>();
  readonly onDidChangeStatus: Event<EngineClientStatus> = this.statusEmitter.event;
  private readonly backoff: RestartBackoff;
  private starting: Promise<EngineProcess> | undefined;
  private proc: EngineProcess | undefined;
  private streamIds = 0;
  /** Bumped by restart(), so that a start already under way does not install an outdated process. */
  private generation = 0;
  private disposed = false;
  private disposing: Promise<void> | undefined;
  private current: EngineClientStatus = { process: 'stopped', engine: null, ingest: null, error: null };
  /** One per ingest in flight: ingest requests, and asks while they ingest the workspace first. */
  private readonly ingests = new Set<AbortController>();

  constructor(private readonly options: EngineClientOptions) {
    this.backoff = new RestartBackoff(options.backoff ?? defaultBackoff);
  }

  get lastStatus(): EngineClientStatus {
    return this.current;
  }

  /** The engine process id while one runs. */
  get pid(): number | undefined {
    return this.proc?.running ? this.proc.pid : undefined;
  }

  async status(): Promise<EngineStatus> {
    const proc = await this.process();
    return this.noteEngine(await proc.request(statusRequest));
  }

  async ingest(settings: PackSettings, onProgress: (p: IngestProgress) => void, signal?: AbortSignal): Promise<IngestResult> {
    const own = new AbortController();
    this.ingests.add(own);
    try {
      const proc = await this.process();
      const progressToken = `ingest-${++this.streamIds}`;
      const subscription = proc.onProgress(ingestProgress, progressToken, (p) => {
        this.update({ ingest: p });
        onProgress(p);
      });
      this.update({ engine: this.current.engine && withRepoState(this.current.engine, 'ingesting') });
      try {
        return await proc.request(ingestRequest, { settings, progressToken }, either(signal, own.signal));
      } finally {
        subscription.dispose();
        this.update({ ingest: null });
        await this.refresh();
      }
    } finally {
      this.ingests.delete(own);
    }
  }

  ask(request: AskRequest, onText: (delta: string) => void, signal?: AbortSignal): Promise<AskResult> {
    return this.askThrough(signal, (proc, tokens, ask, ingestCancelled) => {
      const text = proc.onProgress(askText, tokens.textToken, (d) => { if (!ingestCancelled.aborted) onText(d); });
      return proc.request(askRequest, { request, ...tokens }, ask).finally(() => text.dispose());
    });
  }

  /**
   * Answers several questions together (the engine decodes up to 8 at once); `onText` receives
   * each answer's text with its request's index, `onAnswer` each answer as soon as it ends.
   * Ingests first as ask() does.
   */
  askBatch(
    requests: AskRequest[],
    onText: (index: number, delta: string) => void,
    signal?: AbortSignal,
    onAnswer: (index: number, result: AskResult) => void = () => {},
  ): Promise<AskResult[]> {
    return this.askThrough(signal, (proc, tokens, ask, ingestCancelled) => {
      const text = proc.onProgress(askBatchText, tokens.textToken, (d) => {
        if (ingestCancelled.aborted) return;
        if (d.delta) onText(d.index, d.delta);
        if (d.result) onAnswer(d.index, d.result);
      });
      return proc.request(askBatchRequest, { requests, ...tokens }, ask).finally(() => text.dispose());
    });
  }

  /**
   * An ask request with its implicit ingest: the ingest's progress goes to the status, and Cancel
   * Ingest stops the request only while it ingests; then the questions go unanswered.
   */
  private async askThrough<R>(
    signal: AbortSignal | undefined,
    send: (proc: EngineProcess, tokens: AskTokens, ask: AbortSignal, ingestCancelled: AbortSignal) => Promise<R>,
  ): Promise<R> {
    const workspace = this.options.workspace?.();
    const proc = await this.process();
    const id = ++this.streamIds;
    const tokens: AskTokens = { textToken: `ask-${id}`, workspace, progressToken: `ask-ingest-${id}`, ingestedToken: `ask-ingested-${id}` };
    const ingestAbort = new AbortController();
    const ingestEnded = () => {
      this.ingests.delete(ingestAbort);
      if (this.current.ingest) this.update({ ingest: null });
    };
    const subscriptions = [
      proc.onProgress(ingestProgress, tokens.progressToken, (p) => {
        this.ingests.add(ingestAbort);
        this.update({ ingest: p });
      }),
      proc.onProgress(askIngested, tokens.ingestedToken, () => {
        ingestEnded();
        void this.refresh();
      }),
    ];
    const ingestCancelled = () => new UserError('The ingest was cancelled, so the question was not answered. Ask again to read the workspace first, or run Ingest Workspace.');
    try {
      const result = await send(proc, tokens, either(signal, ingestAbort.signal), ingestAbort.signal);
      // Cancel Ingest can reach the engine after its ingest ended, while the answer runs or even
      // after it ended: the user, who cancelled the ingest, gets neither text nor answer.
      if (ingestAbort.signal.aborted && !signal?.aborted) throw ingestCancelled();
      return result;
    } catch (e) {
      if (isCancelled(e) && ingestAbort.signal.aborted && !signal?.aborted) throw ingestCancelled();
      throw e;
    } finally {
      for (const s of subscriptions) s.dispose();
      ingestEnded();
      await this.refresh();
    }
  }

  /**
   * Cancels every ingest in flight: ingest requests and asks that are still ingesting the
   * workspace before their question. Returns whether there was one.
   */
  cancelIngest(): boolean {
    const any = this.ingests.size > 0;
    for (const abort of this.ingests) abort.abort();
    return any;
  }

  /**
   * Tells a running engine that files changed. Without a running engine there is nothing to mark:
   * the next ingest compares the workspace with the saved state anyway.
   */
  async markStale(paths: string[]): Promise<void> {
    const proc = this.proc;
    if (!proc?.running || paths.length === 0) return;
    this.noteEngine(await proc.request(markStaleRequest, { paths }));
  }

  /** The files of the context the engine ingested, with their content hashes; empty when no engine runs. */
  async manifest(): Promise<PackedFile[]> {
    const proc = this.proc;
    if (!proc?.running) return [];
    return proc.request(manifestRequest);
  }

  /** Stops the engine; the next request starts a fresh one with the current settings. */
  async restart(): Promise<void> {
    const proc = this.proc;
    this.proc = undefined;
    this.starting = undefined;
    this.generation++;
    if (proc) {
      await proc.stop();
      this.options.log('engine process stopped for a restart', 'info');
    }
    this.update({ process: 'stopped', ingest: null, error: null });
  }

  /** Stops the engine process; safe to call more than once. */
  dispose(): Promise<void> {
    this.disposing ??= (async () => {
      this.disposed = true;
      const proc = this.proc;
      this.proc = undefined;
      if (proc) await proc.stop();
      this.statusEmitter.dispose();
    })();
    return this.disposing;
  }

  private process(): Promise<EngineProcess> {
    if (this.disposed) return Promise.reject(new Error('EngineClient is disposed'));
    if (this.proc?.running) return Promise.resolve(this.proc);
    this.starting ??= this.start().finally(() => {
      this.starting = undefined;
    });
    return this.starting;
  }

  private async start(): Promise<EngineProcess> {
    const generation = this.generation;
    const delay = this.backoff.delayBeforeStart();
    if (delay > 0) {
      this.options.log(`engine crashed ${this.backoff.crashesInARow} times in a row; waiting ${delay} ms before starting it again`, 'warn');
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
    const params = await this.options.openParams();
    this.update({ process: 'starting', error: null });
    const proc = new EngineProcess({
      enginePath: this.options.enginePath,
      execPath: this.options.execPath ?? process.execPath,
      onStderrLine: (line) => this.options.log(line, 'info'),
    });
    this.options.log(`engine process started (pid ${proc.pid ?? 'none'})`, 'info');
    void proc.exited.then((exit) => this.onExit(proc, exit));
    try {
      const engine = await proc.request(openRequest, params);
      if (this.disposed || generation !== this.generation) {
        await proc.stop();
        throw new UserError('The engine was restarted while it started. Run the request again.');
      }
      this.proc = proc;
      this.update({ process: 'running', engine });
      return proc;
    } catch (e) {
      if (proc.running) await proc.stop();
      this.update({ process: 'stopped', error: userMessageOf(e) });
      throw e;
    }
  }

  private onExit(proc: EngineProcess, exit: { code: number | null; signal: NodeJS.Signals | null }): void {
    if (this.proc === proc) this.proc = undefined;
    if (proc.stopRequested) return;
    this.backoff.recordCrash(Date.now() - proc.startedAt);
    const message = new EngineCrashedError(exit).message;
    this.options.log(`engine process ${proc.pid ?? ''} ended (${describeExit(exit)})`, 'error');
    this.update({ process: 'crashed', ingest: null, error: message });
  }

  private async refresh(): Promise<void> {
    const proc = this.proc;
    if (!proc?.running) return;
    try {
      this.noteEngine(await proc.request(statusRequest));
    } catch (e) {
      if (!isCancelled(e)) this.options.log(`could not read the engine status: ${userMessageOf(e)}`, 'warn');
    }
  }

  private noteEngine(engine: EngineStatus): EngineStatus {
    this.update({ engine });
    return engine;
  }

  private update(change: Partial<EngineClientStatus>): void {
    this.current = { ...this.current, ...change };
    if (!this.disposed) this.statusEmitter.fire(this.current);
  }
}

function either(signal: AbortSignal | undefined, own: AbortSignal): AbortSignal {
  return signal ? AbortSignal.any([signal, own]) : own;
}

function withRepoState(engine: EngineStatus, state: EngineStatus['repo']['state']): EngineStatus {
  return { ...engine, repo: { ...engine.repo, state } };
}
