/**
 * The JSON-RPC protocol between the extension (EngineClient) and the engine process
 * (src/engine/host). Both sides import these objects, so a renamed method or a changed payload
 * is a type error on both ends instead of a silent mismatch at run time.
 *
 * Streams (ingest progress, answer text) use JSON-RPC `$/progress` with a token the caller puts
 * in the request, so that each stream is tied to exactly one request.
 */
import { ProgressType, RequestType, RequestType0 } from 'vscode-jsonrpc';
import type { AskRequest, AskResult, BackendName, EngineStatus, IngestProgress, IngestResult, PackedFile, PackSettings } from '../engine/api';
import type { MemoryBudget } from '../engine/plan/memory-plan';
import type { RemoteEndpoint } from '../remote/openai-endpoint';

export interface OpenParams {
  /** Checkpoint folder; undefined selects the bundled tiny checkpoint. */
  modelDir?: string;
  /** 'remote': no local model; questions go to the OpenAI-compatible server in `remote`. */
  backend: BackendName | 'remote';
  /** Where the engine persists repository states between runs. */
  cacheDir: string;
  /** What the model's memory is planned for (kimiLinear.maxContextTokens, kimiLinear.gpuMemoryLimit). */
  memory?: MemoryBudget;
  /** The server the remote backend asks (its API key travels only over the engine's pipe). */
  remote?: RemoteEndpoint;
}

export interface IngestParams {
  settings: PackSettings;
  progressToken: string;
}

export interface AskParams {
  request: AskRequest;
  textToken: string;
  /** Ingested first (reporting on `progressToken`) when the engine holds no repository state yet. */
  workspace?: PackSettings;
  progressToken?: string;
  /** Receives the implicit ingest's result once it ends, before the question is read. */
  ingestedToken?: string;
}

/** Several questions answered together; the implicit ingest works as for AskParams. */
export interface AskBatchParams extends Omit<AskParams, 'request'> {
  requests: AskRequest[];
}

/**
 * A piece of one answer of an askBatch: `index` is the request's position in `requests`. The last
 * piece of each answer carries its result, as soon as that answer ends.
 */
export interface AnswerDelta {
  index: number;
  delta: string;
  result?: AskResult;
}

export interface MarkStaleParams {
  /** Absolute paths of the files that changed. */
  paths: string[];
}

/** What the engine puts in `ResponseError.data`, so the client can tell user errors from bugs. */
export interface EngineErrorData {
  kind: 'user' | 'cancelled' | 'internal';
  file?: string;
  stack?: string;
}

export const EngineErrorCode = {
  /** The request failed for a reason the user can act on; the message says what to do. */
  User: 1,
  /** The request was cancelled by the caller. Same number as LSP's RequestCancelled. */
  Cancelled: -32800,
  /** A request other than `open` arrived before a model was opened. */
  NotOpened: 2,
} as const;

export const openRequest = new RequestType<OpenParams, EngineStatus, EngineErrorData>('engine/open');
export const statusRequest = new RequestType0<EngineStatus, EngineErrorData>('engine/status');
export const ingestRequest = new RequestType<IngestParams, IngestResult, EngineErrorData>('engine/ingest');
export const askRequest = new RequestType<AskParams, AskResult, EngineErrorData>('engine/ask');
export const askBatchRequest = new RequestType<AskBatchParams, AskResult[], EngineErrorData>('engine/askBatch');
export const markStaleRequest = new RequestType<MarkStaleParams, EngineStatus, EngineErrorData>('engine/markStale');
/** The files of the ingested context (empty before the first ingest). */
export const manifestRequest = new RequestType0<PackedFile[], EngineErrorData>('engine/manifest');
/** Releases the session; the process exits once the response is written. */
export const shutdownRequest = new RequestType0<void, EngineErrorData>('engine/shutdown');

export const ingestProgress = new ProgressType<IngestProgress>();
export const askText = new ProgressType<string>();
export const askBatchText = new ProgressType<AnswerDelta>();
/** The end of an ask's implicit ingest: from here on the request answers instead of ingesting. */
export const askIngested = new ProgressType<IngestResult>();
