/**
 * bcrypt on worker threads (src/auth/bcrypt-pool.ts): right answers, work kept off the main
 * thread, a dying worker answered as a failed check and replaced, and a clean close.
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import bcrypt from 'bcryptjs';
import { BcryptPool } from '../../src/auth/bcrypt-pool.ts';
import { PasswordVerifier } from '../../src/auth/verifier.ts';

// Cost 8 keeps the test quick; the work is the same kind at any cost.
const HASH = bcrypt.hashSync('secret', 8);
const pools: BcryptPool[] = [];
function pool(size: number, workerUrl?: URL): BcryptPool {
  const p = new BcryptPool({ size, ...(workerUrl ? { workerUrl } : {}) });
  pools.push(p);
  return p;
}
after(() => Promise.all(pools.map((p) => p.close())));

describe('BcryptPool', () => {
  test('compares and hashes like bcryptjs, starting workers only when needed and at most `size`', async () => {
    const p = pool(2);
    assert.equal(p.workers, 0);
    const results = await Promise.all([p.compare('secret', HASH), p.compare('wrong', HASH), p.compare('secret', HASH), p.compare('x', 'not a hash')]);
    assert.deepEqual(results, [true, false, true, false]);
    assert.equal(p.workers, 2);
    const made = await p.hash('other', 4);
    assert.match(made, /^\$2[aby]\$04\$/);
    assert.equal(bcrypt.compareSync('other', made), true);
  });

  test('the main thread stays free while the workers hash', async () => {
    const p = pool(2);
    await p.compare('warm-up', HASH);
    const slow = bcrypt.hashSync('secret', 11);
    // CPU time of this thread, not wall time: a loaded machine stretches the wall clock of both
    // sides alike, but only work done on this thread adds to its CPU time.
    const mainThreadMs = () => {
      const { user, system } = process.threadCpuUsage();
      return (user + system) / 1000;
    };
    let start = mainThreadMs();
    bcrypt.compareSync('secret', slow);
    const oneCheckHere = mainThreadMs() - start;
    start = mainThreadMs();
    assert.deepEqual(await Promise.all([p.compare('secret', slow), p.compare('wrong', slow)]), [true, false]);
    const twoChecksOnPool = mainThreadMs() - start;
    assert.ok(
      twoChecksOnPool < oneCheckHere / 4,
      `two checks on the pool took ${twoChecksOnPool.toFixed(1)} ms of this thread's CPU; one check here takes ${oneCheckHere.toFixed(1)} ms`,
    );
  });

  test('a worker that dies answers its check as failed, and a new worker takes the next one', async () => {
    const p = pool(1, new URL('../fixtures/crashing-bcrypt-worker.ts', import.meta.url));
    assert.equal(await p.compare('crash', HASH), false);
    assert.equal(p.crashes, 1);
    assert.equal(await p.compare('throw', HASH), false);
    assert.equal(p.crashes, 2);
    assert.equal(await p.compare('secret', HASH), true);
    await assert.rejects(p.hash('crash', 4), /exited/);
  });

  test('close terminates the workers; later checks fail without hanging', async () => {
    const p = pool(2);
    assert.equal(await p.compare('secret', HASH), true);
    await p.close();
    assert.equal(p.workers, 0);
    assert.equal(await p.compare('secret', HASH), false);
  });

  test('the verifier checks bcrypt users and makes its same-cost dummy on the pool', async () => {
    const p = pool(2);
    const verifier = new PasswordVerifier({ concurrency: 2, queueLimit: 8, knownHashes: () => [HASH], bcrypt: p });
    assert.equal(await verifier.check({ password: 'secret', hash: HASH }), 'ok');
    assert.equal(await verifier.check({ password: 'nope', hash: HASH }), 'wrong');
    // An unknown user: the dummy has the users' algorithm and cost, made and checked by the workers.
    assert.equal(await verifier.check({ password: 'secret', hash: undefined }), 'wrong');
    assert.ok(p.workers >= 1);
    await verifier.close(); // not the owner: the pool stays up
    assert.equal(await p.compare('secret', HASH), true);
  });
});
