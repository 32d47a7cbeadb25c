/** The one back-off (src/backoff.ts) used by watches, status writes, STS and S3 retries. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Backoff, backoffDelay } from '../../src/backoff.ts';

test('without the random share the delay doubles from min and stops at max', () => {
  const policy = { minMs: 100, maxMs: 1_000, random: () => 0 };
  assert.deepEqual([1, 2, 3, 4, 5, 6].map((n) => backoffDelay(n, policy)), [100, 200, 400, 800, 1_000, 1_000]);
});

test('jitter only ever shortens a delay, by at most its share', () => {
  const policy = { minMs: 1_000, maxMs: 10_000, jitter: 0.5, random: () => 0.99 };
  assert.equal(backoffDelay(1, policy), 505);
  assert.equal(backoffDelay(10, policy), 5_050);
  assert.equal(backoffDelay(3, { ...policy, random: () => 0.5 }), 3_000);
  for (let i = 0; i < 100; i++) {
    const d = backoffDelay(4, { minMs: 1_000, maxMs: 60_000 });
    assert.ok(d <= 8_000 && d >= 6_400, `${d} is within 20% below 8 s`);
  }
});

test('a huge attempt number stays at max instead of overflowing', () => {
  assert.equal(backoffDelay(10_000, { minMs: 500, maxMs: 30_000, random: () => 0 }), 30_000);
});

test('Backoff counts failures and starts over after reset()', () => {
  const b = new Backoff({ minMs: 10, maxMs: 100, random: () => 0 });
  assert.deepEqual([b.next(), b.next(), b.next()], [10, 20, 40]);
  assert.equal(b.failures, 3);
  b.reset();
  assert.equal(b.next(), 10);
});
