/**
 * Uploads through a temporary name (docs/adr/0017): ssh2's SFTP client plays WinSCP's sequence
 * (OPEN x.filepart, WRITE..., CLOSE, SETSTAT mtime, RENAME to x) against the real server on Swift,
 * with the counting proxy in front of Swift. With the feature the rename costs no server-side copy;
 * the first test measures what it costs without (a second server with tempSuffixes empty).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ssh2 from 'ssh2';
import type { SwiftS3 } from '../../dev/swift.ts';
import { HeadObjectCommand } from '@aws-sdk/client-s3';
import { createBucket, makeClientKey, s3ClientFor, s3Server, startTestServer, type TestServer } from '../support/harness.ts';
import { countByKind, formatCounts, startS3LatencyProxy, type CountedRequest, type S3LatencyProxy } from '../support/s3-latency-proxy.ts';
import { FLAGS, SftpClient, statusOf } from '../support/sftp-client.ts';
import { readFile } from 'node:fs/promises';

const MiB = 1024 ** 2;
const WINDOW_MS = 1000;
let s3: SwiftS3;
let proxy: S3LatencyProxy;
let server: TestServer;
let plain: TestServer;
let dir: string;
let keyFile: string;
const clients: ssh2.Client[] = [];

before(async () => {
  s3 = await s3Server();
  const bucket = await createBucket(s3);
  proxy = await startS3LatencyProxy(s3.endpoint, { delayMs: 0 });
  dir = await mkdtemp(join(tmpdir(), 's3sftp-temp-'));
  keyFile = await makeClientKey(dir);
  const env = {
    // Checksums cost a metadata copy at the end of every multipart upload; off, so the only copies are the ones at issue.
    S3SFTP_UPLOADS_CHECKSUMS: 'false',
    S3SFTP_UPLOADS_TEMPRENAMEWINDOW: `${WINDOW_MS}ms`,
  };
  server = await startTestServer({ s3: { ...s3, endpoint: proxy.endpoint }, bucket, env, users: [{ username: 'win', keyFile, keyPrefix: 'win/' }] });
  plain = await startTestServer({
    s3: { ...s3, endpoint: proxy.endpoint },
    bucket,
    env: { ...env, S3SFTP_UPLOADS_TEMPRENAMEWINDOW: '0s' },
    users: [{ username: 'old', keyFile, keyPrefix: 'old/' }],
  });
});

after(async () => {
  for (const c of clients) c.end();
  await server?.stop();
  await plain?.stop();
  await proxy?.close();
  await s3?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function sftp(port: number, username: string): Promise<SftpClient> {
  const privateKey = await readFile(keyFile);
  const client = new ssh2.Client();
  clients.push(client);
  await new Promise<void>((resolve, reject) => {
    client.once('ready', () => resolve()).once('error', reject);
    client.connect({ host: '127.0.0.1', port, username, privateKey, readyTimeout: 10_000 });
  });
  return new SftpClient(await new Promise((resolve, reject) => client.sftp((err, s) => (err ? reject(err) : resolve(s)))));
}


/** WinSCP's upload: OPEN name.filepart, WRITE in 32 KiB requests, CLOSE (and the rest is up to the test). */
async function upload(client: SftpClient, path: string, data: Buffer): Promise<void> {
  const handle = await client.open(path, FLAGS.WRITE | FLAGS.CREAT | FLAGS.TRUNC);
  const chunk = 32 * 1024;
  const inFlight: Promise<void>[] = [];
  for (let offset = 0; offset < data.length; offset += chunk) {
    inFlight.push(client.write(handle, offset, data.subarray(offset, offset + chunk)));
    if (inFlight.length >= 64) await inFlight.shift();
  }
  await Promise.all(inFlight);
  await client.close(handle);
}

function copies(requests: CountedRequest[]): number {
  return requests.filter((r) => r.kind === 'CopyObject' || r.kind === 'UploadPartCopy').length;
}

