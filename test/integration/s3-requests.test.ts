/**
 * S3 requests per SFTP operation (issue 10, docs/adr/0018): the server on Swift with the counting
 * proxy in front, one SFTP operation at a time from ssh2's client, and the exact requests it made,
 * by S3 operation. Each request is a round trip of 20-50 ms on real S3 (and a line on the bill), so
 * a lookup that comes back is a regression even when every answer is still right.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import ssh2 from 'ssh2';
import type { SwiftS3 } from '../../dev/swift.ts';
import { createBucket, makeClientKey, s3ClientFor, s3Server, startTestServer, type TestServer } from '../support/harness.ts';
import { countByKind, formatCounts, startS3LatencyProxy, type S3LatencyProxy } from '../support/s3-latency-proxy.ts';
import { FLAGS, SftpClient, statusOf } from '../support/sftp-client.ts';

const NEW_FILE = FLAGS.WRITE | FLAGS.CREAT | FLAGS.TRUNC;
/** SSH_FX_NO_SUCH_FILE, SSH_FX_FAILURE. */
const NO_SUCH_FILE = 2;
const FAILURE = 4;

let s3: SwiftS3;
let proxy: S3LatencyProxy;
let server: TestServer;
let dir: string;
let client: ssh2.Client;
let sftp: SftpClient;
const body = randomBytes(4096);

before(async () => {
  s3 = await s3Server();
  const bucket = await createBucket(s3);
  proxy = await startS3LatencyProxy(s3.endpoint, { delayMs: 0 });
  dir = await mkdtemp(join(tmpdir(), 's3sftp-requests-'));
  const keyFile = await makeClientKey(dir);
  server = await startTestServer({ s3: { ...s3, endpoint: proxy.endpoint }, bucket, users: [{ username: 'econ', keyFile, keyPrefix: 'econ/' }] });
  // Directories made straight in S3: the session has never seen them.
  const direct = s3ClientFor(s3);
  for (const key of ['econ/listed/', 'econ/listed/a/', 'econ/listed/b/', 'econ/batch/']) {
    await direct.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: '' }));
  }
  direct.destroy();
  client = new ssh2.Client();
  await new Promise<void>((resolve, reject) => {
    client.once('ready', () => resolve()).once('error', reject);
    void readFile(keyFile).then((privateKey) => client.connect({ host: '127.0.0.1', port: server.port, username: 'econ', privateKey, readyTimeout: 10_000 }));
  });
  sftp = new SftpClient(await new Promise((resolve, reject) => client.sftp((err, s) => (err ? reject(err) : resolve(s)))));
});

