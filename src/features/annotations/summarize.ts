/** The summaries of "Annotate File", asked for in batches that the engine decodes together. */
import type { AskRequest, AskResult } from '../../engine/api';
import { oneLineSummary } from './summary';

/** Symbols summarised per request: the number of answers the engine decodes in one batch. */
export const SUMMARY_BATCH = 8;

/** What summarising needs from the engine: EngineClient in the extension, EngineSession in tests. */
export interface BatchAsker {
  askBatch(
    requests: AskRequest[],
    onText: (index: number, delta: string) => void,
    signal?: AbortSignal,
    onAnswer?: (index: number, result: AskResult) => void,
  ): Promise<AskResult[]>;
}

/**
 * Summarises `targets` in batches of up to SUMMARY_BATCH, handing each summary to `onSummary` as
 * soon as its answer ends (a short answer need not wait for the rest of its batch). Once `signal`
 * fires, no further summary is handed over and no further batch is asked for.
 */
export async function summarizeAll<T>(
  asker: BatchAsker,
  targets: readonly T[],
  request: (target: T) => AskRequest,
  onSummary: (target: T, summary: string) => void,
  signal: AbortSignal,
): Promise<void> {
  for (let first = 0; first < targets.length && !signal.aborted; first += SUMMARY_BATCH) {
    const group = targets.slice(first, first + SUMMARY_BATCH);
    await asker.askBatch(group.map(request), () => undefined, signal, (i, answer) => {
      if (!signal.aborted && answer.stopReason !== 'cancelled') onSummary(group[i], oneLineSummary(answer.text));
    });
  }
}
