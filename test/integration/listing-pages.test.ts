/**
 * Listing page by page on Swift through the counting proxy: a directory listing asks S3 for its
 * next page while the client is still being sent the current one, costs no request more when read
 * to the end, and a reader that stops early leaves nothing running and nothing unhandled.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { pino } from 'pino';
import type { SwiftS3 } from '../../dev/swift.ts';
import type { FileInfo } from '../../src/storage/storage.ts';
import { loadConfig } from '../../src/config/load.ts';
import { NotFoundError, StorageError, WrongTypeError } from '../../src/storage/errors.ts';
import { listPages, type ListRequest } from '../../src/storage/s3/lister.ts';
import { MtimeCache } from '../../src/storage/s3/mtime-cache.ts';
import { S3Storage } from '../../src/storage/s3/s3-storage.ts';
import { UploadRegistry } from '../../src/storage/s3/upload-registry.ts';
import { forEachBounded } from '../../src/storage/s3/bounded.ts';
import { createBucket, s3ClientFor, s3Env, s3Server } from '../support/harness.ts';
import { startS3LatencyProxy, type S3LatencyProxy } from '../support/s3-latency-proxy.ts';

let s3: SwiftS3;
let proxy: S3LatencyProxy;
let bucket: string;
let direct: S3Client;
let viaProxy: S3Client;

/** Seven files a, b, ... g under small/, and a file "x" beside a directory "x/" (shown once, as the file). */
const SMALL = ['a', 'b', 'c', 'd', 'e', 'f', 'g'];
/** One more than S3's biggest page. */
const BIG = 1001;

before(async () => {
  s3 = await s3Server();
  bucket = await createBucket(s3);
  direct = s3ClientFor(s3);
  proxy = await startS3LatencyProxy(s3.endpoint, { delayMs: 50 });
  viaProxy = s3ClientFor({ ...s3, endpoint: proxy.endpoint });
  const keys = [...SMALL.map((n) => `small/${n}`), 'small/x', 'small/x/inside'];
  for (let i = 0; i < BIG; i++) keys.push(`big/f${String(i).padStart(5, '0')}`);
  // A directory past the first page of big/.
  keys.push('big/zdir/inside');
  await forEachBounded(keys, 32, async (key) => {
    await direct.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: key }));
  });
});

after(async () => {
  viaProxy?.destroy();
  direct?.destroy();
  await proxy?.close();
  await s3?.stop();
});

const listsSince = (mark: number) => proxy.since(mark).filter((r) => r.kind === 'ListObjectsV2');

/** Waits (bounded) until the proxy has seen `count` listing requests since `mark`; false if it never does. */
async function sawLists(mark: number, count: number, withinMs = 3000): Promise<boolean> {
  for (let waited = 0; waited < withinMs; waited += 20) {
    if (listsSince(mark).length >= count) return true;
    await sleep(20);
  }
  return listsSince(mark).length >= count;
}

const small = (extra: Partial<ListRequest> = {}): ListRequest => ({ client: viaProxy, bucket, prefix: 'small/', context: 'list /small', maxKeys: 2, ...extra });

test('reading ahead, the next page is asked for before the reader wants it, and a full read costs no extra page', async () => {
  const mark = proxy.requests.length;
  const pages = listPages(small({ prefetch: true }));
  const names: string[] = [];
  const first = await pages.next();
  assert.ok(!first.done);
  names.push(...first.value.entries.map((e) => e.name));
  assert.ok(await sawLists(mark, 2), 'the second page was asked for while the reader held the first');
  for await (const page of pages) names.push(...page.entries.map((e) => e.name));
  assert.deepEqual(names, [...SMALL, 'x']);
  // 9 keys and one common prefix, 2 per page: 5 pages, each asked for once.
  assert.equal(listsSince(mark).length, 5);
});

test('without reading ahead, a page is asked for only when the reader wants it', async () => {
  const mark = proxy.requests.length;
  const pages = listPages(small());
  await pages.next();
  assert.equal(await sawLists(mark, 2, 400), false, 'no second page before the reader asked');
  await pages.next();
  assert.equal(listsSince(mark).length, 2);
  await pages.return(undefined);
});

