/**
 * The listing index (docs/adr/0020, issue 10) on Swift, with the counting proxy in front: a
 * listing that HEADed a directory's files leaves an index in the bucket, and a server started
 * afterwards (a restarted pod, another replica: nothing in memory) lists the directory with one
 * ListObjectsV2 and one GetObject, reporting the times STAT reports. Files changed since are
 * HEADed. The index lives under `.s3sftp/` at the bucket root, which a user whose prefix is the
 * bucket root can neither see nor touch; a bucket that refuses it still lists correctly.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { HeadObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { pino } from 'pino';
import type ssh2 from 'ssh2';
import type { FileEntryWithStats } from 'ssh2';
import type { SwiftS3 } from '../../dev/swift.ts';
import { loadConfig } from '../../src/config/load.ts';
import { forEachBounded } from '../../src/storage/s3/bounded.ts';
import { indexKey, ListingIndexStore } from '../../src/storage/s3/listing-index.ts';
import { MtimeCache } from '../../src/storage/s3/mtime-cache.ts';
import { S3Storage } from '../../src/storage/s3/s3-storage.ts';
import { UploadRegistry } from '../../src/storage/s3/upload-registry.ts';
import { scanPrefixUsage } from '../../src/storage/s3/usage.ts';
import { createBucket, makeClientKey, s3ClientFor, s3Env, s3Server, startTestServer, type TestServer } from '../support/harness.ts';
import { countByKind, formatCounts, startS3LatencyProxy, type S3LatencyProxy } from '../support/s3-latency-proxy.ts';
import { scrape } from '../support/prometheus.ts';
import { openSftp, type SftpClient, statusOf } from '../support/sftp-client.ts';

/** SSH_FX_PERMISSION_DENIED. */
const PERMISSION_DENIED = 3;
/** Files with a stored mtime and files without one: together more than the index's 32 HEADs. */
const STORED = 40;
const PLAIN = 10;
const STORED_BASE = 1_600_000_000;

let s3: SwiftS3;
let proxy: S3LatencyProxy;
let server: TestServer | undefined;
let dir: string;
let keyFile: string;
let bucket: string;
let direct: S3Client;
let session: { client: ssh2.Client; sftp: SftpClient } | undefined;

const storedName = (i: number) => `m-${String(i).padStart(3, '0')}.txt`;
const plainName = (i: number) => `p-${String(i).padStart(3, '0')}.txt`;

before(async () => {
  s3 = await s3Server();
  bucket = await createBucket(s3);
  proxy = await startS3LatencyProxy(s3.endpoint, { delayMs: 0 });
  dir = await mkdtemp(join(tmpdir(), 's3sftp-lindex-'));
  keyFile = await makeClientKey(dir);
  direct = s3ClientFor(s3);
  await forEachBounded(Array.from({ length: STORED + PLAIN }, (_, i) => i), 16, async (i) => {
    const stored = i < STORED;
    await direct.send(
      new PutObjectCommand({
        Bucket: bucket,
        Key: `big/${stored ? storedName(i) : plainName(i - STORED)}`,
        Body: `file ${i}`,
        ...(stored ? { Metadata: { mtime: String(STORED_BASE + i) } } : {}),
      }),
    );
  });
  // An index records versions a second older than the listing that writes it (by S3's clock).
  await sleep(2500);
});

