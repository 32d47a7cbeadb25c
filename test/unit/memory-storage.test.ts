/**
 * MemoryStorage passes the same conformance suite as S3Storage
 * (test/integration/storage-conformance.test.ts), so the fast protocol tests
 * that run on it check the behaviour users get on S3.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MemoryBucket, MemoryStorage } from '../../src/storage/memory/memory-storage.ts';
import { listAll, storageConformance, summary, writeFile } from '../support/storage-conformance.ts';

storageConformance('MemoryStorage', async (variant = {}) => {
  const bucket = new MemoryBucket();
  // A prefix, so the suite also checks that nothing escapes a user's root.
  const storage = new MemoryStorage({
    bucket,
    keyPrefix: 'users/t/',
    renamesDirectories: variant.renamesDirectories ?? false,
    renameMaxObjects: variant.renameMaxObjects ?? 1000,
  });
  return {
    storage,
    cleanup: async () => {},
    leftoverUploads: async () => storage.leftoverUploads(),
    seed: async (paths) => {
      for (const path of paths) {
        const key = `users/t/${path.slice(1)}`;
        bucket.put(key, Buffer.from(path.endsWith('/') ? '' : path.slice(path.lastIndexOf('/') + 1)));
      }
    },
  };
});

describe('MemoryStorage specifics', () => {
  it('keeps users with different prefixes of one bucket apart', async () => {
    const bucket = new MemoryBucket();
    const alice = new MemoryStorage({ bucket, keyPrefix: 'alice/' });
    const bob = new MemoryStorage({ bucket, keyPrefix: 'bob/' });
    await writeFile(alice, '/a.txt', Buffer.from('a'));
    assert.deepEqual(summary(await listAll(alice, '/')), ['a.txt']);
    assert.deepEqual(await listAll(bob, '/'), []);
    assert.deepEqual(bucket.keys(''), ['alice/a.txt']);
  });

  it('shows a name that is both a file and a directory once, as the file', async () => {
    const bucket = new MemoryBucket();
    const storage = new MemoryStorage({ bucket, pageSize: 2 });
    for (const key of ['x', 'x-1', 'x.txt', 'x/y', 'x/']) bucket.put(key, Buffer.from('v'));
    assert.deepEqual(summary(await listAll(storage, '/')), ['x', 'x-1', 'x.txt']);
    assert.equal((await storage.stat('/x')).isDirectory, false);
  });

  it('lists the stored mtime, as stat does (as S3Storage with listing.mtime metadata)', async () => {
    let now = new Date('2020-01-01T00:00:00Z');
    const bucket = new MemoryBucket({ clock: () => now });
    const storage = new MemoryStorage({ bucket });
    await writeFile(storage, '/f', Buffer.from('f'));
    now = new Date('2021-01-01T00:00:00Z');
    await storage.setMtime('/f', new Date('1999-01-01T00:00:00Z'));
    assert.equal((await storage.stat('/f')).mtime.toISOString(), '1999-01-01T00:00:00.000Z');
    assert.equal((await listAll(storage, '/'))[0]!.mtime.toISOString(), '1999-01-01T00:00:00.000Z');
  });

  it('hides keys that cannot be SFTP names', async () => {
    const bucket = new MemoryBucket();
    const storage = new MemoryStorage({ bucket });
    for (const key of ['a//b', './c', '../d', 'ok']) bucket.put(key, Buffer.from('v'));
    assert.deepEqual(summary(await listAll(storage, '/')), ['a/', 'ok']);
  });
});
