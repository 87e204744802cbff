/** What the chat header is told about the engine and the repository. Pure, for unit tests. */
import type { EngineClientStatus } from '../../client/engine-client';
import type { HeaderStatus } from '../../common/chat-protocol';

export function headerOf(s: EngineClientStatus, trusted: boolean): HeaderStatus {
  const header: HeaderStatus = { process: s.process, status: s.engine };
  if (!trusted) header.restricted = true;
  if (s.ingest && s.ingest.tokensTotal > 0) header.ingestPercent = Math.floor((100 * s.ingest.tokensDone) / s.ingest.tokensTotal);
  if (s.error) header.problem = s.error;
  return header;
}