after(async () => {
  session?.client.end();
  await server?.stop();
  direct?.destroy();
  await proxy?.close();
  await s3?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** A fresh server (nothing in memory, as after a restart or on another replica) and a session on it. */
async function restart(): Promise<SftpClient> {
  session?.client.end();
  await server?.stop();
  server = await startTestServer({ s3: { ...s3, endpoint: proxy.endpoint }, bucket, users: [{ username: 'root', keyFile, keyPrefix: '' }] });
  session = await openSftp(server.port, 'root', keyFile, 20_000);
  const sftp = session.sftp;
  return sftp;
}

/** The requests `work` made, with their paths; requests sent after its last reply count too. */
async function counted(work: () => Promise<unknown>) {
  await sleep(50);
  const mark = proxy.requests.length;
  await work();
  await sleep(200);
  const requests = proxy.since(mark);
  return { counts: countByKind(requests), requests };
}

/** What STAT reports for a file, from S3 itself: the stored mtime, else Last-Modified (seconds). */
async function truth(key: string): Promise<number> {
  const head = await direct.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
  const stored = head.Metadata?.mtime;
  return stored !== undefined ? Math.floor(Number(stored)) : Math.floor(head.LastModified!.getTime() / 1000);
}

async function assertAgreesWithStat(sftp: SftpClient, listed: Map<string, FileEntryWithStats>): Promise<void> {
  assert.equal(listed.size, STORED + PLAIN);
  for (const [name, entry] of listed) {
    assert.equal(entry.attrs.mtime, await truth(`big/${name}`), `${name}: listing vs S3`);
    assert.equal((await sftp.stat(`/big/${name}`)).mtime, entry.attrs.mtime, `${name}: listing vs STAT`);
  }
}

const indexWrites = (requests: readonly { kind: string; path: string; status: number }[]) =>
  requests.filter((r) => r.kind === 'PutObject' && r.path.includes('.s3sftp/listing-index/') && r.status === 200);

test('a cold listing HEADs each file once and leaves an index; after a restart the listing needs no HEAD of a file', async (t) => {
  let sftp = await restart();
  const cold = await counted(async () => {
    const listed = await sftp.entries('/big');
    assert.equal(listed.size, STORED + PLAIN);
  });
  t.diagnostic(`cold: ${formatCounts(cold.counts)}`);
  // The file-wins HEAD of "big" itself, and one per file; the index looked for (absent) and written.
  assert.equal(cold.counts.HeadObject, 1 + STORED + PLAIN);
  assert.equal(cold.counts.GetObject, 1);
  // The index is written after the listing, without holding up the client.
  for (let i = 0; i < 100 && indexWrites(proxy.requests).length === 0; i++) await sleep(100);
  assert.equal(indexWrites(proxy.requests).length, 1, 'one index written');
  await direct.send(new HeadObjectCommand({ Bucket: bucket, Key: indexKey('big/') }));
  const coldMetrics = await scrape(server!.server.metrics.port);
  assert.equal(coldMetrics.value('s3sftp_listing_mtimes_total', { source: 'head' }), STORED + PLAIN);
  assert.equal(coldMetrics.value('s3sftp_listing_index_objects_total', { result: 'none' }), 1);
  assert.equal(coldMetrics.value('s3sftp_listing_index_objects_total', { result: 'written' }), 1);

  sftp = await restart();
  let listed = new Map<string, FileEntryWithStats>();
  const warm = await counted(async () => {
    listed = await sftp.entries('/big');
  });
  t.diagnostic(`restarted, index present: ${formatCounts(warm.counts)}`);
  // One page, the index, and the file-wins HEAD of the directory's own name (no file under it).
  assert.deepEqual(warm.counts, { ListObjectsV2: 1, GetObject: 1, HeadObject: 1 });
  assert.deepEqual(
    warm.requests.filter((r) => r.kind === 'HeadObject').map((r) => r.path.split('?')[0]),
    [`/${bucket}/big`],
  );
  const warmMetrics = await scrape(server!.server.metrics.port);
  assert.equal(warmMetrics.value('s3sftp_listing_mtimes_total', { source: 'index' }), STORED + PLAIN);
  assert.equal(warmMetrics.value('s3sftp_listing_mtimes_total', { source: 'head' }), 0);
  assert.equal(warmMetrics.value('s3sftp_listing_index_objects_total', { result: 'found' }), 1);
  await assertAgreesWithStat(sftp, listed);
});

test('a file overwritten and one whose mtime was set after the index was written show their new times (HEADed)', async (t) => {
  let sftp = await restart();
  await direct.send(new PutObjectCommand({ Bucket: bucket, Key: `big/${plainName(0)}`, Body: 'new bytes, no stored time' }));
  await sftp.setstat(`/big/${storedName(0)}`, { atime: 1_700_000_000, mtime: 1_700_000_000 });
  sftp = await restart();
  let listed = new Map<string, FileEntryWithStats>();
  const again = await counted(async () => {
    listed = await sftp.entries('/big');
  });
  t.diagnostic(formatCounts(again.counts));
  assert.deepEqual(
    again.requests.filter((r) => r.kind === 'HeadObject').map((r) => r.path.split('?')[0]).sort(),
    [`/${bucket}/big`, `/${bucket}/big/${storedName(0)}`, `/${bucket}/big/${plainName(0)}`],
  );
  assert.equal(listed.get(storedName(0))?.attrs.mtime, 1_700_000_000);
  assert.equal(listed.get(plainName(0))?.attrs.mtime, await truth(`big/${plainName(0)}`));
  await assertAgreesWithStat(sftp, listed);
});

test('the reserved .s3sftp prefix is invisible and refused to a user whose prefix is the bucket root', async () => {
  const sftp = await restart();
  const root = await sftp.entries('/');
  assert.deepEqual([...root.keys()].sort(), ['big']);
  const inside = `/${indexKey('big/')}`;
  const refused = [
    sftp.stat('/.s3sftp'),
    sftp.stat(inside),
    sftp.opendir('/.s3sftp/listing-index'),
    sftp.open(inside, 'r'),
    sftp.put('/.s3sftp/listing-index/x.json', Buffer.from('{}')),
    sftp.mkdir('/.s3sftp/x'),
    sftp.remove(inside),
    sftp.setstat(inside, { atime: 1, mtime: 1 }),
    sftp.rename(`/big/${plainName(1)}`, '/.s3sftp/x'),
    sftp.rename(inside, '/stolen.json'),
  ];
  for (const [i, request] of refused.entries()) {
    const status = await statusOf(request);
    assert.equal(status.code, PERMISSION_DENIED, `request ${i}: ${status.message}`);
  }
  // Still there, and nothing was written beside it.
  await direct.send(new HeadObjectCommand({ Bucket: bucket, Key: indexKey('big/') }));
  assert.ok((await sftp.stat(`/big/${plainName(1)}`)).isFile(), 'the refused rename left its source');
  // A quota counts the user's files, not the server's index.
  assert.equal((await scanPrefixUsage(direct, bucket, '')).files, STORED + PLAIN);
});

test('a bucket whose index cannot be read or written still lists correctly, warning once', async () => {
  const client = s3ClientFor(s3);
  const denied: string[] = [];
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const key = (args.input as { Key?: string }).Key;
      if (key?.startsWith('.s3sftp/')) {
        denied.push(`${context.commandName} ${key}`);
        throw Object.assign(new Error('Access Denied'), { name: 'AccessDenied', Code: 'AccessDenied', $fault: 'client', $metadata: { httpStatusCode: 403 } });
      }
      return next(args);
    },
    { step: 'initialize', name: 'denyListingIndex' },
  );
  const lines: { level: number; msg: string }[] = [];
  const log = pino({ level: 'debug' }, new Writable({ write: (chunk: Buffer, _e, done) => (lines.push(JSON.parse(chunk.toString()) as { level: number; msg: string }), done()) }));
  const config = loadConfig({ env: s3Env(s3, bucket) });
  const store = new ListingIndexStore({ log });
  const storage = () =>
    new S3Storage({
      client,
      bucket,
      keyPrefix: 'big/',
      config: config.s3,
      renameMode: 0,
      renameMaxObjects: 1,
      uploads: new UploadRegistry(),
      log,
      mtimeCache: new MtimeCache(),
      listingIndex: store,
    });
  try {
    for (let round = 0; round < 2; round++) {
      const mtimes = new Map<string, number>();
      for await (const page of storage().list('/')) for (const e of page) mtimes.set(e.name, Math.floor(e.mtime.getTime() / 1000));
      assert.equal(mtimes.size, STORED + PLAIN);
      for (const [name, mtime] of mtimes) assert.equal(mtime, await truth(`big/${name}`), name);
      await sleep(200);
    }
    // Round one: the read (refused, taken as "no index") and the write (refused: the bucket is given up).
    assert.deepEqual(denied.map((d) => d.split(' ')[0]), ['GetObjectCommand', 'PutObjectCommand']);
    assert.equal(lines.filter((l) => l.level === 40 && /listing index cannot be written/.test(l.msg)).length, 1);
  } finally {
    client.destroy();
  }
});
