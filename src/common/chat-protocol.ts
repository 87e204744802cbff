/**
 * Messages between the chat webview (webview/chat) and its host (src/features/chat). Both sides
 * import these types, so a renamed field fails the type check on both ends. Everything here is
 * plain data: it crosses the webview's postMessage boundary.
 */
import type { EngineStatus } from '../engine/api';

export type EntryState = 'streaming' | 'done' | 'stopped' | 'error';

export interface AnswerStats {
  tokens: number;
  ttftMs: number;
  decodeTokensPerSecond: number;
}

export interface ChatEntry {
  id: string;
  role: 'user' | 'assistant';
  /** Markdown as the user sees it; for a user entry this is the display text, not the prompt. */
  text: string;
  state: EntryState;
  /** Why the answer failed, for the user (state 'error'). */
  error?: string;
  stats?: AnswerStats;
}

export interface Conversation {
  id: string;
  /** Epoch milliseconds. */
  createdAt: number;
  entries: ChatEntry[];
}

/** The chat history of one workspace, newest conversation last; `activeId` is the one shown. */
export interface ChatHistory {
  version: 1;
  activeId: string;
  conversations: Conversation[];
}

/** Every change to the history; the host and the webview apply the same actions with `reduceHistory`. */
export type ChatAction =
  | { kind: 'turnStarted'; user: ChatEntry; assistant: ChatEntry }
  | { kind: 'delta'; id: string; text: string }
  | { kind: 'turnEnded'; id: string; state: Exclude<EntryState, 'streaming'>; error?: string; stats?: AnswerStats }
  | { kind: 'newChat'; id: string; createdAt: number }
  | { kind: 'switchChat'; id: string }
  | { kind: 'clear'; id: string; createdAt: number };

/** What the header shows about the repository and the engine. */
export interface HeaderStatus {
  process: 'stopped' | 'starting' | 'running' | 'crashed';
  /** The engine's last report; null before it first started. */
  status: EngineStatus | null;
  /** Percent of the ingest in flight (tokens), if any. */
  ingestPercent?: number;
  /** The last failure, for the user (engine crashed, model missing). */
  problem?: string;
  /** Restricted mode: the workspace is not read and no engine runs. */
  restricted?: boolean;
}

export type HostMessage =
  | { type: 'init'; history: ChatHistory; header: HeaderStatus; busy: boolean }
  | { type: 'action'; action: ChatAction }
  | { type: 'busy'; busy: boolean }
  | { type: 'header'; header: HeaderStatus }
  /** Answer to `resolvePaths`: which candidate paths are files in the workspace. */
  | { type: 'paths'; resolved: Record<string, boolean> }
  | { type: 'focusInput' };

export type WebviewMessage =
  | { type: 'ready' }
  | { type: 'ask'; question: string }
  | { type: 'stop' }
  | { type: 'newChat' }
  | { type: 'clear' }
  | { type: 'switchChat'; id: string }
  | { type: 'ingest' }
  | { type: 'manageTrust' }
  | { type: 'resolvePaths'; paths: string[] }
  | { type: 'openFile'; path: string; line?: number; endLine?: number; column?: number }
  | { type: 'openExternal'; url: string }
  | { type: 'copy'; text: string };
