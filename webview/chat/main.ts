/**
 * The chat webview: renders the history it receives from the host (same reducer as the host),
 * streams answers, and sends the user's intents back. Every piece of text goes markdown →
 * sanitizeHtml → DOM; nothing reaches innerHTML any other way.
 */
import DOMPurify from 'dompurify';
import type { ChatEntry, ChatHistory, HeaderStatus, HostMessage, WebviewMessage } from '../../src/common/chat-protocol';
import { activeConversation, conversationTitle, reduceHistory } from '../../src/features/chat/history';
import { headerView } from './header-view';
import { createMarkdown } from './markdown';
import { sanitizeHtml } from './sanitize';
import './chat.css';

interface VsCodeApi {
  postMessage(m: WebviewMessage): void;
}
declare function acquireVsCodeApi(): VsCodeApi;

const vscode = acquireVsCodeApi();
const send = (m: WebviewMessage) => vscode.postMessage(m);
const render = createMarkdown();

function el<K extends keyof HTMLElementTagNameMap>(tag: K, cls?: string, text?: string): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

// ---- layout -------------------------------------------------------------------------------
const root = document.getElementById('klc-chat') as HTMLElement;
const header = el('header', 'repo');
const repoLine = el('div', 'repo-line');
const engineLine = el('div', 'engine-line');
const headerActions = el('div', 'header-actions');
const actionButton = el('button', 'secondary header-action', 'Ingest');
actionButton.type = 'button';
let actionMessage: WebviewMessage | undefined;
const conversations = el('select', 'conversations');
conversations.title = 'Earlier chats in this workspace';
conversations.setAttribute('aria-label', 'Conversation');
headerActions.append(conversations, actionButton);
header.append(repoLine, engineLine, headerActions);

const log = el('main', 'log');
log.setAttribute('role', 'log');
log.setAttribute('aria-live', 'polite');
log.setAttribute('aria-label', 'Conversation with Kimi Linear');
const empty = el('div', 'empty');
empty.append(
  el('p', 'empty-title', 'Ask about this repository'),
  el('p', undefined, 'The whole workspace is packed into the model\'s context. Select code and run "Explain Selection", or ask below.'),
);

const composer = el('form', 'composer');
const input = el('textarea', 'input');
input.rows = 3;
input.placeholder = 'Ask about this repository… (Enter to send, Shift+Enter for a new line, Escape to stop an answer)';
input.setAttribute('aria-label', 'Question');
input.setAttribute('aria-keyshortcuts', 'Enter');
const sendButton = el('button', 'primary', 'Send');
sendButton.type = 'submit';
const stopButton = el('button', 'secondary stop', 'Stop');
stopButton.type = 'button';
stopButton.title = 'Stop the answer (Escape)';
stopButton.setAttribute('aria-keyshortcuts', 'Escape');
stopButton.hidden = true;
const buttons = el('div', 'composer-buttons');
buttons.append(stopButton, sendButton);
composer.append(input, buttons);
root.append(header, log, composer);

// ---- state ----------------------------------------------------------------------------------
let history: ChatHistory | undefined;
let shownConversation = '';
const known = new Map<string, boolean>();
const asked = new Set<string>();
interface Shown {
  entry: ChatEntry;
  node: HTMLElement;
  body: HTMLElement;
  footer: HTMLElement;
  renderedText: string | undefined;
  waitsFor: string[];
  /** While the answer streams, the earliest time (performance.now()) it is painted again. */
  nextPaint: number;
}
const shown = new Map<string, Shown>();
let frame = 0;
let frameTimer: ReturnType<typeof setTimeout> | undefined;
const dirty = new Set<string>();
/**
 * Each paint renders the whole answer's markdown again, which grows with the answer: a streaming
 * answer is repainted at most this often, and at most a fifth of the time, so that the page stays
 * responsive (Stop, scrolling, selecting) however long the answer gets.
 */
const STREAM_PAINT_MS = 80;

const lookup = (p: string) => known.get(p);

function scheduleRender(id: string): void {
  dirty.add(id);
  requestFlush();
}

function requestFlush(): void {
  if (frame === 0 && frameTimer === undefined) frame = requestAnimationFrame(flush);
}

