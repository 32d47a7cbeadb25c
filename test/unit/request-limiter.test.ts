/**
 * The per-session and per-user caps on storage operations (src/storage/s3/request-limiter.ts),
 * over MemoryStorage with a hook that holds operations until released: no timing, only counts.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { MemoryBucket, MemoryStorage } from '../../src/storage/memory/memory-storage.ts';
import { RequestLimiter, Semaphore } from '../../src/storage/s3/request-limiter.ts';
import type { Storage } from '../../src/storage/storage.ts';

/** A storage whose stat() waits until release() is called, counting how many are in flight. */
function heldStorage(): { storage: Storage; inFlight(): number; releaseAll(): void } {
  const inner = new MemoryStorage({ bucket: new MemoryBucket(), keyPrefix: 'u/' });
  let running = 0;
  const waiting: (() => void)[] = [];
  const storage = Object.create(inner) as Storage;
  storage.stat = async (path: string) => {
    running++;
    await new Promise<void>((resolve) => waiting.push(resolve));
    running--;
    return inner.stat(path);
  };
  return {
    storage,
    inFlight: () => running,
    releaseAll: () => {
      for (const w of waiting.splice(0)) w();
    },
  };
}

const tick = () => new Promise((resolve) => setImmediate(resolve));

describe('RequestLimiter', () => {
  test('one session never has more than s3.maxRequestsPerSession operations in flight; the rest wait in order', async () => {
    const waits: string[] = [];
    const limiter = new RequestLimiter({ perSession: 3, perUser: 100, onWait: (scope) => waits.push(scope) });
    const held = heldStorage();
    const s = limiter.forSession('alice', held.storage);
    const all = Array.from({ length: 10 }, () => s.stat('/').catch(() => undefined));
    await tick();
    assert.equal(held.inFlight(), 3);
    assert.equal(waits.filter((w) => w === 'session').length, 7);
    for (let i = 0; i < 4 && held.inFlight() > 0; i++) {
      held.releaseAll();
      await tick();
      await tick();
      assert.ok(held.inFlight() <= 3);
    }
    held.releaseAll();
    await Promise.all(all);
  });

  test("a flooding session leaves room for another session and for another user; one user's sessions share its cap", async () => {
    const limiter = new RequestLimiter({ perSession: 2, perUser: 3 });
    const held = heldStorage();
    const flood = limiter.forSession('mallory', held.storage);
    const second = limiter.forSession('mallory', held.storage);
    const bob = limiter.forSession('bob', held.storage);
    const pending = [...Array.from({ length: 50 }, () => flood.stat('/')), second.stat('/'), second.stat('/'), bob.stat('/')].map((p) => p.catch(() => undefined));
    await tick();
    // mallory: 2 (flood) + 1 (second, user cap 3); bob: 1.
    assert.equal(held.inFlight(), 4);
    for (let i = 0; i < 60 && held.inFlight() > 0; i++) {
      held.releaseAll();
      await tick();
    }
    await Promise.all(pending);
  });

  test('Semaphore hands a released slot to the first waiter', async () => {
    const sem = new Semaphore(1);
    const order: number[] = [];
    await sem.acquire();
    const a = sem.acquire().then(() => order.push(1));
    const b = sem.acquire().then(() => order.push(2));
    assert.equal(sem.waiting, 2);
    sem.release();
    await a;
    sem.release();
    await b;
    assert.deepEqual(order, [1, 2]);
  });
});
