/**
 * The engine's public surface, shared by the CLI, the engine process (JSON-RPC) and the
 * extension's client. Plain data only: everything here crosses a process boundary.
 */

export type BackendName = 'auto' | 'cuda' | 'onnx' | 'reference';

export interface SamplingOptions {
  /** 0 = greedy. */
  temperature: number;
  topP: number;
  /** 0 = off. */
  topK: number;
  maxNewTokens: number;
  /** Seed of the sampler's PRNG, so that a run can be repeated. */
  seed?: number;
}

export interface PackSettings {
  /** Workspace folders (absolute paths); several for a multi-root workspace. */
  roots: string[];
  maxTokens?: number;
  include?: string[];
  exclude?: string[];
  maxFileBytes?: number;
}

export interface IngestProgress {
  phase: 'pack' | 'restore' | 'prefill' | 'save';
  filesDone: number;
  filesTotal: number;
  tokensDone: number;
  tokensTotal: number;
  tokensPerSecond: number;
  /** Seconds left in the prefill phase, when it can be estimated. */
  etaSeconds?: number;
}

export interface IngestResult {
  files: number;
  omitted: number;
  tokens: number;
  /** Tokens whose state came from a saved checkpoint instead of being prefilled again. */
  resumedTokens: number;
  /** True when the saved state already matched the workspace and nothing was computed. */
  upToDate: boolean;
  seconds: number;
  /** Prefill speed over the tokens actually computed. */
  tokensPerSecond: number;
  secretsRedacted: number;
}

export interface Selection {
  /** Workspace-relative path, as in the packed context. */
  path: string;
  /** 1-based, inclusive. */
  startLine: number;
  endLine: number;
  text: string;
}

export interface ChatTurn {
  role: 'user' | 'assistant';
  content: string;
}

export interface AskRequest {
  question: string;
  selection?: Selection;
  history?: ChatTurn[];
  sampling?: Partial<SamplingOptions>;
}

export interface AskResult {
  text: string;
  tokens: number;
  /** Time from the request to the first generated token, including the question's prefill. */
  ttftMs: number;
  decodeTokensPerSecond: number;
  stopReason: 'eos' | 'max_tokens' | 'cancelled';
}

/** One file of the ingested context: what was packed from it and where it sits. */
export interface PackedFile {
  /** Absolute path. */
  path: string;
  /** Of the file's bytes as they were read for the pack. */
  sha256: string;
  /** Token span [start, end) of the file's block in the ingested context. */
  start: number;
  end: number;
}

export interface EngineStatus {
  model: { path: string; name: string; bundled: boolean; parameters: number } | null;
  backend: string;
  device: string;
  repo: {
    roots: string[];
    files: number;
    tokens: number;
    state: 'none' | 'ready' | 'stale' | 'ingesting';
  };
}