test('a reader that stops early abandons the page asked for ahead: one request more at most, nothing unhandled', async () => {
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown) => unhandled.push(reason);
  process.on('unhandledRejection', onUnhandled);
  try {
    const mark = proxy.requests.length;
    const pages = listPages(small({ prefetch: true }));
    await pages.next();
    assert.ok(await sawLists(mark, 2));
    await pages.return(undefined);
    await sleep(300);
    assert.equal(listsSince(mark).length, 2);
    assert.deepEqual(unhandled, []);
  } finally {
    process.off('unhandledRejection', onUnhandled);
  }
});

test('a page that fails while read ahead fails the listing where the reader reaches it', async () => {
  const failing = s3ClientFor({ ...s3, endpoint: proxy.endpoint });
  failing.middlewareStack.add(
    (next) => async (args) => {
      if ((args.input as { ContinuationToken?: string }).ContinuationToken !== undefined) {
        throw Object.assign(new Error('We encountered an internal error. Please try again.'), { name: 'InternalError', $fault: 'server', $metadata: { httpStatusCode: 500 } });
      }
      return next(args);
    },
    { step: 'initialize', name: 'failLaterPages' },
  );
  try {
    const pages = listPages(small({ client: failing, prefetch: true }));
    const first = await pages.next();
    assert.ok(!first.done);
    assert.deepEqual(first.value.entries.map((e) => e.name), ['a', 'b']);
    // The failed page is already settled; the reader learns of it only now.
    await sleep(200);
    await assert.rejects(pages.next(), (err: unknown) => err instanceof StorageError && !(err instanceof NotFoundError) && /list \/small/.test((err as Error).message));
  } finally {
    failing.destroy();
  }
});

function storageViaProxy(clock = { now: () => Date.now() }): S3Storage {
  const config = loadConfig({ env: s3Env(s3, bucket) });
  return new S3Storage({
    clock,
    client: viaProxy,
    bucket,
    keyPrefix: '',
    config: config.s3,
    renameMode: 0,
    renameMaxObjects: 1,
    uploads: new UploadRegistry(),
    log: pino({ level: 'silent' }),
    listingMtime: 'lastModified',
    mtimeCache: new MtimeCache(),
  });
}

test('a directory listing reads its next page ahead: the second S3 page is on its way while the first is handed out', async () => {
  const storage = storageViaProxy();
  const mark = proxy.requests.length;
  const pages = storage.list('/big');
  const first = await pages.next();
  assert.ok(!first.done);
  assert.ok(await sawLists(mark, 2), 'the second page was asked for before the first was consumed');
  let count = first.value.length;
  for await (const page of pages) count += page.length;
  assert.equal(count, BIG + 1);
  assert.equal(listsSince(mark).length, 2);
});

test('an upload into a directory bigger than a page: the name is asked about once the listing did not answer for it', async () => {
  let now = Date.now();
  const storage = storageViaProxy({ now: () => now });
  // A file past the first page is found, and handed to the caller's rules.
  let mark = proxy.requests.length;
  let found: FileInfo | undefined;
  const writer = await storage.openWrite('/big/f01000', { createOrReplace: true, check: (existing) => void (found = existing) });
  await writer.abort();
  assert.equal(found?.size, 'big/f01000'.length);
  // The parent's lookup beside the directory's first page (which says it does not fit), then the name.
  assert.equal(listsSince(mark).length, 3);
  // A directory past the first page is refused as one.
  mark = proxy.requests.length;
  await assert.rejects(storage.openWrite('/big/zdir', { createOrReplace: true }), WrongTypeError);
  // The directory is remembered as too big to hold for a while, and as seen: the name alone.
  assert.equal(listsSince(mark).length, 1);
  // Well after a listing's 5 s, no page of it is read again for an upload: the parent's lookup
  // (seen 5 s only) and the name.
  now += 30_000;
  mark = proxy.requests.length;
  await (await storage.openWrite('/big/f00001', { createOrReplace: true })).abort();
  const prefixes = listsSince(mark).map((r) => new URL(r.path, 'http://s3.invalid').searchParams.get('prefix'));
  assert.deepEqual(prefixes.sort(), ['big', 'big/f00001']);
});
