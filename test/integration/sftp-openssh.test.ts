/**
 * OpenSSH's sftp and scp against the real server on the real Swift S3 server:
 * the everyday operations a partner performs, and what they see when S3
 * cannot honestly do something.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile, stat, utimes } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes, createHash } from 'node:crypto';
import { HeadObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import type { SwiftS3 } from '../../dev/swift.ts';
import {
  createBucket,
  makeClientKey,
  s3ClientFor,
  s3Server,
  scp,
  sftpBatch,
  sftpPassword,
  startTestServer,
  type TestServer,
} from '../support/harness.ts';
import { connectRaw, handleOf, FX, FXF } from '../support/sftp-raw.ts';

let s3: SwiftS3;
let srv: TestServer;
let work: string;
let key: string;
let otherKey: string;
let readOnlyKey: string;
let moverKey: string;

before(async () => {
  s3 = await s3Server();
  work = await mkdtemp(join(tmpdir(), 's3sftp-openssh-'));
  key = await makeClientKey(work, 'alice');
  otherKey = await makeClientKey(work, 'bob');
  readOnlyKey = await makeClientKey(work, 'reader');
  moverKey = await makeClientKey(work, 'mover');
  srv = await startTestServer({
    s3,
    bucket: await createBucket(s3),
    users: [
      { username: 'alice', keyFile: key, password: 'correct horse', keyPrefix: 'users/alice/' },
      { username: 'bob', keyFile: otherKey, keyPrefix: 'users/alice2/' },
      { username: 'reader', keyFile: readOnlyKey, keyPrefix: 'users/alice/', permissions: ['list', 'download'] },
      { username: 'mover', keyFile: moverKey, keyPrefix: 'users/mover/', permissions: ['list', 'download', 'upload', 'rename'] },
    ],
  });
});

after(async () => {
  await srv?.stop();
  await s3?.stop();
  await rm(work, { recursive: true, force: true });
});

function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

describe('OpenSSH sftp', () => {
  test('put, ls, get round trip keeps the bytes', async () => {
    const data = randomBytes(300_000);
    await writeFile(join(work, 'up.bin'), data);
    const r = await sftpBatch(srv.port, 'alice', key, `put up.bin\nls -l\nget up.bin down.bin\n`, { cwd: work });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /up\.bin/);
    assert.equal(sha256(await readFile(join(work, 'down.bin'))), sha256(data));
  });

  test('mkdir, cd, rename, rm and rmdir behave like a disk', async () => {
    await writeFile(join(work, 'a.txt'), 'hello');
    const r = await sftpBatch(
      srv.port,
      'alice',
      key,
      ['mkdir docs', 'cd docs', 'put a.txt', 'rename a.txt b.txt', 'ls -1', 'rm b.txt', 'cd ..', 'rmdir docs', 'ls -1'].join('\n'),
      { cwd: work },
    );
    assert.equal(r.code, 0, r.stderr);
    const afterRename = r.stdout.split('sftp> ls -1')[1] ?? '';
    assert.match(afterRename, /b\.txt/);
    assert.doesNotMatch(afterRename, /a\.txt/);
    assert.doesNotMatch(r.stdout.split('sftp> ls -1').at(-1) ?? '', /docs/);
  });

  test('rmdir of a non-empty directory fails and keeps the files', async () => {
    await writeFile(join(work, 'keep.txt'), 'keep');
    const setup = await sftpBatch(srv.port, 'alice', key, 'mkdir full\nput keep.txt full/keep.txt\n', { cwd: work });
    assert.equal(setup.code, 0, setup.stderr);
    const r = await sftpBatch(srv.port, 'alice', key, 'rmdir full\n', { cwd: work });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /not empty|Failure/i);
    const ls = await sftpBatch(srv.port, 'alice', key, 'ls full\n');
    assert.match(ls.stdout, /keep\.txt/);
  });

  test('rename onto an existing file: plain RENAME refuses, posix-rename (OpenSSH default) overwrites', async () => {
    await writeFile(join(work, 'one.txt'), 'one');
    await writeFile(join(work, 'two.txt'), 'two');
    const r = await sftpBatch(srv.port, 'alice', key, 'put one.txt\nput two.txt\nrename one.txt two.txt\nget two.txt got.txt\n', { cwd: work });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await readFile(join(work, 'got.txt'), 'utf8'), 'one');
  });

  test('names with spaces, %, +, # and unicode round-trip', async () => {
    const names = ['with space.txt', 'per%cent.txt', 'plus+sign.txt', 'hash#tag.txt', 'ünïcødé-日本.txt'];
    for (const n of names) await writeFile(join(work, n), `content of ${n}`);
    const cmds = names.map((n) => `put "${n}"`).concat(['ls -1']).join('\n');
    const r = await sftpBatch(srv.port, 'alice', key, cmds, { cwd: work });
    assert.equal(r.code, 0, r.stderr);
    for (const n of names) assert.ok(r.stdout.includes(n), `listing shows ${n}`);
    const dl = await mkdtemp(join(work, 'dl-'));
    const get = await sftpBatch(srv.port, 'alice', key, names.map((n) => `get "${n}"`).join('\n'), { cwd: dl });
    assert.equal(get.code, 0, get.stderr);
    for (const n of names) assert.equal(await readFile(join(dl, n), 'utf8'), `content of ${n}`);
  });

  test('hostile paths cannot leave the user prefix', async () => {
    const client = s3ClientFor(s3);
    await client.send(new PutObjectCommand({ Bucket: srv.bucket, Key: 'users/alice2/secret.txt', Body: 'bob-only' }));
    await client.send(new PutObjectCommand({ Bucket: srv.bucket, Key: 'outside.txt', Body: 'root-only' }));
    client.destroy();
    const r = await sftpBatch(
      srv.port,
      'alice',
      key,
      ['-get ../alice2/secret.txt s1', '-get ../../outside.txt s2', '-get /../../../outside.txt s3', '-ls ../', '-ls ../../', 'pwd', 'cd ../../..', 'pwd'].join('\n'),
      { cwd: work },
    );
    assert.equal(r.code, 0, r.stderr);
    const shown = r.stdout.split('\n').filter((l) => !l.startsWith('sftp>')).join('\n');
    assert.doesNotMatch(shown, /secret\.txt|outside\.txt|alice2/);
    for (const f of ['s1', 's2', 's3']) await assert.rejects(stat(join(work, f)));
    assert.match(r.stdout, /Remote working directory: \/\n/);
    // bob's prefix "users/alice2/" shares a string prefix with alice's and must not see her files.
    const bob = await sftpBatch(srv.port, 'bob', otherKey, 'ls -1\n');
    assert.equal(bob.code, 0, bob.stderr);
    assert.match(bob.stdout, /secret\.txt/);
    assert.doesNotMatch(bob.stdout, /up\.bin/);
  });

  test('a wrong password is refused; the right one works', async () => {
    const bad = await sftpPassword(srv.port, 'alice', 'wrong', 'ls\n', { timeoutMs: 30_000 });
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /Permission denied|denied/i);
    const unknown = await sftpPassword(srv.port, 'nobody', 'correct horse', 'ls\n', { timeoutMs: 30_000 });
    assert.notEqual(unknown.code, 0);
    const good = await sftpPassword(srv.port, 'alice', 'correct horse', 'pwd\n', { timeoutMs: 30_000 });
    assert.equal(good.code, 0, good.stderr);
  });

  test('permissions are enforced for every operation', async () => {
    await writeFile(join(work, 'ro.txt'), 'ro');
    const r = await sftpBatch(
      srv.port,
      'reader',
      readOnlyKey,
      ['ls -1', 'get up.bin ro-down.bin', '-put ro.txt', '-rm up.bin', '-mkdir nope', '-rename up.bin moved.bin'].join('\n'),
      { cwd: work },
    );
    assert.equal(r.code, 0, r.stderr);
    assert.equal((await readFile(join(work, 'ro-down.bin'))).length, 300_000);
    assert.equal((r.stderr.match(/[Pp]ermission denied/g) ?? []).length, 4, r.stderr);
    const check = await sftpBatch(srv.port, 'alice', key, 'ls -1\n');
    assert.match(check.stdout, /up\.bin/);
    assert.doesNotMatch(check.stdout, /ro\.txt|nope|moved\.bin/);
  });

  test('rename onto a free name needs only "rename"; replacing a file also needs "overwrite"', async () => {
    await writeFile(join(work, 'm1.txt'), 'm1');
    await writeFile(join(work, 'm2.txt'), 'm2');
    const r = await sftpBatch(srv.port, 'mover', moverKey, 'put m1.txt\nput m2.txt\nrename m1.txt moved.txt\n-rename moved.txt m2.txt\nls -1\n', { cwd: work });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /[Pp]ermission denied/);
    const listing = r.stdout.split('sftp> ls -1')[1] ?? '';
    assert.match(listing, /moved\.txt/);
    assert.match(listing, /m2\.txt/);
  });

  test('symlinks and hard links answer "unsupported" and the session goes on', async () => {
    const r = await sftpBatch(srv.port, 'alice', key, ['-symlink up.bin link.bin', '-ln up.bin hard.bin', 'pwd'].join('\n'));
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /not supported|unsupported/i);
    assert.match(r.stdout, /Remote working directory/);
  });

  test('chmod is accepted and ignored by default (S3 keeps no permissions)', async () => {
    const r = await sftpBatch(srv.port, 'alice', key, 'chmod 600 up.bin\nls -l up.bin\n');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr.trim(), '');
    assert.match(r.stdout, /-rw-r--r--.* up\.bin/);
  });
});

describe('OpenSSH sftp ls', () => {
  test('ls -l and ls -ln show the same owner and group for a file', async () => {
    const r = await sftpBatch(srv.port, 'alice', key, 'ls -l up.bin\nls -ln up.bin\n');
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.split('\n').filter((l) => l.endsWith('up.bin') && l.startsWith('-'));
    assert.equal(lines.length, 2, r.stdout);
    const owners = lines.map((l) => l.split(/ +/).slice(2, 4).join(' '));
    assert.equal(owners[0], owners[1], r.stdout);
    assert.equal(owners[1], '0 0');
  });
});

describe('OpenSSH scp (SFTP mode)', () => {
  test('copies a multipart-sized file up and down without truncation', async () => {
    const data = randomBytes(12 * 1024 * 1024 + 12345);
    await writeFile(join(work, 'scp.bin'), data);
    const up = await scp(srv.port, key, [join(work, 'scp.bin'), 'alice@127.0.0.1:/scp.bin']);
    assert.equal(up.code, 0, up.stderr);
    const down = await scp(srv.port, key, ['alice@127.0.0.1:/scp.bin', join(work, 'scp-down.bin')]);
    assert.equal(down.code, 0, down.stderr);
    assert.equal(sha256(await readFile(join(work, 'scp-down.bin'))), sha256(data));
  });
});

describe('modification times', () => {
  let mtimeSrv: TestServer;
  before(async () => {
    mtimeSrv = await startTestServer({
      s3,
      bucket: srv.bucket,
      users: [{ username: 'alice', keyFile: key, keyPrefix: 'users/mtime/' }],
    });
  });
  after(() => mtimeSrv.stop());

  test('put -p keeps the mtime in object metadata and STAT returns it (default configuration)', async () => {
    const file = join(work, 'old.txt');
    await writeFile(file, 'old news');
    const when = new Date('2020-02-03T04:05:06Z');
    await utimes(file, when, when);
    const r = await sftpBatch(mtimeSrv.port, 'alice', key, 'put -p old.txt\nchmod 600 old.txt\nget -p old.txt old-back.txt\n', { cwd: work });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr.trim(), '', 'no error line');
    const back = await stat(join(work, 'old-back.txt'));
    assert.equal(back.mtime.getTime(), when.getTime());
    const client = s3ClientFor(s3);
    const head = await client.send(new HeadObjectCommand({ Bucket: srv.bucket, Key: 'users/mtime/old.txt' }));
    client.destroy();
    assert.equal(Number(head.Metadata?.mtime), when.getTime() / 1000);
  });
});

describe('scp -p (SFTP mode) with the default configuration', () => {
  test('keeps the modification time, with no error line', async () => {
    const file = join(work, 'scp-dated.txt');
    await writeFile(file, 'dated by scp');
    const when = new Date('2017-04-05T06:07:08Z');
    await utimes(file, when, when);
    const up = await scp(srv.port, key, ['-p', file, 'alice@127.0.0.1:/scp-dated.txt']);
    assert.equal(up.code, 0, up.stderr);
    assert.equal(up.stderr.trim(), '');
    const down = await scp(srv.port, key, ['-p', 'alice@127.0.0.1:/scp-dated.txt', join(work, 'scp-dated-back.txt')]);
    assert.equal(down.code, 0, down.stderr);
    assert.equal((await stat(join(work, 'scp-dated-back.txt'))).mtime.getTime(), when.getTime());
  });
});

describe('setstatMode 0', () => {
  let strictSrv: TestServer;
  before(async () => {
    strictSrv = await startTestServer({
      s3,
      bucket: srv.bucket,
      env: { S3SFTP_SETSTATMODE: '0' },
      users: [{ username: 'alice', keyFile: key, keyPrefix: 'users/strict/' }],
    });
  });
  after(() => strictSrv.stop());

  test('chmod fails with OP_UNSUPPORTED', async () => {
    const r = await sftpBatch(strictSrv.port, 'alice', key, 'put up.bin\n-chmod 600 up.bin\npwd\n', { cwd: work });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /not supported|unsupported/i);
  });

  test('put -p (mode and times in one request) is refused whole: the file is stored, no time is set', async () => {
    const file = join(work, 'strict.txt');
    await writeFile(file, 'strict');
    const when = new Date('2018-01-01T00:00:00Z');
    await utimes(file, when, when);
    const r = await sftpBatch(strictSrv.port, 'alice', key, '-put -p strict.txt\n', { cwd: work });
    assert.match(r.stderr, /setstat|unsupported/i);
    const client = s3ClientFor(s3);
    const head = await client.send(new HeadObjectCommand({ Bucket: srv.bucket, Key: 'users/strict/strict.txt' }));
    client.destroy();
    assert.equal(head.Metadata?.mtime, undefined);
  });

  test('a SETSTAT mixing mode and time is refused whole with a message naming setstatMode; a time alone is stored', async () => {
    const { sftp, end } = await connectRaw(strictSrv.port, 'alice', key);
    try {
      const h = handleOf(await sftp.open('/raw.txt', FXF.WRITE | FXF.CREAT | FXF.TRUNC));
      await sftp.write(h, 0, Buffer.from('raw'));
      await sftp.close(h);
      const mixed = await sftp.setstat('/raw.txt', { mode: 0o600, mtime: 1_500_000_000 });
      assert.equal(mixed.type === 'status' && mixed.code, FX.OP_UNSUPPORTED);
      assert.match(mixed.type === 'status' ? mixed.message : '', /setstatMode/);
      const st = await sftp.stat('/raw.txt');
      assert.notEqual(st.type === 'attrs' && st.attrs.mtime, 1_500_000_000);
      const timeOnly = await sftp.setstat('/raw.txt', { mtime: 1_500_000_000 });
      assert.equal(timeOnly.type === 'status' && timeOnly.code, FX.OK);
      const after = await sftp.stat('/raw.txt');
      assert.equal(after.type === 'attrs' && after.attrs.mtime, 1_500_000_000);
    } finally {
      end();
    }
  });
});

describe('setstatMode 1', () => {
  let ignoreSrv: TestServer;
  before(async () => {
    ignoreSrv = await startTestServer({
      s3,
      bucket: srv.bucket,
      env: { S3SFTP_SETSTATMODE: '1' },
      users: [{ username: 'alice', keyFile: key, keyPrefix: 'users/ignore/' }],
    });
  });
  after(() => ignoreSrv.stop());

  test('chmod, chown and put -p succeed, and nothing is stored', async () => {
    const file = join(work, 'ignored.txt');
    await writeFile(file, 'ignored');
    const when = new Date('2019-01-01T00:00:00Z');
    await utimes(file, when, when);
    const r = await sftpBatch(ignoreSrv.port, 'alice', key, 'put -p ignored.txt\nchmod 600 ignored.txt\nchown 1000 ignored.txt\nls -l ignored.txt\n', { cwd: work });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /-rw-r--r--.* ignored\.txt/);
    const client = s3ClientFor(s3);
    const head = await client.send(new HeadObjectCommand({ Bucket: srv.bucket, Key: 'users/ignore/ignored.txt' }));
    client.destroy();
    assert.equal(head.Metadata?.mtime, undefined);
    assert.ok(head.LastModified!.getTime() > when.getTime());
  });
});
