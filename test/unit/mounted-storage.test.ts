/**
 * MountedStorage (virtual folders) over MemoryStorage: routing, the mount points in listings,
 * moves between storages, what is refused at a mount point, and that no path leaves a folder's
 * prefix. The conformance suite runs inside a folder and inside the home next to one.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AlreadyExistsError, NotFoundError, PermissionDeniedError, UnsupportedError, WrongTypeError } from '../../src/storage/errors.ts';
import { MemoryBucket, MemoryStorage } from '../../src/storage/memory/memory-storage.ts';
import { MountedStorage } from '../../src/storage/mounts.ts';
import { normalizePath } from '../../src/storage/paths.ts';
import type { Storage } from '../../src/storage/storage.ts';
import { listAll, readFile, storageConformance, summary, writeFile } from '../support/storage-conformance.ts';

/** The subtree of `storage` at `root`, seen as a storage of its own (so the suite can run there). */
function subtree(storage: Storage, root: string): Storage {
  const at = (p: string) => (p === '/' ? root : `${root}${p}`);
  return {
    stat: async (p) => ({ ...(await storage.stat(at(p))), ...(p === '/' ? { name: '/' } : {}) }),
    list: (p) => storage.list(at(p)),
    openRead: (p) => storage.openRead(at(p)),
    openWrite: (p, o) => storage.openWrite(at(p), o),
    mkdir: (p) => storage.mkdir(at(p)),
    remove: (p) => storage.remove(at(p)),
    rmdir: (p) => storage.rmdir(at(p)),
    rename: (a, b, o) => (a === '/' || b === '/' ? Promise.reject(new PermissionDeniedError('/: cannot rename the root directory')) : storage.rename(at(a), at(b), o)),
    setMtime: (p, t, o) => storage.setMtime(at(p), t, o),
    checksum: (p, h) => storage.checksum(at(p), h),
  };
}

interface Tree {
  storage: MountedStorage;
  homeBucket: MemoryBucket;
  inBucket: MemoryBucket;
  outBucket: MemoryBucket;
}

/** A home (users/alice/) with /inbound (its own bucket, prefix in/alice/) and /partners/acme/outbound. */
function tree(variant: { renamesDirectories?: boolean; renameMaxObjects?: number } = {}): Tree {
  const opts = { renamesDirectories: variant.renamesDirectories ?? false, renameMaxObjects: variant.renameMaxObjects ?? 1000 };
  const homeBucket = new MemoryBucket();
  const inBucket = new MemoryBucket();
  const outBucket = new MemoryBucket();
  const storage = new MountedStorage({
    home: new MemoryStorage({ bucket: homeBucket, keyPrefix: 'users/alice/', ...opts }),
    mounts: [
      { path: '/inbound', storage: new MemoryStorage({ bucket: inBucket, keyPrefix: 'in/alice/', ...opts }) },
      { path: '/partners/acme/outbound', storage: new MemoryStorage({ bucket: outBucket, keyPrefix: 'out/', ...opts }) },
    ],
  });
  return { storage, homeBucket, inBucket, outBucket };
}

storageConformance('MountedStorage, inside a folder', async (variant) => {
  const t = tree(variant);
  return { storage: subtree(t.storage, '/inbound'), cleanup: async () => {} };
});

storageConformance('MountedStorage, the home beside folders', async (variant) => {
  const t = tree(variant);
  await t.storage.mkdir('/home');
  return { storage: subtree(t.storage, '/home'), cleanup: async () => {} };
});

const text = (s: string) => Buffer.from(s);

