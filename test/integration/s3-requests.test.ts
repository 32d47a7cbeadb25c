/**
 * S3 requests per SFTP operation (issue 10, docs/adr/0018, docs/adr/0019): the server on Swift with
 * the counting proxy in front, one SFTP operation at a time from ssh2's client, and the exact
 * requests it made, by S3 operation. Each request is a round trip of 20-50 ms on real S3 (and a line
 * on the bill), so a lookup that comes back is a regression even when every answer is still right.
 *
 * The sessions' storage runs on a clock the tests move: the 5 s memories (a directory seen, a
 * directory's listing) last until a test moves it past them, however slow the machine is.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { DeleteObjectCommand, HeadObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import type ssh2 from 'ssh2';
import type { SwiftS3 } from '../../dev/swift.ts';
import { createBucket, makeClientKey, s3ClientFor, s3Server, startTestServer, type TestServer } from '../support/harness.ts';
import { countByKind, formatCounts, startS3LatencyProxy, type S3LatencyProxy } from '../support/s3-latency-proxy.ts';
import { scrape } from '../support/prometheus.ts';
import { FLAGS, openSftp, SftpClient, statusOf } from '../support/sftp-client.ts';

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
let direct: S3Client;
let keyFile: string;
let bucket: string;
const body = randomBytes(4096);
/** The storage clock: still unless a test moves it. */
let now = Date.now();
const storageClock = { now: () => now };
/** Moves the storage clock past every 5 s memory. */
const expireMemories = () => {
  now += 5_001;
};

before(async () => {
  s3 = await s3Server();
  bucket = await createBucket(s3);
  proxy = await startS3LatencyProxy(s3.endpoint, { delayMs: 0 });
  dir = await mkdtemp(join(tmpdir(), 's3sftp-requests-'));
  keyFile = await makeClientKey(dir);
  server = await startTestServer({ s3: { ...s3, endpoint: proxy.endpoint }, bucket, users: [{ username: 'econ', keyFile, keyPrefix: 'econ/' }], storageClock });
  // Directories made straight in S3: the session has never seen them. The same client plays
  // another session (another replica) changing things behind the session's back.
  direct = s3ClientFor(s3);
  for (const key of ['econ/listed/', 'econ/listed/a/', 'econ/listed/b/', 'econ/batch/']) {
    await direct.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: '' }));
  }
  ({ client, sftp } = await connect());
});

/** One more SSH connection and SFTP session as the same user. */
const connect = () => openSftp(server.port, 'econ', keyFile);

