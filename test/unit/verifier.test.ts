/**
 * The password verifier: every outcome costs one verification against a hash of the same
 * algorithm and parameters (no timing difference between an unknown user and a wrong password),
 * and verifications run on a bounded pool with a bounded queue.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { hashParameters, PasswordVerifier } from '../../src/auth/verifier.ts';
import * as argon2 from 'argon2';
import bcrypt from 'bcryptjs';
import { verifyPassword } from '../../src/auth/password.ts';

// Cheap parameters keep the test fast; what matters is that the dummy copies them.
const bcryptHash = (plain: string, cost = 5) => bcrypt.hash(plain, cost);
const argonHash = (plain: string) => argon2.hash(plain, { type: argon2.argon2id, memoryCost: 1024, timeCost: 2, parallelism: 1 });

/** A verifier whose hashing is recorded: which hash each check ran against. */
function recording(knownHashes: string[], concurrency = 2, queueLimit = 8) {
  const calls: string[] = [];
  const verifier = new PasswordVerifier({
    concurrency,
    queueLimit,
    knownHashes: () => knownHashes,
    verify: async (plain, hash) => {
      calls.push(hash);
      return verifyPassword(plain, hash);
    },
  });
  return { verifier, calls };
}

describe('same cost for every outcome', () => {
  test('unknown, disabled and passwordless users are checked against a hash with the users\' parameters', async () => {
    const real = await bcryptHash('right');
    const { verifier, calls } = recording([real]);
    assert.equal(await verifier.check({ password: 'right', hash: real }), 'ok');
    assert.equal(await verifier.check({ password: 'wrong', hash: real }), 'wrong');
    assert.equal(await verifier.check({ password: 'right', hash: undefined }), 'wrong', 'unknown user');
    assert.equal(await verifier.check({ password: 'right', hash: real, usable: false }), 'wrong', 'disabled user, right password');
    assert.equal(await verifier.check({ password: 'x', hash: 'not-a-hash' }), 'wrong', 'malformed hash');
    // One verification per attempt, each with the same algorithm and cost.
    assert.equal(calls.length, 5);
    for (const h of calls) assert.equal(hashParameters(h), hashParameters(real), h);
    // The dummy is not the user's hash, and is made once.
    const dummies = new Set(calls.filter((h) => h !== real));
    assert.equal(dummies.size, 1);
  });

  test('argon2id users: the dummy has the same m, t and p', async () => {
    const real = await argonHash('right');
    const { verifier, calls } = recording([real]);
    assert.equal(await verifier.check({ password: 'right', hash: undefined }), 'wrong');
    assert.equal(calls.length, 1);
    assert.equal(hashParameters(calls[0] ?? ''), hashParameters(real));
  });

  test('the dummy follows the parameters most users have', async () => {
    const a = await bcryptHash('a');
    const b = await bcryptHash('b');
    const c = await argonHash('c');
    const { verifier, calls } = recording([c, a, b]);
    await verifier.check({ password: 'x', hash: undefined });
    assert.equal(hashParameters(calls[0] ?? ''), '$2b$05$');
  });

  test('measured: wrong password vs unknown user vs disabled user (printed, not asserted)', async (t) => {
    const real = await bcryptHash('right', 10);
    const verifier = new PasswordVerifier({ concurrency: 2, queueLimit: 8, knownHashes: () => [real] });
    await verifier.warm();
    const time = async (hash: string | undefined, usable = true) => {
      const samples: number[] = [];
      for (let i = 0; i < 3; i++) {
        const start = performance.now();
        await verifier.check({ password: 'guess', hash, usable });
        samples.push(performance.now() - start);
      }
      return samples.map((s) => s.toFixed(0)).join('/');
    };
    t.diagnostic(`bcrypt cost 10, ms per attempt: wrong password ${await time(real)}; unknown user ${await time(undefined)}; disabled user ${await time(real, false)}`);
  });
});

