/**
 * Legacy SCP (`scp -O`: `scp -t`/`scp -f` over an exec request) against the
 * real server on the real Swift S3 server, with OpenSSH's scp and ssh, plus a
 * raw ssh2 client for records no honest client sends.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import ssh2 from 'ssh2';
import type { ClientChannel } from 'ssh2';
import { HeadObjectCommand, ListMultipartUploadsCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import type { SwiftS3 } from '../../dev/swift.ts';
import { createBucket, makeClientKey, run, s3ClientFor, s3Server, scp, startTestServer, type TestServer } from '../support/harness.ts';
import { scrape } from '../support/prometheus.ts';

let s3: SwiftS3;
let srv: TestServer;
let work: string;
let key: string;
let readerKey: string;
let uploaderKey: string;

before(async () => {
  s3 = await s3Server();
  work = await mkdtemp(join(tmpdir(), 's3sftp-scp-'));
  key = await makeClientKey(work, 'alice');
  readerKey = await makeClientKey(work, 'reader');
  uploaderKey = await makeClientKey(work, 'uploader');
  srv = await startTestServer({
    s3,
    bucket: await createBucket(s3),
    users: [
      { username: 'alice', keyFile: key, keyPrefix: 'users/alice/' },
      { username: 'reader', keyFile: readerKey, keyPrefix: 'users/alice/', permissions: ['list', 'download'] },
      { username: 'uploader', keyFile: uploaderKey, keyPrefix: 'users/alice/', permissions: ['upload'] },
    ],
  });
});

after(async () => {
  await srv?.stop();
  await s3?.stop();
  await rm(work, { recursive: true, force: true });
});

/** OpenSSH scp in legacy (rcp) mode. */
function scpO(port: number, keyFile: string, args: string[]) {
  return scp(port, keyFile, ['-O', ...args], { timeoutMs: 60_000 });
}

function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

async function keysUnder(bucket: string, prefix = ''): Promise<string[]> {
  const client = s3ClientFor(s3);
  try {
    const out = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix }));
    return (out.Contents ?? []).map((o) => o.Key as string);
  } finally {
    client.destroy();
  }
}

/** Every file below `dir` as relative path → sha256, and every directory as relative path → "dir". */
async function tree(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
    const full = join(entry.parentPath, entry.name);
    out[relative(dir, full)] = entry.isDirectory() ? 'dir' : sha256(await readFile(full));
  }
  return out;
}

