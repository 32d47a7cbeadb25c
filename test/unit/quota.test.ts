/**
 * QuotaStorage over MemoryStorage: usage counted at start and kept current by
 * uploads, overwrites, removes and renames; uploads that would pass a limit are
 * refused before their bytes are stored; parallel uploads share the room; a
 * re-scan picks up changes made outside. The decorator also passes the storage
 * conformance suite, so wrapping changes nothing else.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MemoryBucket, MemoryStorage } from '../../src/storage/memory/memory-storage.ts';
import { QuotaExceededError } from '../../src/storage/errors.ts';
import { QuotaStorage, ScanSlots, UsageTracker, UsageTrackers, walkUsage, type QuotaLimits } from '../../src/storage/quota.ts';
import { toStatus, STATUS } from '../../src/sftp/status.ts';
import { toScpError } from '../../src/scp/errors.ts';
import { storageConformance, writeFile } from '../support/storage-conformance.ts';

function setup(limits: QuotaLimits, seed: Record<string, string> = {}) {
  const bucket = new MemoryBucket();
  for (const [key, body] of Object.entries(seed)) bucket.put(`u/${key}`, Buffer.from(body));
  const inner = new MemoryStorage({ bucket, keyPrefix: 'u/' });
  const tracker = new UsageTracker({ scan: walkUsage(inner), rescanIntervalMs: 0 });
  const storage = new QuotaStorage({ storage: inner, tracker, limits });
  return { bucket, inner, tracker, storage };
}

storageConformance('QuotaStorage(MemoryStorage)', async (variant = {}) => {
  const bucket = new MemoryBucket();
  const inner = new MemoryStorage({ bucket, keyPrefix: 'q/', renamesDirectories: variant.renamesDirectories ?? false, renameMaxObjects: variant.renameMaxObjects ?? 1000 });
  const storage = new QuotaStorage({ storage: inner, tracker: new UsageTracker({ scan: walkUsage(inner), rescanIntervalMs: 0 }), limits: { maxBytes: 2 ** 40, maxFiles: 1e6 } });
  return {
    storage,
    cleanup: async () => {},
    leftoverUploads: async () => inner.leftoverUploads(),
    seed: async (paths) => {
      for (const path of paths) bucket.put(`q/${path.slice(1)}`, Buffer.from(path.endsWith('/') ? '' : path.slice(path.lastIndexOf('/') + 1)));
    },
  };
});

describe('quota', () => {
  it('counts what is stored at start, directory markers excluded', async () => {
    const { tracker } = setup({ maxBytes: 100 }, { 'a.txt': '12345', 'd/': '', 'd/b.txt': '123' });
    await tracker.ready();
    assert.deepEqual(tracker.usage, { bytes: 8, files: 2 });
  });

  it('refuses the write that would pass maxBytes, aborts the upload and stores nothing', async () => {
    const { storage, inner, tracker } = setup({ maxBytes: 10 }, { 'old.txt': '1234' });
    const writer = await storage.openWrite('/new.txt');
    await writer.write(0, Buffer.from('123456'));
    await assert.rejects(writer.write(6, Buffer.from('x')), (err: unknown) => err instanceof QuotaExceededError && /quota exceeded/.test(err.message));
    await writer.abort();
    await assert.rejects(inner.stat('/new.txt'));
    assert.deepEqual(inner.leftoverUploads(), []);
    assert.deepEqual(tracker.reserved, { bytes: 0, files: 0 });
    assert.deepEqual(tracker.usage, { bytes: 4, files: 1 });
  });

  it('lets a file fill the quota exactly and counts it once committed', async () => {
    const { storage, tracker } = setup({ maxBytes: 10 });
    await writeFile(storage, '/a', Buffer.alloc(10));
    assert.deepEqual(tracker.usage, { bytes: 10, files: 1 });
    await assert.rejects(writeFile(storage, '/b', Buffer.alloc(1)), QuotaExceededError);
  });

  it('refuses a new file past maxFiles at open, but allows replacing one', async () => {
    const { storage, tracker } = setup({ maxFiles: 2 }, { a: '1', b: '2' });
    await assert.rejects(storage.openWrite('/c'), (err: unknown) => err instanceof QuotaExceededError && /2 files/.test(err.message));
    await writeFile(storage, '/a', Buffer.from('longer'));
    assert.deepEqual(tracker.usage, { bytes: 7, files: 2 });
  });

  it('counts an overwrite as the difference in size', async () => {
    const { storage, tracker } = setup({ maxBytes: 10 }, { a: '12345678' });
    // 8 stored; replacing them with 10 needs only 2 more.
    await writeFile(storage, '/a', Buffer.alloc(10));
    assert.deepEqual(tracker.usage, { bytes: 10, files: 1 });
    await writeFile(storage, '/a', Buffer.alloc(3));
    assert.deepEqual(tracker.usage, { bytes: 3, files: 1 });
  });

  it('frees room on remove and on a rename that replaces a file', async () => {
    const { storage, tracker } = setup({ maxBytes: 10, maxFiles: 3 }, { a: '1234', b: '12', c: '1' });
    await tracker.ready();
    await storage.remove('/a');
    assert.deepEqual(tracker.usage, { bytes: 3, files: 2 });
    await storage.rename('/c', '/b', { overwrite: true });
    assert.deepEqual(tracker.usage, { bytes: 1, files: 1 });
    await storage.rename('/b', '/d');
    assert.deepEqual(tracker.usage, { bytes: 1, files: 1 });
  });

  it('keeps two parallel uploads from both slipping under the limit', async () => {
    const { storage, tracker } = setup({ maxBytes: 10 });
    const one = await storage.openWrite('/one');
    const two = await storage.openWrite('/two');
    await one.write(0, Buffer.alloc(6));
    await assert.rejects(two.write(0, Buffer.alloc(6)), QuotaExceededError);
    await one.commit();
    assert.deepEqual(tracker.usage, { bytes: 6, files: 1 });
    assert.deepEqual(tracker.reserved, { bytes: 0, files: 0 });
  });

  it('reserves files too: parallel opens cannot pass maxFiles', async () => {
    const { storage } = setup({ maxFiles: 1 });
    const one = await storage.openWrite('/one');
    await assert.rejects(storage.openWrite('/two'), QuotaExceededError);
    await one.abort();
    await writeFile(storage, '/two', Buffer.from('x'));
  });

  it('counts a resumed upload from the stored size', async () => {
    const { storage, tracker } = setup({ maxBytes: 10 }, { a: '123456' });
    const writer = await storage.openWrite('/a');
    await writer.continueExisting!(6);
    await writer.write(6, Buffer.alloc(4));
    await writer.commit();
    assert.deepEqual(tracker.usage, { bytes: 10, files: 1 });
  });

  it('picks up changes made outside at a re-scan', async () => {
    const { storage, bucket, tracker } = setup({ maxBytes: 10 });
    await writeFile(storage, '/a', Buffer.alloc(2));
    bucket.put('u/outside', Buffer.alloc(8));
    await writeFile(storage, '/b', Buffer.alloc(1)); // not yet seen: 3 of 10 counted
    await tracker.rescan();
    assert.deepEqual(tracker.usage, { bytes: 11, files: 3 });
    await assert.rejects(writeFile(storage, '/c', Buffer.alloc(1)), QuotaExceededError);
  });

  it('is answered as FAILURE "quota exceeded" in SFTP and as an scp error line', () => {
    const st = toStatus(new QuotaExceededError());
    assert.equal(st.code, STATUS.FAILURE);
    assert.equal(st.message, 'quota exceeded');
    assert.equal(st.internal, false);
    assert.equal(toScpError(new QuotaExceededError(), '/big.bin').message, 'scp: /big.bin: quota exceeded');
  });

  it('runs at most the configured number of scans at once', async () => {
    const slots = new ScanSlots(2);
    let running = 0;
    let peak = 0;
    const release: (() => void)[] = [];
    const scan = async () => {
      running++;
      peak = Math.max(peak, running);
      await new Promise<void>((r) => release.push(r));
      running--;
      return { bytes: 0, files: 0 };
    };
    const trackers = [1, 2, 3, 4].map(() => new UsageTracker({ scan, rescanIntervalMs: 0, slots }));
    const done = Promise.all(trackers.map((t) => t.ready()));
    for (let i = 0; i < 20 && (release.length > 0 || running > 0); i++) {
      await new Promise((r) => setImmediate(r));
      release.shift()?.();
    }
    await done;
    assert.equal(peak, 2);
  });

  it('keeps one tracker per user and reports usages for metrics and status', async () => {
    const trackers = new UsageTrackers({ rescanIntervalMs: 0, scanConcurrency: 1 });
    const scan = async () => ({ bytes: 5, files: 1 });
    const a = trackers.get('alice', 'b/alice/', scan);
    assert.equal(trackers.get('alice', 'b/alice/', scan), a);
    await a.ready();
    assert.deepEqual(trackers.usageOf('alice'), { bytes: 5, files: 1 });
    assert.deepEqual(trackers.usages(), [{ username: 'alice', usage: { bytes: 5, files: 1 } }]);
    // A moved home is counted afresh.
    assert.notEqual(trackers.get('alice', 'b/alice2/', scan), a);
    assert.equal(trackers.usageOf('alice'), undefined);
    trackers.stop();
  });
});

describe('spec.quota and spec.bandwidth in an SftpUser', () => {
  const doc = (spec: Record<string, unknown>) => ({ apiVersion: 's3sftp.io/v1alpha1', kind: 'SftpUser', metadata: { name: 'a' }, spec: { s3: { keyPrefix: 'a/' }, permissions: ['*'], ...spec } });
  const opts = { defaultBucket: 'b', source: 'test' };

  it('are read into the user; zeros mean no limit', async () => {
    const { validateSftpUser } = await import('../../src/users/sftp-user.ts');
    const r = validateSftpUser(doc({ quota: { maxBytes: 1000, maxFiles: 0 }, bandwidth: { uploadKiBps: 64 } }), opts);
    assert.ok('user' in r, JSON.stringify(r));
    assert.deepEqual(r.user.quota, { maxBytes: 1000 });
    assert.deepEqual(r.user.bandwidth, { uploadKiBps: 64 });
    const none = validateSftpUser(doc({ quota: { maxBytes: 0 } }), opts);
    assert.ok('user' in none && none.user.quota === undefined);
  });

  it('refuses negative, non-integer and misspelt limits with the fix', async () => {
    const { validateSftpUser } = await import('../../src/users/sftp-user.ts');
    const error = (spec: Record<string, unknown>) => {
      const r = validateSftpUser(doc(spec), opts);
      return 'error' in r ? r.error : '';
    };
    assert.match(error({ quota: { maxBytes: -1 } }), /spec\.quota\.maxBytes: -1 is not a whole number of at least 0/);
    assert.match(error({ quota: { maxBytes: '10GiB' } }), /spec\.quota\.maxBytes: .* e\.g\. 10737418240/);
    assert.match(error({ quota: { maxbytes: 1 } }), /did you mean maxBytes\?/);
    assert.match(error({ bandwidth: { uploadKiBps: 1.5 } }), /spec\.bandwidth\.uploadKiBps/);
    assert.match(error({ bandwidth: 'fast' }), /spec\.bandwidth: must be a mapping/);
  });

  it('a changed limit is a changed user (sessions pick it up)', async () => {
    const { validateSftpUser } = await import('../../src/users/sftp-user.ts');
    const { sameUser } = await import('../../src/users/user.ts');
    const a = validateSftpUser(doc({ quota: { maxBytes: 1 } }), opts);
    const b = validateSftpUser(doc({ quota: { maxBytes: 2 } }), opts);
    const c = validateSftpUser(doc({ quota: { maxBytes: 1 } }), opts);
    assert.ok('user' in a && 'user' in b && 'user' in c);
    assert.equal(sameUser(a.user, b.user), false);
    assert.equal(sameUser(a.user, c.user), true);
  });
});

describe('status.usage', () => {
  it('is written with the Ready condition and a changed count is a change to write', async () => {
    const { statusMatches, statusPatch } = await import('../../src/kube/sftp-user-resource.ts');
    const desired = { status: 'True' as const, reason: 'Loaded' as const, message: 'loaded', observedGeneration: 1, usage: { bytes: 10, files: 2 } };
    const resource = { metadata: { name: 'a', namespace: 'n', generation: 1 } };
    const patch = statusPatch(resource, desired, new Date(0));
    assert.deepEqual(patch.status.usage, { bytes: 10, files: 2 });
    const written = { ...resource, status: patch.status };
    assert.equal(statusMatches(written, desired), true);
    assert.equal(statusMatches(written, { ...desired, usage: { bytes: 11, files: 2 } }), false);
    // Without a count (no quota, or not counted yet) the usage already there is left alone.
    const { usage: _, ...withoutUsage } = desired;
    assert.equal(statusMatches(written, withoutUsage), true);
    assert.equal('usage' in statusPatch(resource, withoutUsage, new Date(0)).status, false);
  });

  it('trackers tell listeners after each scan', async () => {
    const trackers = new UsageTrackers({ rescanIntervalMs: 0, scanConcurrency: 1 });
    let heard = 0;
    trackers.onScanned(() => heard++);
    const t = trackers.get('bob', 'b/bob/', async () => ({ bytes: 1, files: 1 }));
    await t.ready();
    await t.rescan();
    assert.equal(heard, 2);
  });
});
