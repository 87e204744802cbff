import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseWebviewMessage } from '../../../src/features/chat/webview-message';

test('well-formed webview messages pass with only their own fields', () => {
  assert.deepEqual(parseWebviewMessage({ type: 'ask', question: 'why?', extra: 1 }), { type: 'ask', question: 'why?' });
  assert.deepEqual(parseWebviewMessage({ type: 'stop' }), { type: 'stop' });
  assert.deepEqual(parseWebviewMessage({ type: 'openFile', path: 'src/a.ts', line: 3 }), { type: 'openFile', path: 'src/a.ts', line: 3, endLine: undefined, column: undefined });
  assert.deepEqual(parseWebviewMessage({ type: 'resolvePaths', paths: ['a', 'b'] }), { type: 'resolvePaths', paths: ['a', 'b'] });
  assert.deepEqual(parseWebviewMessage({ type: 'openExternal', url: 'https://example.com/x' }), { type: 'openExternal', url: 'https://example.com/x' });
});

test('ill-formed webview messages are refused with the reason', () => {
  assert.equal(parseWebviewMessage(null), 'not an object');
  assert.equal(parseWebviewMessage('ask'), 'not an object');
  assert.equal(parseWebviewMessage({ type: 'ask' }), 'ask: question must be a string');
  assert.equal(parseWebviewMessage({ type: 'ask', question: { toString: 'x' } }), 'ask: question must be a string');
  assert.equal(parseWebviewMessage({ type: 'openFile', path: 'a.ts', line: -1 }), 'openFile: line, endLine and column must be whole numbers ≥ 1');
  assert.equal(parseWebviewMessage({ type: 'openFile', path: 'a.ts', line: '3' }), 'openFile: line, endLine and column must be whole numbers ≥ 1');
  assert.equal(parseWebviewMessage({ type: 'openFile' }), 'openFile: path must be a string');
  assert.equal(parseWebviewMessage({ type: 'resolvePaths', paths: [1] }), 'resolvePaths: paths must be at most 200 strings');
  assert.equal(parseWebviewMessage({ type: 'resolvePaths', paths: Array.from({ length: 201 }, () => 'a') }), 'resolvePaths: paths must be at most 200 strings');
  assert.equal(parseWebviewMessage({ type: 'openExternal', url: 'file:///etc/passwd' }), 'openExternal: url must be an http(s) address');
  assert.equal(parseWebviewMessage({ type: 'copy', text: 5 }), 'copy: text must be a string');
  assert.equal(parseWebviewMessage({ type: 'runCommand', command: 'x' }), 'unknown message type "runCommand"');
});
