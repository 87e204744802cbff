/**
 * The chat history as a pure reducer. The host applies each action, persists the result and posts
 * the same action to the webview, which applies it with this same function; no side is the "copy".
 */
import type { ChatAction, ChatEntry, ChatHistory, Conversation } from '../../common/chat-protocol';
import type { ChatTurn } from '../../engine/api';

/** Older conversations beyond this many are dropped, so the workspace state stays small. */
export const MAX_CONVERSATIONS = 30;

export function emptyHistory(id: string, createdAt: number): ChatHistory {
  return { version: 1, activeId: id, conversations: [{ id, createdAt, entries: [] }] };
}

export function activeConversation(h: ChatHistory): Conversation {
  const found = h.conversations.find((c) => c.id === h.activeId);
  if (!found) throw new Error(`chat history has no conversation ${h.activeId}`);
  return found;
}

function mapEntry(h: ChatHistory, id: string, f: (e: ChatEntry) => ChatEntry): ChatHistory {
  return {
    ...h,
    conversations: h.conversations.map((c) =>
      c.entries.some((e) => e.id === id) ? { ...c, entries: c.entries.map((e) => (e.id === id ? f(e) : e)) } : c,
    ),
  };
}

function withNewConversation(h: ChatHistory, id: string, createdAt: number): ChatHistory {
  // An empty active conversation is replaced rather than kept, so "New Chat" twice leaves no blanks.
  const kept = h.conversations.filter((c) => c.entries.length > 0);
  const conversations = [...kept, { id, createdAt, entries: [] }].slice(-MAX_CONVERSATIONS);
  return { ...h, activeId: id, conversations };
}

export function reduceHistory(h: ChatHistory, a: ChatAction): ChatHistory {
  switch (a.kind) {
    case 'turnStarted': {
      const active = activeConversation(h);
      const updated = { ...active, entries: [...active.entries, a.user, a.assistant] };
      return { ...h, conversations: h.conversations.map((c) => (c.id === active.id ? updated : c)) };
    }
    case 'delta':
      return mapEntry(h, a.id, (e) => (e.state === 'streaming' ? { ...e, text: e.text + a.text } : e));
    case 'turnEnded':
      return mapEntry(h, a.id, (e) => ({
        ...e,
        state: a.state,
        ...(a.error !== undefined ? { error: a.error } : {}),
        ...(a.stats !== undefined ? { stats: a.stats } : {}),
      }));
    case 'newChat':
      return withNewConversation(h, a.id, a.createdAt);
    case 'switchChat':
      return h.conversations.some((c) => c.id === a.id) ? { ...h, activeId: a.id } : h;
    case 'clear':
      return emptyHistory(a.id, a.createdAt);
  }
}

/**
 * Makes a stored history safe to show: anything that is not a valid history becomes empty, and an
 * answer that was streaming when the window closed is marked stopped (nothing will finish it).
 */
export function restoreHistory(stored: unknown, freshId: string, now: number): ChatHistory {
  if (!isHistory(stored)) return emptyHistory(freshId, now);
  return {
    ...stored,
    conversations: stored.conversations.map((c) => ({
      ...c,
      entries: c.entries.map((e) => (e.state === 'streaming' ? { ...e, state: 'stopped' as const } : e)),
    })),
  };
}

function isHistory(v: unknown): v is ChatHistory {
  if (typeof v !== 'object' || v === null) return false;
  const h = v as Partial<ChatHistory>;
  return (
    h.version === 1 &&
    typeof h.activeId === 'string' &&
    Array.isArray(h.conversations) &&
    h.conversations.some((c) => c.id === h.activeId) &&
    h.conversations.every(
      (c) =>
        typeof c.id === 'string' &&
        typeof c.createdAt === 'number' &&
        Array.isArray(c.entries) &&
        c.entries.every(
          (e) =>
            typeof e.id === 'string' &&
            (e.role === 'user' || e.role === 'assistant') &&
            typeof e.text === 'string' &&
            ['streaming', 'done', 'stopped', 'error'].includes(e.state),
        ),
    )
  );
}

/**
 * The earlier turns of the active conversation, as the engine's chat history: each question with
 * its answer, skipping pairs whose answer failed or stopped before saying anything.
 */
export function turnsForEngine(h: ChatHistory): ChatTurn[] {
  const entries = activeConversation(h).entries;
  const turns: ChatTurn[] = [];
  for (let i = 0; i + 1 < entries.length; i++) {
    const [q, a] = [entries[i], entries[i + 1]];
    const answered = a.state === 'done' || (a.state === 'stopped' && a.text !== '');
    if (q.role === 'user' && a.role === 'assistant' && answered) {
      turns.push({ role: 'user', content: q.text }, { role: 'assistant', content: a.text });
      i++;
    }
  }
  return turns;
}

/** A one-line title: the first line of the conversation's first question. */
export function conversationTitle(c: Conversation, maxLength = 60): string {
  const first = c.entries.find((e) => e.role === 'user');
  if (!first) return 'New chat';
  const line = first.text.split('\n').find((l) => l.trim() !== '') ?? '';
  const plain = line.replace(/[`*_#>]/g, '').trim();
  return plain.length > maxLength ? `${plain.slice(0, maxLength - 1)}…` : plain || 'New chat';
}
