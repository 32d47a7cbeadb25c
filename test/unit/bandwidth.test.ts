/**
 * Token buckets and the paced storage, on a controlled clock: how long each
 * read and write is made to wait, not how long anything really takes.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BandwidthLimiter, limitBandwidth, TokenBucket, type BandwidthClock } from '../../src/session/bandwidth.ts';
import { MemoryBucket, MemoryStorage } from '../../src/storage/memory/memory-storage.ts';
import { writeFile } from '../support/storage-conformance.ts';

/** A clock that only moves when someone sleeps on it: the total slept is the time the transfer took. */
function fakeClock(): BandwidthClock & { t: number } {
  const clock = {
    t: 0,
    now: () => clock.t,
    sleep: async (ms: number) => {
      clock.t += ms;
    },
  };
  return clock;
}

describe('bandwidth', () => {
  it('a bucket grants a short burst, then paces at its rate', () => {
    const clock = fakeClock();
    const bucket = new TokenBucket(1000, clock);
    assert.equal(bucket.take(100), 0); // a tenth of a second saved up
    assert.equal(bucket.take(500), 500);
    clock.t += 500;
    assert.equal(bucket.take(1000), 1000);
  });

  it('several takers of one bucket queue behind each other', () => {
    const clock = fakeClock();
    const bucket = new TokenBucket(1000, clock);
    bucket.take(100);
    const waits = [bucket.take(1000), bucket.take(1000), bucket.take(1000)];
    assert.deepEqual(waits, [1000, 2000, 3000]);
  });

  it('paces an upload and a download through storage at the user rate', async () => {
    const clock = fakeClock();
    const limiter = new BandwidthLimiter({ server: {}, clock });
    const inner = new MemoryStorage({ bucket: new MemoryBucket() });
    const storage = limitBandwidth(inner, limiter, 'alice', { uploadKiBps: 64, downloadKiBps: 32 });
    const data = Buffer.alloc(640 * 1024);
    const writer = await storage.openWrite('/f');
    for (let off = 0; off < data.length; off += 32 * 1024) await writer.write(off, data.subarray(off, off + 32 * 1024));
    await writer.commit();
    // 640 KiB at 64 KiB/s: 10 s, less the 0.1 s burst.
    assert.ok(Math.abs(clock.t - 9900) < 1, `upload took ${clock.t} ms`);
    clock.t = 0;
    const reader = await storage.openRead('/f');
    for (let off = 0; off < data.length; off += 64 * 1024) await reader.read(off, 64 * 1024);
    // A read past the end costs nothing.
    await reader.read(data.length, 64 * 1024);
    assert.ok(Math.abs(clock.t - 19900) < 1, `download took ${clock.t} ms`);
  });

  it('shares the server-wide cap between users', async () => {
    const clock = fakeClock();
    const limiter = new BandwidthLimiter({ server: { uploadKiBps: 100 }, clock });
    // No own limit, 100 KiB/s each would allow 200 KiB/s; the server caps them at 100 together.
    await Promise.all([limiter.acquire('a', undefined, 'upload', 100 * 1024), limiter.acquire('b', undefined, 'upload', 100 * 1024)]);
    assert.ok(clock.t >= 1800, `two users took ${clock.t} ms`);
  });

  it('leaves storage untouched when nothing is limited', () => {
    const limiter = new BandwidthLimiter({ server: {} });
    const inner = new MemoryStorage({ bucket: new MemoryBucket() });
    assert.equal(limitBandwidth(inner, limiter, 'alice', undefined), inner);
    assert.equal(limitBandwidth(inner, limiter, 'alice', { uploadKiBps: 0 }), inner);
  });

  it('uses new rates when the user changes', async () => {
    const clock = fakeClock();
    const limiter = new BandwidthLimiter({ server: {}, clock });
    await limiter.acquire('a', { uploadKiBps: 1 }, 'upload', 1024 + 102.4);
    assert.ok(Math.abs(clock.t - 1000) < 1);
    clock.t = 0;
    await limiter.acquire('a', { uploadKiBps: 2 }, 'upload', 2048 + 204.8);
    assert.ok(Math.abs(clock.t - 1000) < 1);
  });

  it('keeps written data intact', async () => {
    const limiter = new BandwidthLimiter({ server: {}, clock: fakeClock() });
    const inner = new MemoryStorage({ bucket: new MemoryBucket() });
    const storage = limitBandwidth(inner, limiter, 'alice', { uploadKiBps: 1 });
    await writeFile(storage, '/x', Buffer.from('hello'));
    const reader = await storage.openRead('/x');
    assert.equal((await reader.read(0, 100)).toString(), 'hello');
  });
});