after(async () => {
  direct?.destroy();
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

test('a new small file: one listing of its directory, which answers for the name too, and the PutObject', async (t) => {
  const counts = await counted(() => upload('/new.dat'));
  t.diagnostic(formatCounts(counts));
  assert.deepEqual(counts, { ListObjectsV2: 1, PutObject: 1 });
});

test('an overwrite of the file the session just wrote: its name is looked up again, and the PutObject', async (t) => {
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

test('RENAME of a file: source HEAD and target listing at once (a free target is always S3\'s answer), then copy and delete', async (t) => {
  const counts = await counted(() => sftp.rename('/new.dat', '/renamed.dat'));
  t.diagnostic(formatCounts(counts));
  assert.deepEqual(counts, { HeadObject: 1, ListObjectsV2: 1, CopyObject: 1, DeleteObject: 1 });
});

test('posix-rename over a file the session just wrote: the overwrite permission is decided from the target listing', async (t) => {
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
  expireMemories();
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

const BATCH = 5;

test('a batch of uploads into one directory: the first lists the parent and the whole directory (which answers for the name) at once; the rest are PutObjects alone', async (t) => {
  // The root's listing (held since the first test) expired with the test before: the parent check
  // lists the root again.
  const counts = await counted(async () => {
    for (let i = 0; i < BATCH; i++) await upload(`/batch/f${i}.dat`);
  });
  t.diagnostic(formatCounts(counts));
  assert.deepEqual(counts, { ListObjectsV2: 2, PutObject: BATCH });
});

test('a file in a directory that does not exist: NO_SUCH_FILE, nothing stored', async (t) => {
  // The parent (a missing parent is S3's answer, never memory's) and the would-be directory, whose
  // empty listing answers for the name.
  const counts = await counted(() => statusOf(upload('/absent/f.dat')).then((s) => assert.equal(s.code, NO_SUCH_FILE)));
  t.diagnostic(formatCounts(counts));
  assert.deepEqual(counts, { ListObjectsV2: 2 });
  // Once more: the parent is asked again; the name is free by the (empty) listing held.
  const again = await counted(() => statusOf(upload('/absent/f.dat')).then((s) => assert.equal(s.code, NO_SUCH_FILE)));
  t.diagnostic(`again: ${formatCounts(again)}`);
  assert.deepEqual(again, { ListObjectsV2: 1 });
  expireMemories();
  assert.equal((await statusOf(upload('/absent/f.dat'))).code, NO_SUCH_FILE);
});

test('STAT and LSTAT right after READDIR are answered from what the listing found: no request', async (t) => {
  expireMemories();
  const listed = await sftp.entries('/batch');
  assert.equal(listed.size, BATCH);
  const counts = await counted(async () => {
    for (const [name, entry] of listed) {
      const st = await sftp.stat(`/batch/${name}`);
      const lst = await sftp.lstat(`/batch/${name}`);
      assert.equal(st.size, body.length);
      assert.equal(st.mtime, entry.attrs.mtime);
      assert.equal(lst.mtime, entry.attrs.mtime);
    }
  });
  t.diagnostic(formatCounts(counts));
  assert.deepEqual(counts, {});
  // "No such file" is S3's answer, as before: a HEAD and the listing that tells it is no directory.
  const missing = await counted(async () => assert.equal((await statusOf(sftp.stat('/batch/none.dat'))).code, NO_SUCH_FILE));
  t.diagnostic(`missing: ${formatCounts(missing)}`);
  assert.deepEqual(missing, { HeadObject: 1, ListObjectsV2: 1 });
});

test('READDIR of files this server just stored (uploads, SETSTAT, RENAME): the listing alone, with the times a HEAD reports (docs/adr/0022)', async (t) => {
  await sftp.mkdir('/fresh');
  for (let i = 0; i < 3; i++) await upload(`/fresh/plain${i}.dat`);
  // `put -p`: the client's time goes with the PutObject.
  const handle = await sftp.open('/fresh/timed.dat', NEW_FILE);
  await sftp.write(handle, 0, body);
  await sftp.fsetstat(handle, { atime: 1_500_000_000, mtime: 1_500_000_000 });
  await sftp.close(handle);
  // rclone's order: the time is set after CLOSE, a copy of the object onto itself.
  await upload('/fresh/set-later.dat');
  await sftp.setstat('/fresh/set-later.dat', { atime: 1_400_000_000, mtime: 1_400_000_000 });
  // A rename is a copy too, keeping the time.
  await upload('/fresh/moved-from.dat');
  await sftp.setstat('/fresh/moved-from.dat', { atime: 1_450_000_000, mtime: 1_450_000_000 });
  await sftp.rename('/fresh/moved-from.dat', '/fresh/moved.dat');
  expireMemories();
  const written = async () => (await scrape(server.server.metrics.port)).value('s3sftp_listing_mtimes_total', { source: 'written' });
  const writtenBefore = await written();
  let listed = new Map<string, number>();
  const counts = await counted(async () => {
    listed = new Map([...(await sftp.entries('/fresh'))].map(([name, e]) => [name, e.attrs.mtime]));
  });
  t.diagnostic(formatCounts(counts));
  assert.deepEqual(counts, { ListObjectsV2: 1, HeadObject: 1 }, 'the file-wins HEAD of the directory, no file');
  assert.equal((await written()) - writtenBefore, 6, 'the metric counts the files answered from what was written');
  assert.equal(listed.get('timed.dat'), 1_500_000_000);
  assert.equal(listed.get('set-later.dat'), 1_400_000_000);
  assert.equal(listed.get('moved.dat'), 1_450_000_000);
  assert.equal(listed.has('moved-from.dat'), false);
  // The times are the ones STAT reports: S3's Last-Modified for a file stored without one.
  for (let i = 0; i < 3; i++) {
    const head = await direct.send(new HeadObjectCommand({ Bucket: bucket, Key: `econ/fresh/plain${i}.dat` }));
    assert.equal(listed.get(`plain${i}.dat`), Math.floor(head.LastModified!.getTime() / 1000));
  }
  // Another replica storing other bytes under the name is seen: the ETag no longer matches.
  await direct.send(new PutObjectCommand({ Bucket: bucket, Key: 'econ/fresh/plain0.dat', Body: 'elsewhere', Metadata: { mtime: '1300000000' } }));
  expireMemories();
  const after = await sftp.entries('/fresh');
  assert.equal(after.get('plain0.dat')?.attrs.mtime, 1_300_000_000);
  for (const name of after.keys()) await sftp.remove(`/fresh/${name}`);
  await sftp.rmdir('/fresh');
});

test('the session sees its own changes at once: an upload, a removal, a new directory', async (t) => {
  await sftp.entries('/batch');
  await upload('/batch/mine.dat');
  assert.equal((await sftp.stat('/batch/mine.dat')).size, body.length);
  await sftp.remove('/batch/mine.dat');
  assert.equal((await statusOf(sftp.stat('/batch/mine.dat'))).code, NO_SUCH_FILE);
  await sftp.mkdir('/batch/sub');
  assert.equal((await sftp.stat('/batch/sub')).isDirectory(), true);
  // The new directory is known empty: an upload into it is its PutObject alone.
  const counts = await counted(() => upload('/batch/sub/x.dat'));
  t.diagnostic(formatCounts(counts));
  assert.deepEqual(counts, { PutObject: 1 });
  await sftp.remove('/batch/sub/x.dat');
  await sftp.rmdir('/batch/sub');
  assert.equal((await statusOf(sftp.stat('/batch/sub'))).code, NO_SUCH_FILE);
});

test('a change made through another session of the same server is seen at once (rclone runs several connections)', async (t) => {
  const other = await connect();
  try {
    await sftp.entries('/batch');
    // The other session stores a new file and removes a listed one; this one's listing is not
    // asked about either name any more.
    await other.sftp.put('/batch/other.dat', body);
    await other.sftp.remove('/batch/f3.dat');
    const counts = await counted(async () => {
      assert.equal((await sftp.stat('/batch/other.dat')).size, body.length);
      assert.equal((await statusOf(sftp.stat('/batch/f3.dat'))).code, NO_SUCH_FILE);
      assert.equal((await statusOf(sftp.remove('/batch/f3.dat'))).code, NO_SUCH_FILE);
    });
    t.diagnostic(formatCounts(counts));
    // S3 answers each: a HEAD for the file; a HEAD and the directory check for each refusal.
    assert.deepEqual(counts, { HeadObject: 3, ListObjectsV2: 2 });
    // Names nobody changed are still answered from the listing.
    assert.deepEqual(await counted(() => sftp.stat('/batch/f2.dat')), {});
    await other.sftp.remove('/batch/other.dat');
    await upload('/batch/f3.dat');
  } finally {
    other.client.end();
  }
});

test("a change made behind the server's back (another replica) is seen once the listing held is 5 s old", async (t) => {
  await sftp.entries('/batch');
  await direct.send(new PutObjectCommand({ Bucket: bucket, Key: 'econ/batch/theirs.dat', Body: body }));
  await direct.send(new DeleteObjectCommand({ Bucket: bucket, Key: 'econ/batch/f4.dat' }));
  // Within the 5 s: a name the listing did not hold is asked of S3 (found); a file it held is
  // answered from it, as it was when listed.
  const stale = await counted(async () => {
    assert.equal((await sftp.stat('/batch/theirs.dat')).size, body.length);
    assert.equal((await sftp.stat('/batch/f4.dat')).size, body.length);
  });
  t.diagnostic(`within 5 s: ${formatCounts(stale)}`);
  assert.deepEqual(stale, { HeadObject: 1 });
  expireMemories();
  // After them: the first STAT lists the directory again beside its HEAD; the removed file is then
  // S3's "no such file" (a HEAD and the listing that tells it is no directory).
  const fresh = await counted(async () => {
    assert.equal((await sftp.stat('/batch/theirs.dat')).size, body.length);
    assert.equal((await statusOf(sftp.stat('/batch/f4.dat'))).code, NO_SUCH_FILE);
  });
  t.diagnostic(`after 5 s: ${formatCounts(fresh)}`);
  assert.deepEqual(fresh, { HeadObject: 2, ListObjectsV2: 2 });
  await sftp.remove('/batch/theirs.dat');
  await upload('/batch/f4.dat');
});

test('an overwrite of a file the listing held: the PutObject alone', async (t) => {
  expireMemories();
  await sftp.entries('/batch');
  const counts = await counted(() => upload('/batch/f0.dat'));
  t.diagnostic(formatCounts(counts));
  assert.deepEqual(counts, { PutObject: 1 });
});

test('REMOVE in a directory the listing held: the DeleteObject alone while other entries keep the directory; the last one lists it', async (t) => {
  expireMemories();
  await sftp.entries('/batch');
  const counts = await counted(async () => {
    for (let i = 1; i < BATCH; i++) await sftp.remove(`/batch/f${i}.dat`);
  });
  t.diagnostic(`all but one: ${formatCounts(counts)}`);
  assert.deepEqual(counts, { DeleteObject: BATCH - 1 });
  // No other entry is known to keep the directory: the keep-parent listing (the marker keeps it).
  const last = await counted(() => sftp.remove('/batch/f0.dat'));
  t.diagnostic(`the last: ${formatCounts(last)}`);
  assert.deepEqual(last, { DeleteObject: 1, ListObjectsV2: 1 });
  assert.deepEqual([...(await sftp.entries('/batch')).keys()], []);
  // Refusals are S3's answers, from the same request as before: a missing name, a directory.
  await sftp.mkdir('/batch/d');
  expireMemories();
  await sftp.entries('/batch');
  const refused = await counted(async () => {
    assert.equal((await statusOf(sftp.remove('/batch/none.dat'))).code, NO_SUCH_FILE);
    assert.equal((await statusOf(sftp.remove('/batch/d'))).code, FAILURE);
  });
  t.diagnostic(`refused: ${formatCounts(refused)}`);
  assert.deepEqual(refused, { HeadObject: 2, ListObjectsV2: 2 });
  await sftp.rmdir('/batch/d');
});

/** Runs a command over an exec channel of the session's SSH connection; its standard output. */
function exec(command: string): Promise<string> {
  return new Promise((resolve, reject) => {
    client.exec(command, (err, channel) => {
      if (err) return reject(err);
      let out = '';
      channel.on('data', (data: Buffer) => (out += data.toString()));
      channel.on('close', () => resolve(out));
      channel.stderr.resume();
    });
  });
}

test("rclone's upload: SETSTAT copies the file just stored without a HEAD; STAT and md5sum after it ask nothing (docs/adr/0022)", async (t) => {
  await upload('/rc.dat');
  const md5 = createHash('md5').update(body).digest('hex');
  // SETSTAT of a time is the copy alone: storage's lookup (the record) tells it is a file.
  const setstat = await counted(() => sftp.setstat('/rc.dat', { atime: 1_600_000_000, mtime: 1_600_000_000 }));
  t.diagnostic(`setstat: ${formatCounts(setstat)}`);
  assert.deepEqual(setstat, { CopyObject: 1 });
  const after = await counted(async () => {
    assert.equal((await sftp.stat('/rc.dat')).mtime, 1_600_000_000);
    assert.equal((await exec('md5sum /rc.dat')).split(' ')[0], md5);
  });
  t.diagnostic(`stat, md5sum: ${formatCounts(after)}`);
  assert.deepEqual(after, {});
  // Replaced behind the server's back: the copy is refused by If-Match, and a HEAD decides.
  await direct.send(new PutObjectCommand({ Bucket: bucket, Key: 'econ/rc.dat', Body: 'elsewhere' }));
  const again = await counted(() => sftp.setstat('/rc.dat', { atime: 1_650_000_000, mtime: 1_650_000_000 }));
  t.diagnostic(`setstat after a change elsewhere: ${formatCounts(again)}`);
  assert.deepEqual(again, { CopyObject: 2, HeadObject: 1 });
  const head = await direct.send(new HeadObjectCommand({ Bucket: bucket, Key: 'econ/rc.dat' }));
  assert.equal(head.ContentLength, 'elsewhere'.length, 'the new bytes kept');
  assert.equal(head.Metadata?.mtime, '1650000000');
  assert.equal(head.Metadata?.md5, undefined, 'no hash of the old bytes attached to the new');
  await sftp.remove('/rc.dat');
});

test('STAT of a directory again within 5 s (rclone stats the parent before each upload): nothing is asked', async (t) => {
  expireMemories();
  let firstMtime = 0;
  const first = await counted(async () => {
    firstMtime = (await sftp.stat('/listed')).mtime;
  });
  t.diagnostic(`first: ${formatCounts(first)}`);
  assert.ok((first.ListObjectsV2 ?? 0) >= 1, 'the first asks S3');
  const again = await counted(async () => {
    const st = await sftp.stat('/listed');
    assert.equal(st.isDirectory(), true);
    assert.equal(st.mtime, firstMtime, "the marker's time, as before");
  });
  t.diagnostic(`again: ${formatCounts(again)}`);
  assert.deepEqual(again, {});
  // Removed through the server, by another session: asked again at once.
  await sftp.mkdir('/short-lived');
  await sftp.stat('/short-lived');
  const other = await connect();
  await other.sftp.rmdir('/short-lived');
  other.client.end();
  assert.equal((await statusOf(sftp.stat('/short-lived'))).code, NO_SUCH_FILE);
});

test("md5sum right after a download (rclone checks each file it got) answers from the GET's headers", async (t) => {
  const md5 = createHash('md5').update(body).digest('hex');
  // Stored by another replica, with its hash, as uploads through any s3sftp are.
  await direct.send(new PutObjectCommand({ Bucket: bucket, Key: 'econ/got.dat', Body: body, Metadata: { md5 } }));
  const counts = await counted(async () => {
    const handle = await sftp.open('/got.dat', 'r');
    assert.deepEqual(await sftp.read(handle, 0, 32 * 1024), body);
    await sftp.close(handle);
    assert.equal((await exec('md5sum /got.dat')).split(' ')[0], md5);
  });
  t.diagnostic(formatCounts(counts));
  assert.deepEqual(counts, { GetObject: 1 });
  await sftp.remove('/got.dat');
});

test("a listing one connection fetched answers the same user's other connections (rclone lists on one, removes on others)", async (t) => {
  await sftp.mkdir('/shared');
  for (let i = 0; i < 3; i++) await upload(`/shared/f${i}.dat`);
  expireMemories();
  await sftp.entries('/shared');
  const other = await connect();
  const counts = await counted(async () => {
    for (let i = 0; i < 2; i++) await other.sftp.remove(`/shared/f${i}.dat`);
  });
  t.diagnostic(formatCounts(counts));
  // No HEAD before each delete, and f2 keeps the directory: no keep-parent listing.
  assert.deepEqual(counts, { DeleteObject: 2 });
  // Refusals are still S3's: a name the listing does not show is asked about.
  assert.equal((await statusOf(other.sftp.remove('/shared/none.dat'))).code, NO_SUCH_FILE);
  other.client.end();
  await sftp.remove('/shared/f2.dat');
  await sftp.rmdir('/shared');
});

test('STAT of a directory this server saw lately, in a new session: its HEAD and its listing go out together', async (t) => {
  await sftp.mkdir('/hinted');
  await direct.send(new PutObjectCommand({ Bucket: bucket, Key: 'econ/unhinted/x', Body: 'x' }));
  expireMemories();
  proxy.setDelay(40);
  const sessions: ssh2.Client[] = [];
  /** STAT in a new session (nothing seen in it), with the requests it made. */
  const statFresh = async (path: string) => {
    const fresh = await connect();
    sessions.push(fresh.client);
    const mark = proxy.requests.length;
    const attrs = await fresh.sftp.stat(path);
    await sleep(100);
    const made = proxy.since(mark);
    return { attrs, made, head: made.find((r) => r.kind === 'HeadObject'), list: made.find((r) => r.kind === 'ListObjectsV2') };
  };
  try {
    const hinted = await statFresh('/hinted');
    assert.ok(hinted.attrs.isDirectory());
    assert.deepEqual(countByKind(hinted.made), { HeadObject: 1, ListObjectsV2: 1 });
    assert.ok(hinted.list!.arrivedAt < hinted.head!.answeredAt, 'the listing went out before the HEAD was answered');
    // A directory this server never saw: the HEAD first, its listing only once the HEAD found nothing.
    const unhinted = await statFresh('/unhinted');
    assert.ok(unhinted.attrs.isDirectory());
    assert.ok(unhinted.list!.arrivedAt >= unhinted.head!.answeredAt, 'asked one after the other');
    // It is hinted now. Behind the server's back it becomes a file: STAT says so (the listing
    // sent beside the HEAD is the only cost), and the next STAT is the HEAD alone.
    await direct.send(new DeleteObjectCommand({ Bucket: bucket, Key: 'econ/unhinted/x' }));
    await direct.send(new PutObjectCommand({ Bucket: bucket, Key: 'econ/unhinted', Body: 'now a file' }));
    const wrong = await statFresh('/unhinted');
    assert.ok(wrong.attrs.isFile());
    assert.equal(wrong.attrs.size, 'now a file'.length);
    assert.deepEqual(countByKind(wrong.made), { HeadObject: 1, ListObjectsV2: 1 });
    const after = await statFresh('/unhinted');
    assert.ok(after.attrs.isFile());
    assert.deepEqual(countByKind(after.made), { HeadObject: 1 });
    t.diagnostic(`hinted ${hinted.made.at(-1)!.answeredAt - hinted.made[0]!.arrivedAt} ms, unhinted ${unhinted.made.at(-1)!.answeredAt - unhinted.made[0]!.arrivedAt} ms`);
  } finally {
    proxy.setDelay(0);
    for (const c of sessions) c.end();
  }
});

test("a wildcard worked through while its listing is read (psftp's mget and rm): a one-page directory answers from the first READDIR", async (t) => {
  await sftp.mkdir('/wild');
  for (let i = 0; i < 4; i++) await upload(`/wild/wild-${i}.dat`);
  expireMemories();
  const handle = await sftp.opendir('/wild');
  const firstReply = await sftp.readdir(handle);
  assert.deepEqual(firstReply.map((e) => e.filename).sort(), ['wild-0.dat', 'wild-1.dat', 'wild-2.dat', 'wild-3.dat']);
  // psftp gets or removes each match before asking for the rest of the listing (the EOF).
  const counts = await counted(async () => {
    for (const { filename, attrs } of firstReply) {
      const st = await sftp.stat(`/wild/${filename}`);
      assert.equal(st.size, body.length);
      assert.equal(st.mtime, attrs.mtime);
    }
    await sftp.remove('/wild/wild-0.dat');
  });
  t.diagnostic(formatCounts(counts));
  assert.deepEqual(counts, { DeleteObject: 1 });
  await sftp.close(handle);
});
