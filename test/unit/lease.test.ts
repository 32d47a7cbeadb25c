/**
 * The status-writer lease (src/kube/lease.ts) against an in-memory Lease with the API server's
 * optimistic concurrency (409 on a stale resourceVersion), with a controlled clock: no test waits.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { LeaseConflictError, LeaseElector, microTime, type LeaseApi, type LeaseClock, type LeaseRecord } from '../../src/kube/lease.ts';

/** One Lease object, as the API server keeps it. */
class MemoryLease {
  record: LeaseRecord | undefined;
  #rv = 1;
  failing = false;
  writes = 0;

  api(): LeaseApi {
    return {
      get: async () => {
        if (this.failing) throw new Error('connection refused');
        return this.record ? { ...this.record } : undefined;
      },
      create: async (r) => {
        if (this.failing) throw new Error('connection refused');
        if (this.record) throw new LeaseConflictError('exists');
        this.writes++;
        this.record = { ...r, resourceVersion: String(++this.#rv) };
        return { ...this.record };
      },
      replace: async (r) => {
        if (this.failing) throw new Error('connection refused');
        if (!this.record || r.resourceVersion !== this.record.resourceVersion) throw new LeaseConflictError('stale');
        this.writes++;
        this.record = { ...r, resourceVersion: String(++this.#rv) };
        return { ...this.record };
      },
    };
  }
}

/** A clock whose time moves only when the test says so; timers fire as time passes. */
class ManualClock implements LeaseClock {
  #now = Date.parse('2025-01-01T00:00:00Z');
  #timers = new Map<number, { at: number; fn: () => void }>();
  #next = 1;
  now(): number {
    return this.#now;
  }
  setTimeout(fn: () => void, ms: number): unknown {
    const id = this.#next++;
    this.#timers.set(id, { at: this.#now + ms, fn });
    return id;
  }
  clearTimeout(handle: unknown): void {
    this.#timers.delete(handle as number);
  }
  /** Moves time forward, firing due timers in order and letting their promises settle. */
  async advance(ms: number): Promise<void> {
    const end = this.#now + ms;
    for (;;) {
      const due = [...this.#timers.entries()].filter(([, t]) => t.at <= end).sort((a, b) => a[1].at - b[1].at)[0];
      if (!due) break;
      this.#timers.delete(due[0]);
      this.#now = due[1].at;
      due[1].fn();
      await settle();
    }
    this.#now = end;
    await settle();
  }
}

async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await Promise.resolve();
}

const quiet = { info: () => {}, warn: () => {} };

function elector(lease: MemoryLease, clock: ManualClock, identity: string, changes: boolean[] = []) {
  return new LeaseElector({ api: lease.api(), identity, log: quiet, clock, onLeadingChange: (l) => changes.push(l) });
}

describe('LeaseElector', () => {
  test('the first candidate creates the Lease and leads; the second does not', async () => {
    const lease = new MemoryLease();
    const clock = new ManualClock();
    const a = elector(lease, clock, 'a');
    const b = elector(lease, clock, 'b');
    await a.tryAcquireOrRenew();
    await b.tryAcquireOrRenew();
    assert.equal(a.leading, true);
    assert.equal(b.leading, false);
    assert.equal(lease.record?.holderIdentity, 'a');
    assert.equal(lease.record?.leaseDurationSeconds, 15);
    assert.equal(lease.record?.leaseTransitions, 0);
    assert.match(lease.record?.renewTime ?? '', /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/, 'MicroTime has six fractional digits');
  });

  test('a renewing leader keeps the Lease; a stopped one loses it after leaseDuration, not before', async () => {
    const lease = new MemoryLease();
    const clock = new ManualClock();
    const a = elector(lease, clock, 'a');
    const b = elector(lease, clock, 'b');
    await a.tryAcquireOrRenew();
    for (let i = 0; i < 12; i++) {
      await clock.advance(5_000);
      await a.tryAcquireOrRenew();
      await b.tryAcquireOrRenew();
      assert.equal(b.leading, false, `b took over at ${i * 5} s while a renewed`);
    }
    // a crashes: it neither renews nor releases. b saw the last renewal just now.
    await clock.advance(14_000);
    await b.tryAcquireOrRenew();
    assert.equal(b.leading, false, 'taken over before leaseDuration passed');
    await clock.advance(1_000);
    await b.tryAcquireOrRenew();
    assert.equal(b.leading, true);
    assert.equal(lease.record?.holderIdentity, 'b');
    assert.equal(lease.record?.leaseTransitions, 1);
  });

  test('expiry is judged by the local clock, not by renewTime (clock skew between nodes)', async () => {
    const lease = new MemoryLease();
    const clock = new ManualClock();
    // Written by a node whose clock is an hour behind: by renewTime it expired long ago.
    lease.record = { holderIdentity: 'skewed', leaseDurationSeconds: 15, renewTime: microTime(clock.now() - 3_600_000), leaseTransitions: 3, resourceVersion: '1' };
    const b = elector(lease, clock, 'b');
    await b.tryAcquireOrRenew();
    assert.equal(b.leading, false, 'a lease seen for the first time is valid for a full leaseDuration');
    await clock.advance(15_000);
    await b.tryAcquireOrRenew();
    assert.equal(b.leading, true);
    assert.equal(lease.record?.leaseTransitions, 4);
  });

  test('of two candidates racing for an expired Lease exactly one wins', async () => {
    const lease = new MemoryLease();
    const clock = new ManualClock();
    lease.record = { holderIdentity: 'gone', leaseDurationSeconds: 15, leaseTransitions: 0, resourceVersion: '1' };
    const b = elector(lease, clock, 'b');
    const c = elector(lease, clock, 'c');
    await Promise.all([b.tryAcquireOrRenew(), c.tryAcquireOrRenew()]);
    await clock.advance(15_000);
    await Promise.all([b.tryAcquireOrRenew(), c.tryAcquireOrRenew()]);
    assert.equal([b.leading, c.leading].filter(Boolean).length, 1);
    assert.equal(lease.record?.holderIdentity, b.leading ? 'b' : 'c');
  });

  test('a leader that cannot renew steps down after renewDeadline, before others may take over', async () => {
    const lease = new MemoryLease();
    const clock = new ManualClock();
    const changes: boolean[] = [];
    const a = elector(lease, clock, 'a', changes);
    await a.tryAcquireOrRenew();
    lease.failing = true;
    await clock.advance(5_000);
    await a.tryAcquireOrRenew();
    assert.equal(a.leading, true, 'one failed renewal is tolerated');
    await clock.advance(5_000);
    await a.tryAcquireOrRenew();
    assert.equal(a.leading, false, 'still leading 10 s after the last renewal');
    assert.deepEqual(changes, [true, false]);
    lease.failing = false;
    await a.tryAcquireOrRenew();
    assert.equal(a.leading, true, 'the Lease still names it, so it renews');
  });

  test('stop() releases the Lease so another replica takes over at once', async () => {
    const lease = new MemoryLease();
    const clock = new ManualClock();
    const a = elector(lease, clock, 'a');
    const b = elector(lease, clock, 'b');
    await a.tryAcquireOrRenew();
    await b.tryAcquireOrRenew();
    await a.stop();
    assert.equal(a.leading, false);
    assert.equal(lease.record?.holderIdentity, '');
    await b.tryAcquireOrRenew();
    assert.equal(b.leading, true);
  });

  test('start() renews on the interval and a follower retries on it, driven by the injected clock', async () => {
    const lease = new MemoryLease();
    const clock = new ManualClock();
    const a = elector(lease, clock, 'a');
    const b = elector(lease, clock, 'b');
    a.start();
    await settle();
    b.start();
    await settle();
    assert.equal(a.leading, true);
    const writesBefore = lease.writes;
    await clock.advance(20_000);
    assert.equal(lease.writes - writesBefore, 4, 'one renewal per 5 s');
    assert.equal(b.leading, false);
    // a hangs (its timers stop firing, as in a frozen process): b takes over within lease + interval.
    await a.stop().catch(() => {});
    lease.record = { ...(lease.record as LeaseRecord), holderIdentity: 'a' }; // undo the release: a crash does not release
    await clock.advance(25_000);
    assert.equal(b.leading, true);
    await b.stop();
  });
});
