import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ChatAction, ChatEntry, ChatHistory } from '../../../src/common/chat-protocol';
import {
  MAX_CONVERSATIONS, activeConversation, conversationTitle, emptyHistory, reduceHistory, restoreHistory, turnsForEngine,
} from '../../../src/features/chat/history';

const user = (id: string, text: string): ChatEntry => ({ id, role: 'user', text, state: 'done' });
const answer = (id: string): ChatEntry => ({ id, role: 'assistant', text: '', state: 'streaming' });
const apply = (h: ChatHistory, ...actions: ChatAction[]) => actions.reduce(reduceHistory, h);

test('a streamed turn accumulates deltas and ends with its stats', () => {
  const h = apply(
    emptyHistory('c1', 1),
    { kind: 'turnStarted', user: user('u1', 'What is `main.ts`?'), assistant: answer('a1') },
    { kind: 'delta', id: 'a1', text: 'It is ' },
    { kind: 'delta', id: 'a1', text: 'the entry.' },
    { kind: 'turnEnded', id: 'a1', state: 'done', stats: { tokens: 4, ttftMs: 10, decodeTokensPerSecond: 2 } },
    { kind: 'delta', id: 'a1', text: ' late' },
  );
  const [, a] = activeConversation(h).entries;
  assert.deepEqual(a, { id: 'a1', role: 'assistant', text: 'It is the entry.', state: 'done', stats: { tokens: 4, ttftMs: 10, decodeTokensPerSecond: 2 } });
});

test('new chat keeps earlier conversations, drops empty ones, and caps the count', () => {
  let h = apply(emptyHistory('c0', 0), { kind: 'newChat', id: 'c1', createdAt: 1 });
  assert.deepEqual(h.conversations.map((c) => c.id), ['c1']);
  for (let i = 2; i < MAX_CONVERSATIONS + 5; i++) {
    h = apply(h,
      { kind: 'turnStarted', user: user(`u${i}`, `q${i}`), assistant: answer(`a${i}`) },
      { kind: 'newChat', id: `c${i}`, createdAt: i });
  }
  assert.equal(h.conversations.length, MAX_CONVERSATIONS);
  assert.equal(h.activeId, `c${MAX_CONVERSATIONS + 4}`);
  assert.equal(activeConversation(h).entries.length, 0);
  h = apply(h, { kind: 'switchChat', id: 'c10' });
  assert.equal(conversationTitle(activeConversation(h)), 'q11'); // c10 was active when q11 was asked
  assert.equal(apply(h, { kind: 'switchChat', id: 'nope' }).activeId, 'c10');
  const cleared = apply(h, { kind: 'clear', id: 'z', createdAt: 9 });
  assert.deepEqual(cleared, emptyHistory('z', 9));
});

test('restore marks interrupted answers stopped and rejects malformed state', () => {
  const h = apply(emptyHistory('c1', 1), { kind: 'turnStarted', user: user('u1', 'q'), assistant: answer('a1') });
  const restored = restoreHistory(JSON.parse(JSON.stringify(h)), 'fresh', 5);
  assert.equal(activeConversation(restored).entries[1].state, 'stopped');
  for (const bad of [null, 3, { version: 2 }, { ...h, activeId: 'missing' }, { ...h, conversations: [{ id: 'c1', createdAt: 1, entries: [{ id: 1 }] }] }]) {
    assert.deepEqual(restoreHistory(bad, 'fresh', 5), emptyHistory('fresh', 5));
  }
});

test('only answered turns go to the engine as history', () => {
  const h = apply(
    emptyHistory('c1', 1),
    { kind: 'turnStarted', user: user('u1', 'first'), assistant: answer('a1') },
    { kind: 'delta', id: 'a1', text: 'one' },
    { kind: 'turnEnded', id: 'a1', state: 'done' },
    { kind: 'turnStarted', user: user('u2', 'failed'), assistant: answer('a2') },
    { kind: 'turnEnded', id: 'a2', state: 'error', error: 'engine crashed' },
    { kind: 'turnStarted', user: user('u3', 'stopped early'), assistant: answer('a3') },
    { kind: 'delta', id: 'a3', text: 'par' },
    { kind: 'turnEnded', id: 'a3', state: 'stopped' },
  );
  assert.deepEqual(turnsForEngine(h), [
    { role: 'user', content: 'first' }, { role: 'assistant', content: 'one' },
    { role: 'user', content: 'stopped early' }, { role: 'assistant', content: 'par' },
  ]);
});

test('titles come from the first question, without markdown and shortened', () => {
  const h = apply(emptyHistory('c1', 1), { kind: 'turnStarted', user: user('u', '\n## Explain `' + 'x'.repeat(80) + '`'), assistant: answer('a') });
  const title = conversationTitle(activeConversation(h), 20);
  assert.equal(title.length, 20);
  assert.ok(title.startsWith('Explain xxx'));
  assert.ok(title.endsWith('…'));
});