test('measured: without the feature, renaming a 64 MiB .filepart is a server-side copy of 64 MiB; with it, none', async (t) => {
  const data = randomBytes(64 * MiB);
  const old = await sftp(plain.port, 'old');
  await upload(old, '/big.bin.filepart', data);
  let mark = proxy.requests.length;
  let started = performance.now();
  await old.rename('/big.bin.filepart', '/big.bin');
  const plainMs = performance.now() - started;
  const plainRequests = proxy.since(mark);
  t.diagnostic(`without: rename took ${plainMs.toFixed(0)} ms, requests: ${formatCounts(countByKind(plainRequests))}`);
  assert.ok(copies(plainRequests) >= 1, formatCounts(countByKind(plainRequests)));

  const win = await sftp(server.port, 'win');
  mark = proxy.requests.length;
  await upload(win, '/big.bin.filepart', data);
  started = performance.now();
  await win.rename('/big.bin.filepart', '/big.bin');
  const fastMs = performance.now() - started;
  const requests = proxy.since(mark);
  t.diagnostic(`with: rename took ${fastMs.toFixed(0)} ms, upload + rename requests: ${formatCounts(countByKind(requests))}`);
  assert.equal(copies(requests), 0, formatCounts(countByKind(requests)));
  assert.ok(requests.filter((r) => r.kind === 'CreateMultipartUpload').every((r) => /\/win\/big\.bin\?/.test(r.path)), 'the multipart upload is created at the final key');
  assert.ok(!requests.some((r) => r.kind === 'DeleteObject'), 'nothing to delete: nothing was stored at the temporary name');
  assert.deepEqual(await win.get('/big.bin'), data);
  assert.equal((await statusOf(win.stat('/big.bin.filepart'))).code, 2);
});

test("WinSCP's sequence: while parked the temporary name stats as the file and the final name does not exist; SETSTAT then RENAME", async () => {
  const win = await sftp(server.port, 'win');
  const data = randomBytes(12 * MiB);
  const mark = proxy.requests.length;
  await upload(win, '/report.csv.filepart', data);
  // Parked: nothing visible in S3 under either name, the temporary name shows the whole file.
  assert.equal((await win.stat('/report.csv.filepart')).size, data.length);
  assert.equal((await statusOf(win.stat('/report.csv'))).code, 2);
  const parked = (await win.list('/')).filter((e) => e.filename.startsWith('report.csv'));
  assert.deepEqual(parked.map((e) => [e.filename, e.attrs.size]), [['report.csv.filepart', data.length]]);
  const mtime = new Date('2024-03-01T10:20:30Z');
  await win.setstat('/report.csv.filepart', { mtime, atime: mtime });
  await win.rename('/report.csv.filepart', '/report.csv');
  assert.deepEqual((await win.list('/')).filter((e) => e.filename.startsWith('report.csv')).map((e) => e.filename), ['report.csv']);
  const after = await win.stat('/report.csv');
  assert.equal(after.size, data.length);
  assert.equal(after.mtime, mtime.getTime() / 1000);
  assert.equal((await statusOf(win.stat('/report.csv.filepart'))).code, 2);
  assert.deepEqual(await win.get('/report.csv'), data);
  const requests = proxy.since(mark);
  // The mtime arrived after the multipart upload was created: one metadata copy at the final key,
  // as for any multipart upload; without the feature there would be two (SETSTAT and RENAME).
  assert.equal(copies(requests), 1, formatCounts(countByKind(requests)));
});

test('a small file in the same sequence is one PutObject at the final name, with its mtime, and no copy', async () => {
  const win = await sftp(server.port, 'win');
  const data = randomBytes(3000);
  const mark = proxy.requests.length;
  await upload(win, '/small.txt.filepart', data);
  const mtime = new Date('2023-01-02T03:04:05Z');
  await win.setstat('/small.txt.filepart', { mtime, atime: mtime });
  await win.rename('/small.txt.filepart', '/small.txt');
  const requests = proxy.since(mark);
  const puts = requests.filter((r) => r.kind === 'PutObject');
  assert.equal(puts.length, 1);
  assert.match(puts[0]!.path, /\/win\/small\.txt\?|\/win\/small\.txt$/);
  assert.equal(copies(requests), 0, formatCounts(countByKind(requests)));
  assert.equal((await win.stat('/small.txt')).mtime, mtime.getTime() / 1000);
  assert.deepEqual(await win.get('/small.txt'), data);
});

test('no rename within the window: the object ends at the temporary name, and never at the final one', async () => {
  const win = await sftp(server.port, 'win');
  const data = randomBytes(7 * MiB);
  await upload(win, '/kept.bin.filepart', data);
  await new Promise((r) => setTimeout(r, WINDOW_MS + 200));
  // Bounded wait for the rare path (complete, copy, delete) to finish.
  const exists = (path: string) => win.stat(path).then(() => true, () => false);
  for (let i = 0; i < 50 && (await exists('/kept.bin')); i++) await new Promise((r) => setTimeout(r, 100));
  assert.deepEqual(await win.get('/kept.bin.filepart'), data);
  assert.equal((await statusOf(win.stat('/kept.bin'))).code, 2);
  const names = (await win.list('/')).map((e) => e.filename);
  assert.ok(names.includes('kept.bin.filepart') && !names.includes('kept.bin'), names.join(', '));
});

