/**
 * The errors EngineClient rejects with. Every failure reaches a feature either as a UserError,
 * whose message can be shown as is, or as a CancelledError, which features pass over quietly.
 */
import { ErrorCodes, ResponseError } from 'vscode-jsonrpc';
import { EngineErrorCode, type EngineErrorData } from '../common/engine-protocol';
import { isUserError, UserError } from '../common/errors';

export const LOGS_HINT = 'See Kimi Linear logs (command "Kimi Linear: Show Logs").';

export class CancelledError extends Error {
  constructor() {
    super('Cancelled.');
    this.name = 'CancelledError';
  }
}

export function isCancelled(e: unknown): e is CancelledError {
  return e instanceof Error && e.name === 'CancelledError';
}

export interface ProcessExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export function describeExit(exit: ProcessExit): string {
  if (exit.signal) return `signal ${exit.signal}`;
  return `exit code ${exit.code ?? 'unknown'}`;
}

/** The engine process died while requests were in flight. */
export class EngineCrashedError extends UserError {
  constructor(readonly exit: ProcessExit) {
    super(`The engine process stopped unexpectedly (${describeExit(exit)}). It will restart on your next request. ${LOGS_HINT}`);
  }
}

export function spawnFailed(enginePath: string, cause: Error): UserError {
  return new UserError(
    `Could not start the engine process ${enginePath}: ${cause.message}. Reinstall the extension (or run "npm run build" in a development checkout). ${LOGS_HINT}`,
    enginePath,
  );
}

/** Maps an error of a JSON-RPC request to the engine onto what the client rejects with. */
export function fromRequestError(e: unknown): Error {
  if (isUserError(e) || isCancelled(e)) return e;
  if (e instanceof ResponseError) {
    const data = e.data as EngineErrorData | undefined;
    if (e.code === EngineErrorCode.Cancelled || data?.kind === 'cancelled') return new CancelledError();
    if (e.code === EngineErrorCode.User || data?.kind === 'user') return new UserError(e.message, data?.file);
    if (e.code === ErrorCodes.PendingResponseRejected || e.code === ErrorCodes.ConnectionInactive) {
      return new UserError(`The connection to the engine process closed before it answered. It will restart on your next request. ${LOGS_HINT}`);
    }
  }
  const message = e instanceof Error ? e.message : String(e);
  return new UserError(`The engine failed with an internal error: ${message}. ${LOGS_HINT} Please report it with the log.`);
}

/** The one line a feature shows for an error it cannot handle itself. */
export function userMessageOf(e: unknown): string {
  if (isUserError(e)) return e.message;
  const message = e instanceof Error ? e.message : String(e);
  return `Kimi Linear failed unexpectedly: ${message}. ${LOGS_HINT}`;
}
