/**
 * What the engine process and the CLI drive: a session answering questions about one ingested
 * workspace. EngineSession runs a local model; RemoteSession (src/remote) asks an
 * OpenAI-compatible server, sending the packed repository as a fixed prefix.
 */
import type { AskRequest, AskResult, EngineStatus, IngestProgress, IngestResult, PackedFile, PackSettings } from './api';

export interface RepoSession {
  status(): EngineStatus;
  ingest(settings: PackSettings | undefined, onProgress?: (p: IngestProgress) => void, signal?: AbortSignal): Promise<IngestResult>;
  ask(req: AskRequest, onText?: (delta: string) => void, signal?: AbortSignal): Promise<AskResult>;
  askBatch(
    requests: readonly AskRequest[],
    onText?: (index: number, delta: string) => void,
    signal?: AbortSignal,
    onAnswer?: (index: number, result: AskResult) => void,
  ): Promise<AskResult[]>;
  markStale(changedPaths: string[]): void | Promise<void>;
  /** The files of the ingested context with their content hashes and token spans (empty before an ingest). */
  manifest(): PackedFile[];
  dispose(): Promise<void>;
}