describe('OpenSSH scp -O', () => {
  test('a 12 MiB file goes up and comes back with the same sha256, and is counted as transfers', async () => {
    const data = randomBytes(12 * 1024 * 1024);
    await writeFile(join(work, 'big.bin'), data);
    const before = await scrape(srv.server.metrics.port);
    const up = await scpO(srv.port, key, [join(work, 'big.bin'), 'alice@127.0.0.1:/big.bin']);
    assert.equal(up.code, 0, up.stderr);
    const down = await scpO(srv.port, key, ['alice@127.0.0.1:/big.bin', join(work, 'big-down.bin')]);
    assert.equal(down.code, 0, down.stderr);
    assert.equal(sha256(await readFile(join(work, 'big-down.bin'))), sha256(data));
    const m = await scrape(srv.server.metrics.port);
    const delta = (direction: string) =>
      m.value('s3sftp_transfer_bytes_total', { direction }) - before.value('s3sftp_transfer_bytes_total', { direction });
    assert.equal(delta('upload'), data.length);
    assert.equal(delta('download'), data.length);
  });

  test('-r copies a tree (nested, empty directory, spaces, unicode) up and back', async () => {
    const src = join(work, 'tree');
    await mkdir(join(src, 'sub dir', 'deeper'), { recursive: true });
    await mkdir(join(src, 'empty'));
    await writeFile(join(src, 'a.txt'), 'top');
    await writeFile(join(src, 'sub dir', 'ünïcødé 日本.txt'), 'unicode and spaces');
    await writeFile(join(src, 'sub dir', 'deeper', 'x.bin'), randomBytes(70_000));
    await writeFile(join(src, 'sub dir', 'deeper', 'zero'), '');
    const up = await scpO(srv.port, key, ['-r', src, 'alice@127.0.0.1:/uploaded']);
    assert.equal(up.code, 0, up.stderr);
    const keys = await keysUnder(srv.bucket, 'users/alice/uploaded/');
    assert.ok(keys.includes('users/alice/uploaded/sub dir/ünïcødé 日本.txt'), keys.join('\n'));
    const dest = join(work, 'tree-back');
    const down = await scpO(srv.port, key, ['-r', 'alice@127.0.0.1:/uploaded', dest]);
    assert.equal(down.code, 0, down.stderr);
    assert.deepEqual(await tree(dest), await tree(src));
    // The remote path is shell-quoted by the user, as with any scp server; the quoting is undone here.
    const quoted = await scpO(srv.port, key, ['alice@127.0.0.1:/uploaded/sub\\ dir/ünïcødé\\ 日本.txt', join(work, 'quoted.txt')]);
    assert.equal(quoted.code, 0, quoted.stderr);
    assert.equal(await readFile(join(work, 'quoted.txt'), 'utf8'), 'unicode and spaces');
    // Into an existing directory, the tree lands under its own name, as with cp -r.
    const again = await scpO(srv.port, key, ['-r', src, 'alice@127.0.0.1:/uploaded']);
    assert.equal(again.code, 0, again.stderr);
    assert.ok((await keysUnder(srv.bucket, 'users/alice/uploaded/tree/')).includes('users/alice/uploaded/tree/a.txt'));
  });

  test('several files into a directory (-d), and a file onto a new name', async () => {
    await writeFile(join(work, 'one.txt'), 'one');
    await writeFile(join(work, 'two.txt'), 'two');
    const r = await scpO(srv.port, key, [join(work, 'one.txt'), join(work, 'two.txt'), 'alice@127.0.0.1:/uploaded']);
    assert.equal(r.code, 0, r.stderr);
    const renamed = await scpO(srv.port, key, [join(work, 'one.txt'), 'alice@127.0.0.1:/renamed.txt']);
    assert.equal(renamed.code, 0, renamed.stderr);
    const keys = await keysUnder(srv.bucket, 'users/alice/');
    for (const k of ['uploaded/one.txt', 'uploaded/two.txt', 'renamed.txt']) assert.ok(keys.includes(`users/alice/${k}`), k);
    const notDir = await scpO(srv.port, key, [join(work, 'one.txt'), join(work, 'two.txt'), 'alice@127.0.0.1:/renamed.txt']);
    assert.notEqual(notDir.code, 0);
    assert.match(notDir.stderr, /not a directory/);
  });

  test('a user without upload permission gets "permission denied" and nothing is stored', async () => {
    await writeFile(join(work, 'denied.txt'), 'nope');
    const r = await scpO(srv.port, readerKey, [join(work, 'denied.txt'), 'reader@127.0.0.1:/denied.txt']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /permission denied/i);
    assert.match(r.stderr, /upload/);
    assert.deepEqual(await keysUnder(srv.bucket, 'users/alice/denied'), []);
    // The same user may download.
    const down = await scpO(srv.port, readerKey, ['reader@127.0.0.1:/renamed.txt', join(work, 'reader-down.txt')]);
    assert.equal(down.code, 0, down.stderr);
    assert.equal(await readFile(join(work, 'reader-down.txt'), 'utf8'), 'one');
  });

  test('overwrite, create_dirs, download and list are enforced as over SFTP', async () => {
    await writeFile(join(work, 'fresh.txt'), 'fresh');
    const fresh = await scpO(srv.port, uploaderKey, [join(work, 'fresh.txt'), 'uploader@127.0.0.1:/fresh.txt']);
    assert.equal(fresh.code, 0, fresh.stderr);
    const overwrite = await scpO(srv.port, uploaderKey, [join(work, 'one.txt'), 'uploader@127.0.0.1:/fresh.txt']);
    assert.notEqual(overwrite.code, 0);
    assert.match(overwrite.stderr, /permission denied: "overwrite"/);
    const dirs = await scpO(srv.port, uploaderKey, ['-r', join(work, 'tree'), 'uploader@127.0.0.1:/new-tree']);
    assert.notEqual(dirs.code, 0);
    assert.match(dirs.stderr, /permission denied: "create_dirs"/);
    const down = await scpO(srv.port, uploaderKey, ['uploader@127.0.0.1:/fresh.txt', join(work, 'no-download.txt')]);
    assert.notEqual(down.code, 0);
    assert.match(down.stderr, /permission denied: "download"/);
    const list = await scpO(srv.port, uploaderKey, ['-r', 'uploader@127.0.0.1:/uploaded', join(work, 'no-list')]);
    assert.notEqual(list.code, 0);
    assert.match(list.stderr, /permission denied: "list"/);
    const alice = await scpO(srv.port, key, ['alice@127.0.0.1:/fresh.txt', join(work, 'fresh-back.txt')]);
    assert.equal(await readFile(join(work, 'fresh-back.txt'), 'utf8'), 'fresh', alice.stderr);
    assert.deepEqual(await keysUnder(srv.bucket, 'users/alice/new-tree'), []);
  });

  test('a missing file fails the download with a clear message; wildcards are said not to expand', async () => {
    const r = await scpO(srv.port, key, ['alice@127.0.0.1:/missing.txt', join(work, 'missing.txt')]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /\/missing\.txt: no such file or directory/);
    await assert.rejects(stat(join(work, 'missing.txt')));
    const glob = await scpO(srv.port, key, ['alice@127.0.0.1:/uploaded/*.txt', work]);
    assert.notEqual(glob.code, 0);
    assert.match(glob.stderr, /wildcards are not expanded/);
    const dir = await scpO(srv.port, key, ['alice@127.0.0.1:/uploaded', join(work, 'no-r')]);
    assert.notEqual(dir.code, 0);
    assert.match(dir.stderr, /not a regular file/);
  });

  test('ssh with a command other than scp is refused with exit status 1 and a message', async () => {
    const r = await run('ssh', [
      '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'LogLevel=ERROR',
      '-o', 'BatchMode=yes', '-o', 'IdentitiesOnly=yes', '-i', key, '-p', String(srv.port), 'alice@127.0.0.1', 'ls',
    ], { timeoutMs: 30_000 });
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /SFTP and SCP only/);
  });
});

