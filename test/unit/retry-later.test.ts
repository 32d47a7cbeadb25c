import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LATER_ABORT, retryLater } from '../../src/storage/s3/retry-later.ts';

test('a failed clean-up is tried again later until it succeeds', async () => {
  let calls = 0;
  const done = Promise.withResolvers<number>();
  retryLater(
    async () => {
      calls++;
      if (calls < 3) throw new Error('S3 is down');
    },
    { attempts: 5, delayMs: () => 2, onSuccess: (attempt) => done.resolve(attempt) },
  );
  assert.equal(await done.promise, 3);
  assert.equal(calls, 3);
});

test('background attempts are bounded, and the last failure says no retry follows', async () => {
  const failures: boolean[] = [];
  const gaveUp = Promise.withResolvers<void>();
  retryLater(() => Promise.reject(new Error('still down')), {
    attempts: 3,
    delayMs: () => 1,
    onFailure: (_err, _attempt, willRetry) => {
      failures.push(willRetry);
      if (!willRetry) gaveUp.resolve();
    },
  });
  await gaveUp.promise;
  assert.deepEqual(failures, [true, true, false]);
});

test('the default schedule backs off exponentially up to a cap and spans minutes, not hours', () => {
  const delays = Array.from({ length: LATER_ABORT.attempts }, (_, i) => LATER_ABORT.delayMs(i + 1));
  for (let i = 1; i < delays.length; i++) assert.ok(delays[i]! >= delays[i - 1]!);
  assert.equal(delays[0], 5_000);
  const total = delays.reduce((a, b) => a + b, 0);
  assert.ok(total > 5 * 60_000 && total < 60 * 60_000, `total ${total} ms`);
});

test('cancelling stops the remaining attempts', async () => {
  let calls = 0;
  const cancel = retryLater(async () => void calls++, { attempts: 3, delayMs: () => 20 });
  cancel();
  await new Promise((r) => setTimeout(r, 60));
  assert.equal(calls, 0);
});