test('a read of the temporary name while parked stores it there first; a rename elsewhere moves it from there', async () => {
  const win = await sftp(server.port, 'win');
  const data = randomBytes(6 * MiB);
  await upload(win, '/read.bin.filepart', data);
  assert.deepEqual(await win.get('/read.bin.filepart'), data);
  await upload(win, '/other.bin.filepart', data);
  await win.rename('/other.bin.filepart', '/elsewhere.bin');
  assert.deepEqual(await win.get('/elsewhere.bin'), data);
  assert.equal((await statusOf(win.stat('/other.bin'))).code, 2);
});

test('an existing object at the final name stays readable until the rename replaces it', async () => {
  const win = await sftp(server.port, 'win');
  const before = randomBytes(1000);
  const after = randomBytes(6 * MiB);
  await win.put('/data.bin', before);
  await upload(win, '/data.bin.filepart', after);
  assert.deepEqual(await win.get('/data.bin'), before);
  // WinSCP removes the old file, then renames; or an overwriting rename (posix-rename@openssh.com).
  await win.posixRename('/data.bin.filepart', '/data.bin');
  assert.deepEqual(await win.get('/data.bin'), after);
  assert.equal((await statusOf(win.stat('/data.bin.filepart'))).code, 2);
});

test('removing the temporary name while parked drops the upload: nothing is stored under either name', async () => {
  const win = await sftp(server.port, 'win');
  await upload(win, '/gone.bin.filepart', randomBytes(6 * MiB));
  await win.remove('/gone.bin.filepart');
  await new Promise((r) => setTimeout(r, WINDOW_MS + 300));
  assert.equal((await statusOf(win.stat('/gone.bin.filepart'))).code, 2);
  assert.equal((await statusOf(win.stat('/gone.bin'))).code, 2);
});

for (const size of [2000, 12 * MiB]) {
  test(`the same temporary name uploaded twice (${size} bytes), then renamed: the final name holds the second upload, nothing else is left`, async () => {
    const c = await sftp(server.port, 'win');
    const [first, second] = [randomBytes(size), randomBytes(size)];
    const name = `twice-${size}.bin`;
    await upload(c, `/${name}.filepart`, first);
    await upload(c, `/${name}.filepart`, second);
    await c.rename(`/${name}.filepart`, `/${name}`);
    // Anything the first upload could still do in the background has had its time.
    await new Promise((r) => setTimeout(r, WINDOW_MS + 2000));
    const back = await c.get(`/${name}`);
    assert.ok(back.equals(second), `the final name holds ${back.equals(first) ? 'the first upload' : `${back.length} bytes`}`);
    assert.equal((await statusOf(c.stat(`/${name}.filepart`))).code, 2, 'the temporary name is gone');
  });
}


/** Waits until the window passed and the upload was completed at its final name, on its way to the temporary one. */
async function completedAtFinal(key: string): Promise<void> {
  const direct = s3ClientFor(s3);
  try {
    for (const deadline = Date.now() + 20_000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 20))) {
      if (await direct.send(new HeadObjectCommand({ Bucket: server.bucket, Key: key })).then(() => true, () => false)) return;
    }
    throw new Error(`${key} never appeared`);
  } finally {
    direct.destroy();
  }
}

test('a RENAME that comes while the window-passed upload is being stored at the temporary name waits for it, then succeeds', async () => {
  const c = await sftp(server.port, 'win');
  const data = randomBytes(48 * MiB);
  await upload(c, '/late.bin.filepart', data);
  await completedAtFinal('win/late.bin');
  await c.rename('/late.bin.filepart', '/late.bin');
  assert.ok((await c.get('/late.bin')).equals(data));
  assert.equal((await statusOf(c.stat('/late.bin.filepart'))).code, 2);
});

test('a file another session stores at the final name while a window-passed upload moves away from it is kept', async () => {
  const c = await sftp(server.port, 'win');
  const other = await sftp(server.port, 'win');
  const data = randomBytes(48 * MiB);
  await upload(c, '/race.bin.filepart', data);
  await completedAtFinal('win/race.bin');
  await upload(other, '/race.bin', Buffer.from('second writer'));
  // The stat of the temporary name waits for the move to end.
  assert.equal((await c.stat('/race.bin.filepart')).size, data.length);
  assert.equal((await other.get('/race.bin')).toString(), 'second writer');
  assert.ok((await c.get('/race.bin.filepart')).equals(data), 'the parked upload is at its temporary name');
});