describe('scp -p', () => {
  let mtimeSrv: TestServer;
  before(async () => {
    mtimeSrv = await startTestServer({
      s3,
      bucket: await createBucket(s3),
      env: { S3SFTP_SETSTATMODE: '1' },
      users: [{ username: 'alice', keyFile: key, keyPrefix: 'users/mtime-scp/' }],
    });
  });
  after(() => mtimeSrv.stop());

  test('keeps the modification time with the default configuration, with no error line', async () => {
    const file = join(work, 'dated.txt');
    await writeFile(file, 'dated');
    const when = new Date('2021-03-04T05:06:07Z');
    await utimes(file, when, when);
    const up = await scpO(srv.port, key, ['-p', file, 'alice@127.0.0.1:/dated.txt']);
    assert.equal(up.code, 0, up.stderr);
    assert.equal(up.stderr.trim(), '');
    const client = s3ClientFor(s3);
    const head = await client.send(new HeadObjectCommand({ Bucket: srv.bucket, Key: 'users/alice/dated.txt' }));
    client.destroy();
    assert.equal(Number(head.Metadata?.mtime), when.getTime() / 1000);
    const down = await scpO(srv.port, key, ['-p', 'alice@127.0.0.1:/dated.txt', join(work, 'dated-back.txt')]);
    assert.equal(down.code, 0, down.stderr);
    assert.equal((await stat(join(work, 'dated-back.txt'))).mtime.getTime(), when.getTime());
  });

  test('-rp keeps the times of files inside directories both ways', async () => {
    const dir = join(work, 'dated-tree');
    await mkdir(join(dir, 'inner'), { recursive: true });
    await writeFile(join(dir, 'inner', 'old.txt'), 'old');
    const when = new Date('2018-07-08T09:10:11Z');
    await utimes(join(dir, 'inner', 'old.txt'), when, when);
    const up = await scpO(srv.port, key, ['-rp', dir, 'alice@127.0.0.1:/']);
    assert.equal(up.code, 0, up.stderr);
    const back = join(work, 'dated-tree-back');
    const down = await scpO(srv.port, key, ['-rp', 'alice@127.0.0.1:/dated-tree', back]);
    assert.equal(down.code, 0, down.stderr);
    assert.equal((await stat(join(back, 'inner', 'old.txt'))).mtime.getTime(), when.getTime());
  });

  test('is ignored (not an error) under setstatMode 1', async () => {
    const file = join(work, 'undated.txt');
    await writeFile(file, 'undated');
    await utimes(file, new Date('2001-01-01Z'), new Date('2001-01-01Z'));
    const up = await scpO(mtimeSrv.port, key, ['-p', file, 'alice@127.0.0.1:/undated.txt']);
    assert.equal(up.code, 0, up.stderr);
    const client = s3ClientFor(s3);
    const head = await client.send(new HeadObjectCommand({ Bucket: mtimeSrv.bucket, Key: 'users/mtime-scp/undated.txt' }));
    client.destroy();
    assert.equal(head.Metadata?.mtime, undefined);
  });
});

