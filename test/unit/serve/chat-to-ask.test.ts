/** Chat messages from outside as one ask: the question, its history, and where system text goes. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { askFromChat } from '../../../src/common/chat-to-ask';
import { isUserError } from '../../../src/common/errors';

test('the last user message is the question and the earlier turns its history', () => {
  assert.deepEqual(askFromChat([
    { role: 'user', content: 'hi' },
    { role: 'assistant', content: 'hello' },
    { role: 'user', content: 'where is main?' },
  ]), { question: 'where is main?', history: [{ role: 'user', content: 'hi' }, { role: 'assistant', content: 'hello' }] });
});

test('system text goes in front of the first user turn, whichever turn that is', () => {
  assert.deepEqual(askFromChat([{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Q' }]), { question: 'Be brief.\n\nQ', history: [] });
  assert.deepEqual(askFromChat([
    { role: 'system', content: 'A' },
    { role: 'user', content: 'first' },
    { role: 'system', content: 'B' },
    { role: 'assistant', content: 'ok' },
    { role: 'user', content: 'second' },
  ]), { question: 'second', history: [{ role: 'user', content: 'A\n\nB\n\nfirst' }, { role: 'assistant', content: 'ok' }] });
});

test('a chat that does not end with the user is refused', () => {
  assert.throws(() => askFromChat([{ role: 'user', content: 'q' }, { role: 'assistant', content: 'a' }]), (e: Error) => isUserError(e) && /last message/.test(e.message));
  assert.throws(() => askFromChat([{ role: 'system', content: 's' }]), (e: Error) => isUserError(e));
});