after(async () => {
  client?.end();
  await server?.stop();
  await proxy?.close();
  await s3?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** The S3 requests `work` made, by kind; requests sent after its last reply count too. */
async function counted(work: () => Promise<unknown>): Promise<Record<string, number>> {
  await sleep(50);
  const mark = proxy.requests.length;
  await work();
  await sleep(150);
  return countByKind(proxy.since(mark));
}

async function upload(path: string): Promise<void> {
  const handle = await sftp.open(path, NEW_FILE);
  await sftp.write(handle, 0, body);
  await sftp.close(handle);
}

test('a new small file: one listing of its name and the PutObject', async (t) => {
  const counts = await counted(() => upload('/new.dat'));
  t.diagnostic(formatCounts(counts));
  assert.deepEqual(counts, { ListObjectsV2: 1, PutObject: 1 });
});

test('an overwrite costs the same', async (t) => {
  const counts = await counted(() => upload('/new.dat'));
  t.diagnostic(formatCounts(counts));
  assert.deepEqual(counts, { ListObjectsV2: 1, PutObject: 1 });
});

test('a download is one GetObject: OPEN, FSTAT and READ answered from it', async (t) => {
  let size = 0;
  let data: Buffer = Buffer.alloc(0);
  const counts = await counted(async () => {
    const handle = await sftp.open('/new.dat', 'r');
    size = (await sftp.fstat(handle)).size;
    data = await sftp.read(handle, 0, 32 * 1024);
    await sftp.close(handle);
  });
  t.diagnostic(formatCounts(counts));
  assert.equal(size, body.length);
  assert.deepEqual(data, body);
  assert.deepEqual(counts, { GetObject: 1 });
});

test('a download of an empty file: the ranged GET is refused (416, as on AWS), one HEAD confirms', async (t) => {
  const handle = await sftp.open('/empty.dat', NEW_FILE);
  await sftp.close(handle);
  let size = -1;
  const counts = await counted(async () => {
    const h = await sftp.open('/empty.dat', 'r');
    size = (await sftp.fstat(h)).size;
    assert.equal((await sftp.read(h, 0, 1024)).length, 0);
    await sftp.close(h);
  });
  t.diagnostic(formatCounts(counts));
  assert.equal(size, 0);
  // No range of a 0-byte object is satisfiable: Swift answers 416 InvalidRange as AWS does.
  assert.deepEqual(counts, { GetObject: 1, HeadObject: 1 });
});

test('opening a missing file or a directory for reading: the GET, then one listing to tell which', async (t) => {
  const missing = await counted(() => statusOf(sftp.open('/none.dat', 'r')).then((s) => assert.equal(s.code, NO_SUCH_FILE)));
  t.diagnostic(`missing: ${formatCounts(missing)}`);
  assert.deepEqual(missing, { GetObject: 1, ListObjectsV2: 1 });
  const directory = await counted(() => statusOf(sftp.open('/listed', 'r')).then((s) => assert.equal(s.code, FAILURE)));
  t.diagnostic(`directory: ${formatCounts(directory)}`);
  assert.deepEqual(directory, { GetObject: 1, ListObjectsV2: 1 });
});

test('STAT of a file is one HeadObject', async (t) => {
  const counts = await counted(() => sftp.stat('/new.dat'));
  t.diagnostic(formatCounts(counts));
  assert.deepEqual(counts, { HeadObject: 1 });
});

test('RENAME of a file: source HEAD and target listing at once, then copy and delete', async (t) => {
  const counts = await counted(() => sftp.rename('/new.dat', '/renamed.dat'));
  t.diagnostic(formatCounts(counts));
  assert.deepEqual(counts, { HeadObject: 1, ListObjectsV2: 1, CopyObject: 1, DeleteObject: 1 });
});

test('posix-rename over an existing file: the overwrite permission is decided from the same target listing', async (t) => {
  await upload('/over.dat');
  await upload('/under.dat');
  const counts = await counted(() => sftp.posixRename('/over.dat', '/under.dat'));
  t.diagnostic(formatCounts(counts));
  assert.deepEqual(counts, { HeadObject: 1, ListObjectsV2: 1, CopyObject: 1, DeleteObject: 1 });
  await sftp.remove('/under.dat');
});

test('REMOVE: a HEAD (DeleteObject succeeds on missing keys) and the delete', async (t) => {
  const counts = await counted(() => sftp.remove('/renamed.dat'));
  t.diagnostic(formatCounts(counts));
  assert.deepEqual(counts, { HeadObject: 1, DeleteObject: 1 });
});

test('MKDIR: one listing of the name and the marker', async (t) => {
  const counts = await counted(() => sftp.mkdir('/made'));
  t.diagnostic(formatCounts(counts));
  assert.deepEqual(counts, { ListObjectsV2: 1, PutObject: 1 });
});

test('RMDIR of an empty directory: one listing and the delete', async (t) => {
  const counts = await counted(() => sftp.rmdir('/made'));
  t.diagnostic(formatCounts(counts));
  assert.deepEqual(counts, { ListObjectsV2: 1, DeleteObject: 1 });
});

test('OPENDIR and the first READDIR: the first page, with the file-wins HEAD beside it; again soon after: the page alone', async (t) => {
  const list = async () => {
    const handle = await sftp.opendir('/listed');
    const names = (await sftp.readdir(handle)).map((e) => e.filename).sort();
    await sftp.close(handle);
    assert.deepEqual(names, ['a', 'b']);
  };
  const first = await counted(list);
  t.diagnostic(`first: ${formatCounts(first)}`);
  assert.deepEqual(first, { ListObjectsV2: 1, HeadObject: 1 });
  const again = await counted(list);
  t.diagnostic(`again: ${formatCounts(again)}`);
  assert.deepEqual(again, { ListObjectsV2: 1 });
});

test('a batch of uploads into one directory looks its parent up once', async (t) => {
  const files = 5;
  const counts = await counted(async () => {
    for (let i = 0; i < files; i++) await upload(`/batch/f${i}.dat`);
  });
  t.diagnostic(formatCounts(counts));
  assert.deepEqual(counts, { ListObjectsV2: files + 1, PutObject: files });
});

test('a file in a directory that does not exist: both lookups, NO_SUCH_FILE, nothing stored', async (t) => {
  const counts = await counted(() => statusOf(upload('/absent/f.dat')).then((s) => assert.equal(s.code, NO_SUCH_FILE)));
  t.diagnostic(formatCounts(counts));
  assert.deepEqual(counts, { ListObjectsV2: 2 });
});
