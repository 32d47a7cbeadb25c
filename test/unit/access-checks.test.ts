/** The access checks behind the SftpUser Ready condition (src/kube/access-checks.ts), with a controlled clock. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AccessChecks } from '../../src/kube/access-checks.ts';
import type { AccessCheck } from '../../src/users/access.ts';
import type { User } from '../../src/users/user.ts';

const quiet = { debug() {}, info() {}, warn() {}, error() {} };

function user(bucket: string): User {
  return { username: 'ann', disabled: false, publicKeys: [], s3: { bucket, keyPrefix: 'ann/' }, permissions: new Set(), source: 'test' };
}

function setup(answers: AccessCheck[]) {
  let now = 0;
  const calls: string[] = [];
  let results = 0;
  const checks = new AccessChecks({
    check: async (u) => {
      calls.push(u.s3.bucket);
      return answers.shift() ?? { ok: true };
    },
    onResult: () => results++,
    log: quiet,
    recheckMs: 60_000,
    now: () => now,
  });
  const settle = () => new Promise((r) => setImmediate(r));
  return { checks, calls, settle, advance: (ms: number) => (now += ms), results: () => results };
}

test('unknown until the first check answers, then the answer; a success is not checked again', async () => {
  const t = setup([{ ok: true }]);
  assert.equal(t.checks.result('ns/ann', user('b')), undefined);
  await t.settle();
  assert.equal(t.results(), 1, 'the controller is asked to rebuild');
  assert.deepEqual(t.checks.result('ns/ann', user('b')), { ok: true });
  t.advance(10 * 60_000);
  t.checks.result('ns/ann', user('b'));
  assert.deepEqual(t.calls, ['b']);
  t.checks.close();
});

test('a failure is checked again once recheckMs has passed, not before', async () => {
  const t = setup([{ ok: false, reason: 'BucketNotFound', message: 'bucket b does not exist (for user ann)' }, { ok: true }]);
  t.checks.result('ns/ann', user('b'));
  await t.settle();
  assert.equal(t.checks.result('ns/ann', user('b'))?.ok, false);
  t.advance(59_999);
  t.checks.result('ns/ann', user('b'));
  assert.equal(t.calls.length, 1);
  t.advance(1);
  assert.equal(t.checks.result('ns/ann', user('b'))?.ok, false, 'the old answer stands while the new check runs');
  await t.settle();
  assert.deepEqual(t.checks.result('ns/ann', user('b')), { ok: true });
  assert.equal(t.calls.length, 2);
  t.checks.close();
});

test('new storage settings start a new check; retain() forgets removed resources', async () => {
  const t = setup([]);
  t.checks.result('ns/ann', user('b'));
  await t.settle();
  assert.equal(t.checks.result('ns/ann', user('other')), undefined, 'a new bucket is unknown until checked');
  await t.settle();
  assert.deepEqual(t.calls, ['b', 'other']);
  t.checks.retain(new Set());
  assert.equal(t.checks.result('ns/ann', user('other')), undefined);
  t.checks.close();
});

test('a check that throws counts as StorageError with its message', async () => {
  const checks = new AccessChecks({ check: () => Promise.reject(new Error('boom')), onResult: () => {}, log: quiet, now: () => 0 });
  checks.result('ns/ann', user('b'));
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(checks.result('ns/ann', user('b')), { ok: false, reason: 'StorageError', message: 'access check failed: boom' });
  checks.close();
});

test('at most `concurrency` checks run at once; the rest wait their turn', async () => {
  let running = 0;
  let most = 0;
  const release: (() => void)[] = [];
  const keys: string[] = [];
  const checks = new AccessChecks({
    check: () => {
      running++;
      most = Math.max(most, running);
      return new Promise<AccessCheck>((resolve) =>
        release.push(() => {
          running--;
          resolve({ ok: true });
        }),
      );
    },
    onResult: (key) => keys.push(key),
    log: quiet,
    concurrency: 3,
  });
  for (let i = 0; i < 10; i++) checks.result(`ns/u${i}`, user('b'));
  const settle = () => new Promise((r) => setImmediate(r));
  for (let round = 0; round < 20 && keys.length < 10; round++) {
    assert.ok(running <= 3);
    release.splice(0).forEach((f) => f());
    await settle();
  }
  assert.equal(most, 3);
  assert.equal(keys.length, 10, 'every check ran and told its key');
  assert.deepEqual(checks.result('ns/u9', user('b')), { ok: true });
  checks.close();
});