function flush(): void {
  frame = 0;
  const now = performance.now();
  const stick = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
  let wake = Infinity;
  for (const id of dirty) {
    const s = shown.get(id);
    if (s && s.entry.state === 'streaming' && s.renderedText !== undefined && now < s.nextPaint) {
      wake = Math.min(wake, s.nextPaint);
      continue;
    }
    if (s) paint(s);
    dirty.delete(id);
  }
  if (stick) log.scrollTop = log.scrollHeight;
  if (wake < Infinity) {
    frameTimer = setTimeout(() => {
      frameTimer = undefined;
      requestFlush();
    }, wake - now);
  }
}

function paint(s: Shown): void {
  const started = performance.now();
  const { entry } = s;
  s.node.classList.toggle('streaming', entry.state === 'streaming');
  // Screen readers announce the answer once it is complete, not every streamed piece.
  s.node.setAttribute('aria-busy', String(entry.state === 'streaming'));
  const r = render(entry.text, lookup);
  s.body.innerHTML = sanitizeHtml(DOMPurify, r.html);
  decorateCode(s.body);
  s.renderedText = entry.text;
  s.waitsFor = r.unresolved;
  const fresh = r.unresolved.filter((p) => !asked.has(p));
  if (fresh.length > 0) {
    for (const p of fresh) asked.add(p);
    send({ type: 'resolvePaths', paths: fresh });
  }
  s.footer.replaceChildren();
  if (entry.role === 'assistant') {
    if (entry.state === 'streaming' && entry.text === '') s.footer.append(el('span', 'thinking', 'Reading the repository state…'));
    if (entry.state === 'stopped') s.footer.append(el('span', 'note', 'Stopped.'));
    if (entry.state === 'error') s.footer.append(el('span', 'error', entry.error ?? 'The answer failed.'));
    if (entry.state === 'done' && entry.stats) {
      const st = entry.stats;
      s.footer.append(el('span', 'note', `${st.tokens} tokens · first token after ${(st.ttftMs / 1000).toFixed(1)} s · ${st.decodeTokensPerSecond.toFixed(1)} tokens/s`));
    }
  }
  const cost = performance.now() - started;
  s.nextPaint = started + Math.max(STREAM_PAINT_MS, 5 * cost);
}

/** Adds a header with the language and a copy button to each code block (after sanitizing). */
function decorateCode(body: HTMLElement): void {
  for (const pre of body.querySelectorAll('pre')) {
    const code = pre.querySelector('code');
    if (!code) continue;
    const lang = [...code.classList].find((c) => c.startsWith('language-'))?.slice('language-'.length) ?? '';
    const bar = el('div', 'code-bar');
    const copy = el('button', 'copy-code', 'Copy');
    copy.type = 'button';
    copy.title = 'Copy code';
    bar.append(el('span', 'code-lang', lang), copy);
    const block = el('div', 'code-block');
    pre.replaceWith(block);
    block.append(bar, pre);
  }
}

function entryNode(entry: ChatEntry): Shown {
  const node = el('article', `entry ${entry.role}`);
  node.dataset.id = entry.id;
  const body = el('div', 'body');
  const footer = el('div', 'entry-footer');
  node.append(el('div', 'who', entry.role === 'user' ? 'You' : 'Kimi Linear'), body, footer);
  return { entry, node, body, footer, renderedText: undefined, waitsFor: [], nextPaint: 0 };
}

/** Brings the DOM in line with the active conversation; only changed entries are re-rendered. */
function sync(): void {
  if (!history) return;
  const conv = activeConversation(history);
  if (conv.id !== shownConversation) {
    shown.clear();
    log.replaceChildren();
    shownConversation = conv.id;
  }
  for (const entry of conv.entries) {
    let s = shown.get(entry.id);
    if (!s) {
      s = entryNode(entry);
      shown.set(entry.id, s);
      log.append(s.node);
    }
    if (s.entry !== entry || s.renderedText === undefined) {
      s.entry = entry;
      scheduleRender(entry.id);
    }
  }
  if (conv.entries.length === 0) log.replaceChildren(empty);
  else empty.remove();
  conversations.replaceChildren(
    ...history.conversations
      .filter((c) => c.entries.length > 0 || c.id === conv.id)
      .map((c) => {
        const o = el('option', undefined, conversationTitle(c));
        o.value = c.id;
        o.selected = c.id === conv.id;
        return o;
      })
      .reverse(),
  );
  conversations.hidden = history.conversations.length < 2;
}

