/**
 * Messages from the chat webview are checked before they are acted on: the webview renders model
 * output, so a message is input like any other. A message of an unknown type or with ill-typed
 * fields is dropped (and logged) rather than half-handled.
 */
import type { WebviewMessage } from '../../common/chat-protocol';

/** Longest question, copied text or path taken from the webview. */
const MAX_TEXT = 1_000_000;
const MAX_PATHS = 200;

type Fields = Record<string, unknown>;

const isText = (v: unknown): v is string => typeof v === 'string' && v.length <= MAX_TEXT;
const isLine = (v: unknown) => v === undefined || (Number.isSafeInteger(v) && (v as number) >= 1);

/** The message, or why it is refused. */
export function parseWebviewMessage(value: unknown): WebviewMessage | string {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'not an object';
  const m = value as Fields;
  switch (m.type) {
    case 'ready':
    case 'stop':
    case 'newChat':
    case 'clear':
    case 'ingest':
    case 'manageTrust':
      return { type: m.type };
    case 'ask':
      return isText(m.question) ? { type: 'ask', question: m.question } : 'ask: question must be a string';
    case 'switchChat':
      return typeof m.id === 'string' && m.id.length <= 200 ? { type: 'switchChat', id: m.id } : 'switchChat: id must be a short string';
    case 'resolvePaths':
      return Array.isArray(m.paths) && m.paths.length <= MAX_PATHS && m.paths.every((p) => typeof p === 'string' && p.length <= 4096)
        ? { type: 'resolvePaths', paths: m.paths as string[] }
        : `resolvePaths: paths must be at most ${MAX_PATHS} strings`;
    case 'openFile':
      if (typeof m.path !== 'string' || m.path.length > 4096) return 'openFile: path must be a string';
      if (!isLine(m.line) || !isLine(m.endLine) || !isLine(m.column)) return 'openFile: line, endLine and column must be whole numbers ≥ 1';
      return { type: 'openFile', path: m.path, line: m.line as number | undefined, endLine: m.endLine as number | undefined, column: m.column as number | undefined };
    case 'openExternal':
      return typeof m.url === 'string' && /^https?:\/\//i.test(m.url) ? { type: 'openExternal', url: m.url } : 'openExternal: url must be an http(s) address';
    case 'copy':
      return isText(m.text) ? { type: 'copy', text: m.text } : 'copy: text must be a string';
    default:
      return `unknown message type ${JSON.stringify(m.type)?.slice(0, 40)}`;
  }
}