describe('MountedStorage', () => {
  it('lists mount points (and the way to them) as directories, merged with the home', async () => {
    const { storage } = tree();
    await writeFile(storage, '/a.txt', text('home'));
    await writeFile(storage, '/partners/readme', text('r'));
    assert.deepEqual(summary(await listAll(storage, '/')), ['a.txt', 'inbound/', 'partners/']);
    assert.deepEqual(summary(await listAll(storage, '/partners')), ['acme/', 'readme']);
    assert.deepEqual(summary(await listAll(storage, '/partners/acme')), ['outbound/']);
    assert.deepEqual(await listAll(storage, '/inbound'), []);
    assert.equal((await storage.stat('/inbound')).name, 'inbound');
    assert.equal((await storage.stat('/partners/acme')).isDirectory, true);
    assert.equal((await storage.stat('/partners/acme/outbound')).isDirectory, true);
  });

  it('stores a folder\'s files in its own bucket under its own prefix', async () => {
    const { storage, homeBucket, inBucket } = tree();
    await writeFile(storage, '/inbound/sub/x.csv', text('x'));
    await writeFile(storage, '/top.csv', text('t'));
    assert.deepEqual(inBucket.keys(''), ['in/alice/sub/x.csv']);
    assert.deepEqual(homeBucket.keys(''), ['users/alice/top.csv']);
    assert.equal((await readFile(storage, '/inbound/sub/x.csv')).toString(), 'x');
    await assert.rejects(storage.stat('/sub/x.csv'), NotFoundError);
  });

  it('without homeListable, a parent of mount points lists the mount points only', async () => {
    const homeBucket = new MemoryBucket();
    const home = new MemoryStorage({ bucket: homeBucket, keyPrefix: 'h/' });
    const storage = new MountedStorage({
      home,
      homeListable: false,
      mounts: [{ path: '/out', storage: new MemoryStorage({ bucket: new MemoryBucket() }) }, { path: '/p/q', storage: new MemoryStorage({ bucket: new MemoryBucket() }) }],
    });
    await writeFile(storage, '/secret.csv', text('s'));
    await writeFile(storage, '/p/hidden', text('h'));
    assert.deepEqual(summary(await listAll(storage, '/')), ['out/', 'p/']);
    assert.deepEqual(summary(await listAll(storage, '/p')), ['q/']);
    assert.deepEqual(homeBucket.keys(''), ['h/p/hidden', 'h/secret.csv']);
  });

  it('a mount point hides a home entry of the same name', async () => {
    const { storage, homeBucket } = tree();
    homeBucket.put('users/alice/inbound', text('shadowed file'));
    homeBucket.put('users/alice/partners/acme/outbound/old', text('shadowed'));
    assert.deepEqual(summary(await listAll(storage, '/')), ['inbound/', 'partners/']);
    assert.equal((await storage.stat('/inbound')).isDirectory, true);
    assert.deepEqual(await listAll(storage, '/partners/acme/outbound'), []);
  });

  it('refuses to remove, rename, replace or overwrite a mount point or its parents', async () => {
    const { storage } = tree();
    await writeFile(storage, '/f', text('f'));
    for (const p of ['/inbound', '/partners', '/partners/acme/outbound']) {
      await assert.rejects(storage.rmdir(p), PermissionDeniedError);
      await assert.rejects(storage.remove(p), PermissionDeniedError);
      await assert.rejects(storage.rename(p, '/elsewhere'), /virtual folder/);
      await assert.rejects(storage.rename('/f', p, { overwrite: true }), PermissionDeniedError);
      await assert.rejects(storage.openWrite(p), WrongTypeError);
      await assert.rejects(storage.openRead(p), WrongTypeError);
      await assert.rejects(storage.mkdir(p), AlreadyExistsError);
    }
  });

  it('moves a file between the home and a folder (copy, then remove), keeping its mtime', async () => {
    const { storage, homeBucket, inBucket } = tree();
    const data = Buffer.alloc(3 * 1024 * 1024 + 5, 7);
    await writeFile(storage, '/big.bin', data);
    const mtime = new Date('2020-01-02T03:04:05Z');
    await storage.setMtime('/big.bin', mtime);
    await storage.rename('/big.bin', '/inbound/big.bin');
    assert.deepEqual(homeBucket.keys(''), []);
    assert.deepEqual(inBucket.keys(''), ['in/alice/big.bin']);
    assert.ok((await readFile(storage, '/inbound/big.bin')).equals(data));
    assert.equal((await storage.stat('/inbound/big.bin')).mtime.getTime(), mtime.getTime());
    await storage.rename('/inbound/big.bin', '/partners/acme/outbound/b');
    assert.deepEqual(inBucket.keys(''), []);
    assert.equal((await storage.stat('/partners/acme/outbound/b')).size, data.length);
  });

  it('a move onto an existing file needs overwrite; onto a directory is refused', async () => {
    const { storage } = tree();
    await writeFile(storage, '/a', text('new'));
    await writeFile(storage, '/inbound/a', text('old'));
    await storage.mkdir('/inbound/d');
    await assert.rejects(storage.rename('/a', '/inbound/a'), AlreadyExistsError);
    await assert.rejects(storage.rename('/a', '/inbound/d', { overwrite: true }), WrongTypeError);
    assert.equal((await readFile(storage, '/inbound/a')).toString(), 'old');
    await storage.rename('/a', '/inbound/a', { overwrite: true });
    assert.equal((await readFile(storage, '/inbound/a')).toString(), 'new');
    await assert.rejects(storage.stat('/a'), NotFoundError);
  });

  it('moves an empty directory between storages, refuses a non-empty one and leaves it whole', async () => {
    const { storage } = tree({ renamesDirectories: true });
    await storage.mkdir('/empty');
    await storage.rename('/empty', '/inbound/empty');
    assert.equal((await storage.stat('/inbound/empty')).isDirectory, true);
    await assert.rejects(storage.stat('/empty'), NotFoundError);
    await writeFile(storage, '/full/f', text('f'));
    await assert.rejects(storage.rename('/full', '/inbound/full'), (err: Error) => err instanceof UnsupportedError && /between virtual folders/.test(err.message));
    assert.equal((await readFile(storage, '/full/f')).toString(), 'f');
    await assert.rejects(storage.stat('/inbound/full'), NotFoundError);
  });

  it('renames within one folder stay in that folder\'s storage', async () => {
    const { storage, inBucket } = tree();
    await writeFile(storage, '/inbound/a', text('a'));
    await storage.rename('/inbound/a', '/inbound/b');
    assert.deepEqual(inBucket.keys(''), ['in/alice/b']);
  });

  it('hostile paths cannot leave a folder\'s prefix or reach other data', async () => {
    const { storage, homeBucket, inBucket } = tree();
    homeBucket.put('users/bob/secret', text('bob'));
    inBucket.put('in/bob/secret', text('bob'));
    inBucket.put('in/alice-other/secret', text('other'));
    await writeFile(storage, '/inbound/mine', text('m'));
    for (const raw of ['/inbound/../../bob/secret', '/inbound/../../../in/bob/secret', 'inbound/./../../in/bob/secret', '/inbound/../inbound/../../users/bob/secret', '/inbound/..%2f..%2fin/bob/secret']) {
      const path = normalizePath(raw);
      await assert.rejects(storage.stat(path), NotFoundError, `${raw} → ${path}`);
    }
    // ".." stops at the user's "/", so the most a client reaches from a folder is the home's root.
    assert.equal(normalizePath('/inbound/../../..'), '/');
    assert.deepEqual(summary(await listAll(storage, normalizePath('/inbound/..'))), ['inbound/', 'partners/']);
    assert.deepEqual(inBucket.keys('').sort(), ['in/alice-other/secret', 'in/alice/mine', 'in/bob/secret']);
  });

  it('refuses nested or malformed mounts when built', () => {
    const home = new MemoryStorage({ bucket: new MemoryBucket() });
    assert.throws(() => new MountedStorage({ home, mounts: [{ path: '/a', storage: home }, { path: '/a/b', storage: home }] }), /nested/);
    assert.throws(() => new MountedStorage({ home, mounts: [{ path: '/', storage: home }] }), /not "\/"/);
  });
});
