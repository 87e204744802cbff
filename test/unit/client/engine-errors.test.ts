import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ErrorCodes, ResponseError } from 'vscode-jsonrpc';
import { EngineCrashedError, fromRequestError, isCancelled, userMessageOf } from '../../../src/client/engine-errors';
import { EngineErrorCode } from '../../../src/common/engine-protocol';
import { isUserError, UserError } from '../../../src/common/errors';

test('a crash message says what happened, what comes next and where to look', () => {
  assert.equal(
    new EngineCrashedError({ code: 134, signal: null }).message,
    'The engine process stopped unexpectedly (exit code 134). It will restart on your next request. See Kimi Linear logs (command "Kimi Linear: Show Logs").',
  );
  assert.match(new EngineCrashedError({ code: null, signal: 'SIGKILL' }).message, /\(signal SIGKILL\)/);
  assert.ok(isUserError(new EngineCrashedError({ code: 1, signal: null })));
});

test('engine user errors keep their message and file', () => {
  const e = fromRequestError(new ResponseError(EngineErrorCode.User, 'cannot read /m/config.json: missing', { kind: 'user', file: '/m/config.json' }));
  assert.ok(isUserError(e));
  assert.equal(e.message, 'cannot read /m/config.json: missing');
  assert.equal((e as UserError).file, '/m/config.json');
});

test('cancellation is recognised by code and by data', () => {
  assert.ok(isCancelled(fromRequestError(new ResponseError(EngineErrorCode.Cancelled, 'Cancelled.'))));
  assert.ok(isCancelled(fromRequestError(new ResponseError(ErrorCodes.InternalError, 'x', { kind: 'cancelled' }))));
});

test('internal errors become a user message that points at the log', () => {
  const e = fromRequestError(new ResponseError(ErrorCodes.InternalError, 'index out of range', { kind: 'internal', stack: 'at f' }));
  assert.ok(isUserError(e));
  assert.match(e.message, /internal error: index out of range\. See Kimi Linear logs/);
  assert.match(fromRequestError(new TypeError('boom')).message, /internal error: boom/);
});

test('a closed connection is explained, not shown as a protocol code', () => {
  const e = fromRequestError(new ResponseError(ErrorCodes.PendingResponseRejected, 'Pending response rejected since connection got disposed'));
  assert.match(e.message, /connection to the engine process closed before it answered/);
});

test('userMessageOf passes user errors through and wraps the rest', () => {
  assert.equal(userMessageOf(new UserError('pick a model folder')), 'pick a model folder');
  assert.match(userMessageOf(new Error('oops')), /^Kimi Linear failed unexpectedly: oops\./);
});