describe('bounded pool', () => {
  /** A verify whose calls wait until released, to count how many run at once. */
  function gated() {
    let running = 0;
    let peak = 0;
    const waiting: (() => void)[] = [];
    const verify = async () => {
      running++;
      peak = Math.max(peak, running);
      await new Promise<void>((r) => waiting.push(r));
      running--;
      return false;
    };
    return { verify, waiting, peak: () => peak, running: () => running };
  }

  test('at most `concurrency` verifications run; the rest queue; beyond the queue, or a quarter of it from one source, an attempt is busy at once', async () => {
    const g = gated();
    const verifier = new PasswordVerifier({ concurrency: 2, queueLimit: 8, knownHashes: () => [], verify: g.verify, makeDummy: async () => '$2b$04$' + 'a'.repeat(53) });
    await verifier.warm();
    const hash = '$2b$04$' + 'b'.repeat(53);
    const from = (source: string) => verifier.check({ password: 'p', hash, source });
    // 2 run, then 8 wait: 2 from each of 4 sources (a quarter of the queue each).
    const attempts = [from('a'), from('a'), ...['a', 'a', 'b', 'b', 'c', 'c', 'd', 'd'].map(from)];
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(verifier.load, { running: 2, queued: 8 });
    assert.equal(await from('e'), 'busy', 'the queue is full');
    for (let i = 0; i < 30 && (g.waiting.length > 0 || verifier.load.running > 0); i++) {
      g.waiting.splice(0).forEach((release) => release());
      await new Promise((r) => setImmediate(r));
    }
    assert.deepEqual(await Promise.all(attempts), Array(10).fill('wrong'));
    assert.equal(g.peak(), 2);
    assert.deepEqual(verifier.load, { running: 0, queued: 0 });
  });

  test('one source gets at most a quarter of the queue; a client that went away leaves the queue without hashing', async () => {
    const g = gated();
    let verified = 0;
    const verifier = new PasswordVerifier({
      concurrency: 1,
      queueLimit: 8,
      knownHashes: () => [],
      verify: async () => {
        verified++;
        return g.verify();
      },
    });
    const hash = '$2b$04$' + 'b'.repeat(53);
    const gone = new AbortController();
    const running = verifier.check({ password: 'p', hash, source: 'a' });
    const queued = [verifier.check({ password: 'p', hash, source: 'a', signal: gone.signal }), verifier.check({ password: 'p', hash, source: 'a' })];
    await new Promise((r) => setImmediate(r));
    assert.equal(await verifier.check({ password: 'p', hash, source: 'a' }), 'busy', 'a third waiting attempt from one source');
    const other = verifier.check({ password: 'p', hash, source: 'b' });
    await new Promise((r) => setImmediate(r));
    assert.equal(verifier.load.queued, 3, 'another source still gets in');
    gone.abort();
    assert.equal(await queued[0], 'wrong');
    assert.equal(verifier.load.queued, 2);
    for (let i = 0; i < 30 && (g.waiting.length > 0 || verifier.load.running > 0); i++) {
      g.waiting.splice(0).forEach((release) => release());
      await new Promise((r) => setImmediate(r));
    }
    await Promise.all([running, queued[1], other]);
    assert.equal(verified, 3, 'the abandoned attempt was never hashed');
  });

  test('waiting attempts are served round-robin by source: a spray from one address does not hold back another', async () => {
    const g = gated();
    const order: string[] = [];
    const verifier = new PasswordVerifier({
      concurrency: 1,
      queueLimit: 100,
      knownHashes: () => [],
      verify: async (plain, hash) => {
        order.push(plain);
        return g.verify();
      },
    });
    const hash = '$2b$04$' + 'b'.repeat(53);
    const all = [...Array.from({ length: 5 }, (_, i) => verifier.check({ password: `spray${i}`, hash, source: '198.51.100.1' }))];
    await new Promise((r) => setImmediate(r));
    all.push(verifier.check({ password: 'legit', hash, source: '203.0.113.9' }));
    for (let i = 0; i < 20 && order.length < 6; i++) {
      g.waiting.splice(0).forEach((release) => release());
      await new Promise((r) => setImmediate(r));
    }
    g.waiting.splice(0).forEach((release) => release());
    await Promise.all(all);
    assert.deepEqual(order.slice(0, 3), ['spray0', 'spray1', 'legit'], 'the other source is served after one more spray attempt');
  });
});
