/**
 * The engine process's request handlers: one EngineSession behind the typed protocol of
 * src/common/engine-protocol.ts. Work on the model runs one request at a time in arrival order,
 * because a session owns one model and one repository state; status requests answer at once.
 */
import { CancellationToken, ErrorCodes, MessageConnection, ResponseError } from 'vscode-jsonrpc';
import {
  askBatchRequest, askBatchText, askIngested, type AskParams, askRequest, askText, EngineErrorCode, EngineErrorData, ingestProgress, ingestRequest, manifestRequest,
  markStaleRequest, openRequest, shutdownRequest, statusRequest,
} from '../../common/engine-protocol';
import { isUserError } from '../../common/errors';
import type { AskResult, IngestProgress } from '../api';
import type { RepoSession } from '../repo-session';
import { openRepoSession } from './open-session';
import { withCheckedParams } from './request-params';

/** Ingest progress is sent at most this often; the session may report every chunk. */
const PROGRESS_INTERVAL_MS = 100;

export interface ServeOptions {
  log: (line: string) => void;
  /** Called once the session is released after a shutdown request or a closed connection. */
  exit: () => void;
}

export function serveEngine(rawConnection: MessageConnection, options: ServeOptions): void {
  const connection = withCheckedParams(rawConnection);
  const { log } = options;
  let session: RepoSession | undefined;
  let queue: Promise<unknown> = Promise.resolve();

  function exclusive<T>(work: () => Promise<T>): Promise<T> {
    const run = queue.then(work, work);
    queue = run.catch(() => undefined);
    return run;
  }

  function opened(): RepoSession {
    if (!session) {
      throw new ResponseError<EngineErrorData>(EngineErrorCode.NotOpened, 'No model is open in the engine process yet.', { kind: 'internal' });
    }
    return session;
  }

  async function release(): Promise<void> {
    const s = session;
    session = undefined;
    await s?.dispose();
  }

  connection.onRequest(openRequest, (params, token) => handle(token, log, () => exclusive(async () => {
    await release();
    log(`opening ${params.backend === 'remote' ? `remote model ${params.remote?.model}` : `model ${params.modelDir ?? '(bundled tiny checkpoint)'}`} with backend ${params.backend}`);
    session = await openRepoSession(params, log);
    return session.status();
  })));

  connection.onRequest(statusRequest, (token) => handle(token, log, async () => opened().status()));

  connection.onRequest(ingestRequest, (params, token) => handle(token, log, () => exclusive(async () => {
    const progress = throttledProgress((p) => void connection.sendProgress(ingestProgress, params.progressToken, p));
    return opened().ingest(params.settings, progress, signalOf(token));
  })));

  /**
   * The ingest an ask runs first when the engine holds no repository state and the client sent
   * its workspace; its progress and end go to the tokens the ask carries.
   */
  async function ingestForAsk(s: RepoSession, params: Omit<AskParams, 'request'>, signal: AbortSignal): Promise<void> {
    if (!params.workspace || s.status().repo.state !== 'none') return;
    const progressToken = params.progressToken;
    const progress = throttledProgress((p) => {
      if (progressToken) void connection.sendProgress(ingestProgress, progressToken, p);
    });
    const ingested = await s.ingest(params.workspace, progress, signal);
    if (params.ingestedToken) void connection.sendProgress(askIngested, params.ingestedToken, ingested);
    // A cancel that arrives after the last prefill chunk lets the ingest finish (its state is
    // kept), but the question it was for is still not to be answered.
    if (signal.aborted) throw cancelled();
  }

  connection.onRequest(askRequest, (params, token) => handle(token, log, () => exclusive(async () => {
    const s = opened();
    const signal = signalOf(token);
    await ingestForAsk(s, params, signal);
    const onText = (delta: string) => void connection.sendProgress(askText, params.textToken, delta);
    return s.ask(params.request, onText, signal);
  })));

  connection.onRequest(askBatchRequest, (params, token) => handle(token, log, () => exclusive(async () => {
    const s = opened();
    const signal = signalOf(token);
    await ingestForAsk(s, params, signal);
    const onText = (index: number, delta: string) => void connection.sendProgress(askBatchText, params.textToken, { index, delta });
    const onAnswer = (index: number, result: AskResult) => void connection.sendProgress(askBatchText, params.textToken, { index, delta: '', result });
    return s.askBatch(params.requests, onText, signal, onAnswer);
  })));

  connection.onRequest(markStaleRequest, (params, token) => handle(token, log, async () => {
    const s = opened();
    await s.markStale(params.paths);
    return s.status();
  }));

  connection.onRequest(manifestRequest, (token) => handle(token, log, async () => opened().manifest()));

  connection.onRequest(shutdownRequest, async () => {
    await exclusive(release);
    setImmediate(options.exit);
  });

  connection.onClose(() => {
    void release().finally(options.exit);
  });
}

/** Runs a handler and turns what it throws into a ResponseError the client can classify. */
async function handle<T>(token: CancellationToken, log: (line: string) => void, work: () => Promise<T>): Promise<T> {
  if (token.isCancellationRequested) throw cancelled();
  try {
    return await work();
  } catch (e) {
    if (e instanceof ResponseError) throw e;
    if (token.isCancellationRequested) throw cancelled();
    if (isUserError(e)) {
      throw new ResponseError<EngineErrorData>(EngineErrorCode.User, e.message, { kind: 'user', file: e.file });
    }
    const err = e instanceof Error ? e : new Error(String(e));
    log(`internal error: ${err.stack ?? err.message}`);
    throw new ResponseError<EngineErrorData>(ErrorCodes.InternalError, err.message, { kind: 'internal', stack: err.stack });
  }
}

function cancelled(): ResponseError<EngineErrorData> {
  return new ResponseError<EngineErrorData>(EngineErrorCode.Cancelled, 'Cancelled.', { kind: 'cancelled' });
}

function signalOf(token: CancellationToken): AbortSignal {
  const controller = new AbortController();
  if (token.isCancellationRequested) controller.abort();
  else token.onCancellationRequested(() => controller.abort());
  return controller.signal;
}

/** Forwards a report at once when its phase changes, otherwise at most every PROGRESS_INTERVAL_MS. */
function throttledProgress(send: (p: IngestProgress) => void): (p: IngestProgress) => void {
  let lastSent = 0;
  let lastPhase: IngestProgress['phase'] | undefined;
  return (p) => {
    const now = Date.now();
    if (p.phase !== lastPhase || now - lastSent >= PROGRESS_INTERVAL_MS) {
      lastSent = now;
      lastPhase = p.phase;
      send(p);
    }
  };
}
