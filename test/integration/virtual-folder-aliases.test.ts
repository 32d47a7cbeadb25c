/**
 * Virtual folders (docs/adr/0015) over keys reached under two paths: two folders on one bucket and
 * prefix, or a folder whose prefix lies inside the home's; and the parents of a mount point, which
 * are directories whether or not the home holds them. MountedStorage over S3Storages wired as
 * src/server.ts wires a session.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { pino } from 'pino';
import type { SwiftS3 } from '../../dev/swift.ts';
import { loadConfig } from '../../src/config/load.ts';
import { ChangeLog, DirectoryPeers } from '../../src/storage/s3/directory-memory.ts';
import { DirectoryHints } from '../../src/storage/s3/directory-hints.ts';
import { MtimeCache } from '../../src/storage/s3/mtime-cache.ts';
import { S3Storage } from '../../src/storage/s3/s3-storage.ts';
import { UploadRegistry } from '../../src/storage/s3/upload-registry.ts';
import { MountedStorage } from '../../src/storage/mounts.ts';
import { createBucket, s3ClientFor, s3Env, s3Server } from '../support/harness.ts';

let s3: SwiftS3;
let bucket: string;
let direct: S3Client;

before(async () => {
  s3 = await s3Server();
  bucket = await createBucket(s3);
  direct = s3ClientFor(s3);
});
after(async () => {
  direct?.destroy();
  await s3?.stop();
});

const put = (key: string, body: string | Buffer = '') => direct.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
const keys = async (prefix: string) => ((await direct.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix }))).Contents ?? []).map((o) => o.Key);
const outcome = (p: Promise<unknown>) => p.then((v) => `succeeded ${JSON.stringify(v)}`, (e: Error) => `${e.constructor.name}: ${e.message}`);

/** As src/server.ts builds a session: one S3Storage per location, server-wide shared state. */
function session(home: string, folders: { path: string; keyPrefix: string }[]) {
  const config = loadConfig({ env: s3Env(s3, bucket) });
  const peers = new DirectoryPeers();
  const shared = { changeLog: new ChangeLog(), mtimeCache: new MtimeCache(), directoryHints: new DirectoryHints(), uploads: new UploadRegistry() };
  const make = (keyPrefix: string) =>
    new S3Storage({ client: s3ClientFor(s3), bucket, keyPrefix, storeScope: '||', directoryPeers: peers.group(`u\u0000||\u0000${bucket}`), config: config.s3, renameMode: 1, renameMaxObjects: 1000, log: pino({ level: 'silent' }), ...shared });
  return new MountedStorage({ home: make(home), mounts: folders.map((f) => ({ path: f.path, storage: make(f.keyPrefix) })) });
}

test('a move between two folders on one location onto the same file keeps the file (posix-rename)', async () => {
  const s = session('h1/', [
    { path: '/m1', keyPrefix: 'shared1/' },
    { path: '/m2', keyPrefix: 'shared1/' },
  ]);
  await put('h1/');
  await put('shared1/f', 'precious');
  const result = await outcome(s.rename('/m1/f', '/m2/f', { overwrite: true }));
  assert.deepEqual(await keys('shared1/'), ['shared1/f'], `after rename (${result}) S3 holds ${JSON.stringify(await keys('shared1/'))}`);
});

test('a move from a folder into the home directory that holds the same keys, onto the same file, keeps the file', async () => {
  const s = session('h2/', [{ path: '/in', keyPrefix: 'h2/sub/' }]);
  await put('h2/');
  await put('h2/sub/f', 'precious');
  const result = await outcome(s.rename('/in/f', '/sub/f', { overwrite: true }));
  assert.deepEqual(await keys('h2/sub/'), ['h2/sub/f'], `after rename (${result}) S3 holds ${JSON.stringify(await keys('h2/sub/'))}`);
});

test('a parent of a mount point that STAT and READDIR show as a directory takes a MKDIR and an upload', async () => {
  const s = session('h3/', [{ path: '/p/q', keyPrefix: 'elsewhere3/' }]);
  await put('h3/');
  const info = await s.stat('/p');
  assert.equal(info.isDirectory, true, '/p stats as a directory');
  const names: string[] = [];
  for await (const page of s.list('/')) for (const e of page) names.push(`${e.name}${e.isDirectory ? '/' : ''}`);
  assert.deepEqual(names, ['p/'], 'READDIR / shows p as a directory');
  const mkdir = await outcome(s.mkdir('/p/new'));
  const upload = await outcome(s.openWrite('/p/file', { requireParent: true, createOrReplace: true }).then(async (w) => { await w.write(0, Buffer.from('x')); await w.commit(); return 'written'; }));
  assert.deepEqual([mkdir, upload], ['succeeded undefined', 'succeeded "written"'], `S3 holds ${JSON.stringify(await keys('h3/'))}`);
});

test('a MKDIR two levels above a mount point makes each parent the home lacks', async () => {
  const s = session('h4/', [{ path: '/a/b/c', keyPrefix: 'elsewhere4/' }]);
  await put('h4/');
  assert.equal(await outcome(s.mkdir('/a/b/new')), 'succeeded undefined');
  assert.deepEqual((await keys('h4/')).sort(), ['h4/', 'h4/a/', 'h4/a/b/', 'h4/a/b/new/']);
  assert.equal(await outcome(s.mkdir('/nowhere/new')), 'NotFoundError: /nowhere: no such file or directory', 'elsewhere a missing parent is still refused');
});
