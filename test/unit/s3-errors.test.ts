/** SDK errors become storage errors once: client-safe messages, the store's details kept for the logs. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import { Writable } from 'node:stream';
import { toStorageError } from '../../src/storage/s3/errors.ts';
import { BackendError, NotFoundError, PermissionDeniedError } from '../../src/storage/errors.ts';

/** Shaped like an @aws-sdk/client-s3 service exception. */
function sdkError(name: string, status: number, message: string): Error {
  return Object.assign(new Error(message), { name, $metadata: { httpStatusCode: status, requestId: 'tx-REQ-42' } });
}

test('NoSuchKey, AccessDenied and a 500 map to not-found, denied and a generic failure', () => {
  assert.ok(toStorageError(sdkError('NoSuchKey', 404, 'The specified key does not exist.'), 'stat /a') instanceof NotFoundError);
  assert.ok(toStorageError(sdkError('AccessDenied', 403, 'Access Denied'), 'stat /a') instanceof PermissionDeniedError);
  const failure = toStorageError(sdkError('InternalError', 500, 'We encountered an internal error at node swift-7'), 'read /a');
  assert.ok(failure instanceof BackendError);
  assert.equal(failure.message, 'read /a: storage backend error');
});

test('the SDK text stays out of the message; code, status and request id reach the log line', () => {
  const err = toStorageError(sdkError('SlowDown', 503, 'Reduce your request rate, secret-internal-host'), 'write /big.bin');
  assert.doesNotMatch(err.message, /secret-internal-host|Reduce/);
  assert.deepEqual(err.backend, { code: 'SlowDown', status: 503, requestId: 'tx-REQ-42' });
  let line = '';
  const sink = new Writable({ write: (chunk, _enc, done) => ((line += chunk), done()) });
  pino(sink).error({ err }, 'request failed');
  assert.match(line, /"requestId":"tx-REQ-42"/);
});