let busyNow = false;

function setBusy(busy: boolean): void {
  busyNow = busy;
  // The button a keyboard user pressed disappears; its place in the focus order goes to the other.
  const focused = document.activeElement;
  stopButton.hidden = !busy;
  sendButton.hidden = busy;
  if (focused === sendButton && busy) stopButton.focus();
  if (focused === stopButton && !busy) input.focus();
}

function showHeader(h: HeaderStatus): void {
  const v = headerView(h);
  const badge = el('span', `badge ${v.badgeClass}`.trim(), v.badge);
  repoLine.replaceChildren(badge);
  if (v.counts) repoLine.append(el('span', 'counts', v.counts));
  engineLine.replaceChildren(el('span', v.engineClass || undefined, v.engine));
  const hadFocus = document.activeElement === actionButton;
  actionButton.hidden = v.action === undefined;
  if (v.action) {
    actionButton.textContent = v.action.label;
    actionButton.title = v.action.title;
    actionMessage = { type: v.action.message };
  }
  if (hadFocus && actionButton.hidden) input.focus();
}

// ---- events ---------------------------------------------------------------------------------
window.addEventListener('message', (ev: MessageEvent<HostMessage>) => {
  const m = ev.data;
  switch (m.type) {
    case 'init':
      history = m.history;
      shownConversation = '';
      sync();
      showHeader(m.header);
      setBusy(m.busy);
      return;
    case 'action':
      if (!history) return;
      history = reduceHistory(history, m.action);
      sync();
      return;
    case 'busy':
      setBusy(m.busy);
      return;
    case 'header':
      showHeader(m.header);
      return;
    case 'paths':
      for (const [p, ok] of Object.entries(m.resolved)) known.set(p, ok);
      for (const s of shown.values()) if (s.waitsFor.some((p) => p in m.resolved)) scheduleRender(s.entry.id);
      return;
    case 'focusInput':
      input.focus();
      return;
  }
});

composer.addEventListener('submit', (ev) => {
  ev.preventDefault();
  const question = input.value.trim();
  if (question === '' || sendButton.hidden) return;
  send({ type: 'ask', question });
  input.value = '';
});
input.addEventListener('keydown', (ev) => {
  if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
    ev.preventDefault();
    composer.requestSubmit();
  }
});
stopButton.addEventListener('click', () => send({ type: 'stop' }));
document.addEventListener('keydown', (ev) => {
  if (ev.key === 'Escape' && busyNow && !ev.isComposing) {
    ev.preventDefault();
    send({ type: 'stop' });
  }
});
actionButton.addEventListener('click', () => actionMessage && send(actionMessage));
conversations.addEventListener('change', () => send({ type: 'switchChat', id: conversations.value }));

log.addEventListener('click', (ev) => {
  const target = ev.target as HTMLElement;
  const copy = target.closest('button.copy-code');
  if (copy) {
    const code = copy.closest('.code-block')?.querySelector('code');
    if (code?.textContent) {
      send({ type: 'copy', text: code.textContent });
      copy.textContent = 'Copied';
      setTimeout(() => (copy.textContent = 'Copy'), 1500);
    }
    return;
  }
  const a = target.closest('a');
  if (!a) return;
  ev.preventDefault();
  if (a.classList.contains('file-link') && a.dataset.path) {
    const num = (s: string | undefined) => (s ? Number(s) : undefined);
    send({ type: 'openFile', path: a.dataset.path, line: num(a.dataset.line), endLine: num(a.dataset.endLine), column: num(a.dataset.column) });
  } else if (a.classList.contains('external-link')) {
    const href = a.getAttribute('href');
    if (href) send({ type: 'openExternal', url: href });
  }
});

send({ type: 'ready' });