// ---- a raw client, for what OpenSSH's scp never sends -------------------------

interface RawScp {
  client: ssh2.Client;
  channel: ClientChannel;
  /** Resolves with the next `n` bytes the server sends. */
  read(n: number): Promise<Buffer>;
  /** Resolves with the exit status (undefined if none came) once the channel closes. */
  exit: Promise<number | undefined>;
  stderr(): string;
}

async function rawScp(command: string): Promise<RawScp> {
  const client = new ssh2.Client();
  const privateKey = await readFile(key);
  await new Promise<void>((resolve, reject) => {
    client.once('ready', resolve).once('error', reject);
    client.connect({ host: '127.0.0.1', port: srv.port, username: 'alice', privateKey });
  });
  const channel = await new Promise<ClientChannel>((resolve, reject) => client.exec(command, (err, ch) => (err ? reject(err) : resolve(ch))));
  let buffered = Buffer.alloc(0);
  let waiter: (() => void) | undefined;
  let errText = '';
  let status: number | undefined;
  channel.on('data', (d: Buffer) => {
    buffered = Buffer.concat([buffered, d]);
    waiter?.();
  });
  channel.stderr.on('data', (d: Buffer) => (errText += d.toString()));
  channel.on('exit', (code: number | null) => (status = code ?? undefined));
  const exit = new Promise<number | undefined>((resolve) => channel.on('close', () => resolve(status)));
  const read = async (n: number): Promise<Buffer> => {
    const deadline = Date.now() + 15_000;
    while (buffered.length < n) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${n} bytes; have ${JSON.stringify(buffered.toString())}`);
      await new Promise<void>((resolve) => {
        waiter = resolve;
        setTimeout(resolve, 200);
      });
    }
    const out = buffered.subarray(0, n);
    buffered = buffered.subarray(n);
    return out;
  };
  return { client, channel, read, exit, stderr: () => errText };
}

/** Reads a "\1msg\n" or "\2msg\n" answer. */
async function readErrorLine(raw: RawScp): Promise<{ code: number; text: string }> {
  const code = (await raw.read(1))[0] as number;
  let text = '';
  for (;;) {
    const c = (await raw.read(1)).toString('latin1');
    if (c === '\n') return { code, text };
    text += c;
  }
}

describe('hostile and broken SCP clients', () => {
  for (const record of ['C0644 3 ../evil\n', 'C0644 3 ..\n', 'C0644 3 a/../../evil\n', 'D0755 0 ..\n', 'D0755 0 ../../evil\n']) {
    test(`a record naming ${JSON.stringify(record.trim())} is refused and nothing escapes the user prefix`, async () => {
      const raw = await rawScp(record.startsWith('D') ? 'scp -r -t /' : 'scp -t /');
      assert.deepEqual(await raw.read(1), Buffer.from([0]), 'the sink starts with a ready byte');
      raw.channel.write(record);
      raw.channel.write('abc\0');
      const answer = await readErrorLine(raw);
      assert.equal(answer.code, 2, 'a fatal error');
      assert.match(answer.text, /protocol error: refused file name/);
      assert.equal(await raw.exit, 1);
      raw.client.end();
      const keys = await keysUnder(srv.bucket);
      assert.deepEqual(keys.filter((k) => !k.startsWith('users/alice/') || k.includes('evil')), []);
    });
  }

  test('malformed records end the session with a protocol error, never a crash', async () => {
    for (const garbage of ['X\n', 'C06x4 3 a\n', 'C0644 abc a\n', 'C0644 3\n', 'T12 0 x 0\n', 'E\n']) {
      const raw = await rawScp('scp -t /');
      await raw.read(1);
      raw.channel.write(garbage);
      const answer = await readErrorLine(raw);
      assert.equal(answer.code, 2, garbage);
      assert.match(answer.text, /^scp: protocol error: /, garbage);
      assert.equal(await raw.exit, 1);
      raw.client.end();
    }
  });

  test('a client that disconnects mid-file leaves nothing stored', async () => {
    const raw = await rawScp('scp -t /');
    await raw.read(1);
    raw.channel.write(`C0644 ${6 * 1024 * 1024} partial.bin\n`);
    assert.deepEqual(await raw.read(1), Buffer.from([0]));
    raw.channel.write(randomBytes(5.5 * 1024 * 1024));
    await new Promise((r) => setTimeout(r, 500));
    raw.client.end();
    await raw.exit;
    assert.deepEqual(await keysUnder(srv.bucket, 'users/alice/partial'), []);
    // The multipart upload begun for it is aborted, not left for the janitor.
    const client = s3ClientFor(s3);
    const deadline = Date.now() + 10_000;
    let uploads: unknown[] = [];
    do {
      const out = await client.send(new ListMultipartUploadsCommand({ Bucket: srv.bucket, Prefix: 'users/alice/partial' }));
      uploads = out.Uploads ?? [];
      if (uploads.length > 0) await new Promise((r) => setTimeout(r, 200));
    } while (uploads.length > 0 && Date.now() < deadline);
    client.destroy();
    assert.deepEqual(uploads, []);
  });

  test('a client that vanishes mid-download is a failed transfer, and the server carries on', async () => {
    const before = await scrape(srv.server.metrics.port);
    const raw = await rawScp('scp -f /big.bin');
    raw.channel.write('\0');
    const header = (await raw.read(`C0644 ${12 * 1024 * 1024} big.bin\n`.length)).toString();
    assert.equal(header, `C0644 ${12 * 1024 * 1024} big.bin\n`);
    raw.channel.write('\0');
    await raw.read(1024 * 1024);
    raw.client.end();
    const failed = (m: Awaited<ReturnType<typeof scrape>>) => m.value('s3sftp_transfers_total', { direction: 'download', outcome: 'failure' });
    const deadline = Date.now() + 10_000;
    let after = await scrape(srv.server.metrics.port);
    while (failed(after) === failed(before) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 200));
      after = await scrape(srv.server.metrics.port);
    }
    assert.equal(failed(after) - failed(before), 1);
    const again = await scpO(srv.port, key, ['alice@127.0.0.1:/renamed.txt', join(work, 'after-vanish.txt')]);
    assert.equal(again.code, 0, again.stderr);
  });

  test('a client that reports its own read error after the data gets nothing stored', async () => {
    const raw = await rawScp('scp -t /');
    await raw.read(1);
    raw.channel.write('C0644 3 bad-read.txt\n');
    await raw.read(1);
    raw.channel.write('abc\x01scp: bad-read.txt: Input/output error\n');
    const answer = await readErrorLine(raw);
    assert.equal(answer.code, 1);
    assert.match(answer.text, /nothing was stored/);
    raw.channel.end();
    assert.equal(await raw.exit, 1);
    raw.client.end();
    assert.deepEqual(await keysUnder(srv.bucket, 'users/alice/bad-read'), []);
  });

  test('an exec of anything but scp gets a message on stderr and exit status 1', async () => {
    const raw = await rawScp('cat /etc/passwd; id');
    assert.equal(await raw.exit, 1);
    assert.match(raw.stderr(), /SFTP and SCP only/);
    raw.client.end();
  });
});
