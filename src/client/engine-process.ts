/**
 * One running engine process and its JSON-RPC connection. It never restarts itself: when the
 * process ends, `exited` settles and every request still in flight rejects with
 * EngineCrashedError; EngineClient decides what comes next.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import {
  CancellationTokenSource, createMessageConnection, type MessageConnection, type ProgressType, type RequestType,
  type RequestType0, StreamMessageReader, StreamMessageWriter,
} from 'vscode-jsonrpc/node';
import { shutdownRequest } from '../common/engine-protocol';
import { UserError } from '../common/errors';
import { CancelledError, EngineCrashedError, fromRequestError, type ProcessExit, spawnFailed } from './engine-errors';

export interface EngineProcessOptions {
  enginePath: string;
  execPath: string;
  /** Each line the engine writes to stderr. */
  onStderrLine: (line: string) => void;
}

/** How long a polite shutdown may take before the process is killed. */
const SHUTDOWN_GRACE_MS = 3000;

export class EngineProcess {
  readonly exited: Promise<ProcessExit>;
  readonly startedAt = Date.now();
  private readonly child: ChildProcess;
  private readonly connection: MessageConnection;
  private exit: ProcessExit | undefined;
  private spawnError: Error | undefined;
  private stopping = false;

  constructor(options: EngineProcessOptions) {
    this.child = spawn(options.execPath, [options.enginePath], {
      env: { ...process.env, ELECTRON_RUN_AS_NODE: '1' },
      stdio: ['pipe', 'pipe', 'pipe'],
      windowsHide: true,
    });
    this.exited = new Promise<ProcessExit>((resolve) => {
      this.child.once('error', (err) => {
        this.spawnError = spawnFailed(options.enginePath, err);
        options.onStderrLine(this.spawnError.message);
        // 'exit' does not follow an error raised by spawn itself.
        if (this.child.pid === undefined) resolve({ code: null, signal: null });
      });
      this.child.once('exit', (code, signal) => resolve({ code, signal }));
    }).then((exit) => {
      this.exit = exit;
      this.connection.dispose();
      return exit;
    });
    forwardLines(this.child.stderr!, options.onStderrLine);
    this.connection = createMessageConnection(new StreamMessageReader(this.child.stdout!), new StreamMessageWriter(this.child.stdin!));
    // A write to a dead process fails with EPIPE; the exit handler reports it to the caller.
    this.child.stdin!.on('error', () => undefined);
    this.connection.onError(() => undefined);
    this.connection.listen();
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get running(): boolean {
    return this.exit === undefined;
  }

  /** True once `stop()` was called, so that the exit is not a crash. */
  get stopRequested(): boolean {
    return this.stopping;
  }

  request<R, E>(type: RequestType0<R, E>, signal?: AbortSignal): Promise<R>;
  request<P, R, E>(type: RequestType<P, R, E>, params: P, signal?: AbortSignal): Promise<R>;
  async request(type: RequestType0<unknown, unknown> | RequestType<unknown, unknown, unknown>, ...rest: unknown[]): Promise<unknown> {
    const params = type.numberOfParams === 0 ? undefined : rest[0];
    const signal = (type.numberOfParams === 0 ? rest[0] : rest[1]) as AbortSignal | undefined;
    if (signal?.aborted) throw new CancelledError();
    const failure = this.failure();
    if (failure) throw failure;
    const source = new CancellationTokenSource();
    const onAbort = () => source.cancel();
    signal?.addEventListener('abort', onAbort);
    try {
      const response = params === undefined
        ? this.connection.sendRequest(type as RequestType0<unknown, unknown>, source.token)
        : this.connection.sendRequest(type as RequestType<unknown, unknown, unknown>, params, source.token);
      const crash = this.exited.then((): never => {
        throw this.failure()!;
      });
      return await Promise.race([response.catch((e: unknown) => {
        throw this.failure() ?? fromRequestError(e);
      }), crash]);
    } finally {
      signal?.removeEventListener('abort', onAbort);
      source.dispose();
    }
  }

  onProgress<P>(type: ProgressType<P>, token: string, handler: (value: P) => void): { dispose(): void } {
    return this.connection.onProgress(type, token, handler);
  }

  /** Asks the engine to release its session and exit; kills it if it does not within a grace period. */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.stopping = true;
    const timer = setTimeout(() => this.child.kill('SIGKILL'), SHUTDOWN_GRACE_MS);
    try {
      await Promise.race([this.connection.sendRequest(shutdownRequest).catch(() => undefined), this.exited]);
      await this.exited;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Ends the process at once; used when the extension host goes away. */
  kill(): void {
    this.stopping = true;
    if (this.running) this.child.kill('SIGKILL');
  }

  private failure(): Error | undefined {
    if (!this.exit) return undefined;
    if (this.spawnError) return this.spawnError;
    if (this.stopping) return new UserError('The engine was restarted before it answered. Run the request again.');
    return new EngineCrashedError(this.exit);
  }
}

function forwardLines(stream: NodeJS.ReadableStream, onLine: (line: string) => void): void {
  let pending = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk: string) => {
    pending += chunk;
    const lines = pending.split(/\r?\n/);
    pending = lines.pop() ?? '';
    for (const line of lines) if (line.length > 0) onLine(line);
  });
  stream.on('end', () => {
    if (pending.length > 0) onLine(pending);
  });
}
