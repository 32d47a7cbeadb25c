/**
 * Other real clients (paramiko, rclone, lftp, curl, psftp) and the situations OpenSSH's
 * batch mode cannot set up: operations S3 cannot do, STAT of a file still
 * uploading, an interrupted upload, many sessions at once, a big directory.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, readFile, rm, writeFile, readdir, utimes } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes, createHash } from 'node:crypto';
import { spawn } from 'node:child_process';
import { ListMultipartUploadsCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import type { SwiftS3 } from '../../dev/swift.ts';
import {
  PYTHON,
  createBucket,
  makeClientKey,
  run,
  s3ClientFor,
  s3Server,
  sftpBatch,
  startTestServer,
  type TestServer,
} from '../support/harness.ts';

let s3: SwiftS3;
let srv: TestServer;
let work: string;
let key: string;
const PASSWORD = 'pa55-word';

before(async () => {
  s3 = await s3Server();
  work = await mkdtemp(join(tmpdir(), 's3sftp-clients-'));
  key = await makeClientKey(work, 'carol');
  srv = await startTestServer({
    s3,
    bucket: await createBucket(s3),
    // The default configuration: what a new user runs.
    users: [{ username: 'carol', keyFile: key, password: PASSWORD, keyPrefix: 'tenants/carol/' }],
  });
});

after(async () => {
  await srv?.stop();
  await s3?.stop();
  await rm(work, { recursive: true, force: true });
});

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** Runs a paramiko script; `sftp` is connected as carol. The script prints one JSON line. */
async function paramiko(body: string, timeoutMs = 60_000): Promise<Record<string, unknown>> {
  const script = `
import json, sys, paramiko
from paramiko.sftp import SFTPError
def connect():
    t = paramiko.Transport(("127.0.0.1", ${srv.port}))
    t.connect(username="carol", password=${JSON.stringify(PASSWORD)})
    return t, paramiko.SFTPClient.from_transport(t)
def code_of(fn):
    try:
        fn()
        return "ok"
    except IOError as e:
        return "%s: %s" % (type(e).__name__, e)
transport, sftp = connect()
out = {}
${body}
print(json.dumps(out))
`;
  const r = await run(PYTHON, ['-c', script], { timeoutMs });
  assert.equal(r.code, 0, `paramiko script failed: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').at(-1) ?? '{}') as Record<string, unknown>;
}

describe('paramiko', () => {
  test('operations S3 cannot do answer OP_UNSUPPORTED with a message, and the session goes on', async () => {
    const out = await paramiko(`
with sftp.open("base.txt", "w") as f:
    f.write(b"0123456789")
out["symlink"] = code_of(lambda: sftp.symlink("base.txt", "link.txt"))
out["readlink"] = code_of(lambda: sftp.readlink("base.txt"))
out["readwrite"] = code_of(lambda: sftp.open("base.txt", "r+"))
out["truncate"] = code_of(lambda: sftp.truncate("base.txt", 3))
out["chmod"] = code_of(lambda: sftp.chmod("base.txt", 0o600))
out["utime"] = code_of(lambda: sftp.utime("base.txt", (1500000000, 1500000000)))
out["mtime"] = sftp.stat("base.txt").st_mtime
out["after"] = sftp.stat("base.txt").st_size
`);
    for (const op of ['symlink', 'readlink', 'readwrite', 'truncate']) {
      assert.match(String(out[op]), /not supported|unsupported/i, `${op}: ${out[op]}`);
    }
    // Default setstatMode 2: a mode change is ignored, a modification time is kept.
    assert.equal(out.chmod, 'ok');
    assert.equal(out.utime, 'ok');
    assert.equal(out.mtime, 1500000000);
    assert.equal(out.after, 10);
  });

  test('a first WRITE into an existing file without TRUNC at an offset other than its size is refused', async () => {
    const out = await paramiko(`
with sftp.open("resume.txt", "w") as f:
    f.write(b"first version")
import paramiko.sftp as ps
from paramiko.py3compat import long
handle = sftp._request(ps.CMD_OPEN, "resume.txt", ps.SFTP_FLAG_WRITE, paramiko.SFTPAttributes())[1].get_binary()
out["resume"] = code_of(lambda: sftp._request(ps.CMD_WRITE, handle, long(5), b"tail"))
out["close"] = code_of(lambda: sftp._request(ps.CMD_CLOSE, handle))
with sftp.open("resume.txt", "r") as f:
    out["content"] = f.read().decode()
`);
    assert.match(String(out.resume), /not supported|unsupported/i);
    assert.match(String(out.close), /discarded/);
    assert.equal(out.content, 'first version');
  });

  test('EXCL refuses to replace an existing file', async () => {
    const out = await paramiko(`
with sftp.open("excl.txt", "w") as f:
    f.write(b"original")
out["excl"] = code_of(lambda: sftp.open("excl.txt", "x"))
with sftp.open("excl.txt", "r") as f:
    out["content"] = f.read().decode()
`);
    assert.notEqual(out.excl, 'ok');
    assert.equal(out.content, 'original');
  });

  test('plain RENAME refuses an existing target; posix-rename replaces it', async () => {
    const out = await paramiko(`
for name, body in (("src.txt", b"new"), ("dst.txt", b"old")):
    with sftp.open(name, "w") as f:
        f.write(body)
out["rename"] = code_of(lambda: sftp.rename("src.txt", "dst.txt"))
with sftp.open("dst.txt", "r") as f:
    out["kept"] = f.read().decode()
out["posix"] = code_of(lambda: sftp.posix_rename("src.txt", "dst.txt"))
with sftp.open("dst.txt", "r") as f:
    out["replaced"] = f.read().decode()
out["src_gone"] = code_of(lambda: sftp.stat("src.txt"))
`);
    assert.notEqual(out.rename, 'ok');
    assert.equal(out.kept, 'old');
    assert.equal(out.posix, 'ok');
    assert.equal(out.replaced, 'new');
    assert.match(String(out.src_gone), /FileNotFoundError/);
  });

  test('a read-write open that creates or truncates is an upload; reading unstored bytes is refused, never wrong', async () => {
    const out = await paramiko(`
with sftp.open("rw.txt", "w") as f:
    f.write(b"old content")
f = sftp.open("rw.txt", "w+")
f.set_pipelined(False)
f.write(b"new")
f.flush()
out["size_during"] = sftp.stat("rw.txt").st_size
f.seek(0)
out["read_back"] = code_of(lambda: f.read(3))
f.seek(3)
out["read_eof"] = f.read(10).decode()
f.close()
with sftp.open("rw.txt", "r") as g:
    out["stored"] = g.read().decode()
`);
    assert.equal(out.size_during, 3, 'STAT of a file being overwritten shows the bytes received');
    assert.match(String(out.read_back), /still being uploaded/);
    assert.equal(out.read_eof, '');
    assert.equal(out.stored, 'new');
  });

  test('STAT of a file still uploading shows the bytes received so far; it appears in S3 only at CLOSE', async () => {
    const out = await paramiko(`
t2, other = connect()
f = sftp.open("growing.bin", "w")
f.set_pipelined(False)
f.write(b"x" * 300000)
f.flush()
out["during"] = other.stat("growing.bin").st_size
f.close()
out["after"] = other.stat("growing.bin").st_size
`);
    assert.equal(out.during, 300000);
    assert.equal(out.after, 300000);
  });

  test('random reads at any offset, and EOF past the end', async () => {
    const data = randomBytes(6 * 1024 * 1024);
    await writeFile(join(work, 'random.bin'), data);
    const out = await paramiko(`
sftp.put(${JSON.stringify(join(work, 'random.bin'))}, "random.bin")
f = sftp.open("random.bin", "r")
res = []
for off in [5000000, 17, 3145728, 6291455, 0]:
    f.seek(off)
    res.append(f.read(1000).hex())
f.seek(6291456)
out["past_end"] = len(f.read(10))
out["reads"] = res
f.close()
`);
    const expect = [5000000, 17, 3145728, 6291455, 0].map((off) => data.subarray(off, off + 1000).toString('hex'));
    assert.deepEqual(out.reads, expect);
    assert.equal(out.past_end, 0);
  });
});

describe('interrupted upload', () => {
  test('a client that disconnects mid-upload leaves no object and no open multipart upload', async () => {
    const big = join(work, 'interrupted.bin');
    await writeFile(big, randomBytes(40 * 1024 * 1024));
    const child = spawn(
      'sftp',
      ['-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'BatchMode=yes', '-i', key, '-P', String(srv.port), '-b', '-', 'carol@127.0.0.1'],
      { cwd: work, stdio: ['pipe', 'ignore', 'ignore'] },
    );
    child.stdin.end('put interrupted.bin\n');
    const client = s3ClientFor(s3);
    // Kill the client once the server has started a multipart upload (bounded wait).
    for (let i = 0; i < 200; i++) {
      const mpu = await client.send(new ListMultipartUploadsCommand({ Bucket: srv.bucket, Prefix: 'tenants/carol/interrupted' }));
      if ((mpu.Uploads ?? []).length > 0) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    child.kill('SIGKILL');
    let uploads = 1;
    for (let i = 0; i < 100 && uploads > 0; i++) {
      await new Promise((r) => setTimeout(r, 100));
      const mpu = await client.send(new ListMultipartUploadsCommand({ Bucket: srv.bucket, Prefix: 'tenants/carol/interrupted' }));
      uploads = (mpu.Uploads ?? []).length;
    }
    const objects = await client.send(new ListObjectsV2Command({ Bucket: srv.bucket, Prefix: 'tenants/carol/interrupted' }));
    client.destroy();
    assert.equal(uploads, 0, 'the multipart upload was aborted');
    assert.equal(objects.KeyCount ?? 0, 0, 'no partial object is visible');
  });
});

describe('scale', () => {
  test('20 concurrent sessions upload and download their own files', async () => {
    const files = await Promise.all(
      Array.from({ length: 20 }, async (_, i) => {
        const data = randomBytes(200_000 + i * 1000);
        await writeFile(join(work, `c${i}.bin`), data);
        return sha256(data);
      }),
    );
    // As with OpenSSH, a file cannot be put into a directory that does not exist.
    assert.equal((await sftpBatch(srv.port, 'carol', key, 'mkdir conc\n', { cwd: work })).code, 0);
    const results = await Promise.all(
      files.map((_, i) => sftpBatch(srv.port, 'carol', key, `put c${i}.bin conc/c${i}.bin\nget conc/c${i}.bin c${i}.back\n`, { cwd: work, timeoutMs: 120_000 })),
    );
    results.forEach((r, i) => assert.equal(r.code, 0, `session ${i}: ${r.stderr}`));
    for (let i = 0; i < 20; i++) assert.equal(sha256(await readFile(join(work, `c${i}.back`))), files[i]);
  });

  test('a directory of 2,500 entries lists every name exactly once', async () => {
    const client = s3ClientFor(s3);
    const names = Array.from({ length: 2500 }, (_, i) => `f${String(i).padStart(5, '0')}.txt`);
    for (let i = 0; i < names.length; i += 50) {
      await Promise.all(
        names.slice(i, i + 50).map((n) => client.send(new PutObjectCommand({ Bucket: srv.bucket, Key: `tenants/carol/big/${n}`, Body: n }))),
      );
    }
    await client.send(new PutObjectCommand({ Bucket: srv.bucket, Key: 'tenants/carol/big/sub/x.txt', Body: 'x' }));
    client.destroy();
    const r = await sftpBatch(srv.port, 'carol', key, 'ls -1 big\n', { timeoutMs: 120_000 });
    assert.equal(r.code, 0, r.stderr);
    const listed = r.stdout.split('\n').map((l) => l.trim().replace(/^big\//, '')).filter((l) => /^f\d{5}\.txt$|^sub$/.test(l));
    assert.equal(listed.length, 2501);
    assert.equal(new Set(listed).size, 2501);
  });
});

describe('rclone and lftp', () => {
  /** rclone with an on-the-fly remote for carol; RCLONE_CONFIG=/dev/null keeps it away from any user config. */
  async function rclone(args: string[]) {
    const obscured = await run('rclone', ['obscure', PASSWORD]);
    const remote = `:sftp,host=127.0.0.1,port=${srv.port},user=carol,pass=${obscured.stdout.trim()},shell_type=none:`;
    const env = { RCLONE_CONFIG: '/dev/null', AWS_CA_BUNDLE: '' };
    return run('rclone', args.map((a) => a.replace(/^remote:/, remote)), { env, timeoutMs: 120_000 });
  }

  test('rclone copy and rclone sync with default options succeed with no error line', async () => {
    const src = await mkdtemp(join(work, 'rc-sync-'));
    await mkdir(join(src, 'sub'));
    await writeFile(join(src, 'one.txt'), 'one');
    await writeFile(join(src, 'sub', 'two.txt'), 'two');
    const when = new Date('2022-05-06T07:08:09Z');
    await utimes(join(src, 'one.txt'), when, when);
    const copy = await rclone(['copy', src, 'remote:rc-sync']);
    assert.equal(copy.code, 0, copy.stderr);
    assert.doesNotMatch(copy.stderr, /ERROR|Failed|unsupported/i);
    await writeFile(join(src, 'three.txt'), 'three');
    const sync = await rclone(['sync', src, 'remote:rc-sync']);
    assert.equal(sync.code, 0, sync.stderr);
    assert.doesNotMatch(sync.stderr, /ERROR|Failed|unsupported/i);
    // STAT reports the stored time (listings too once they carry it: issue 9, item 3).
    const out = await paramiko(`
out["one"] = sftp.stat("rc-sync/one.txt").st_mtime
out["names"] = sorted(sftp.listdir("rc-sync"))
`);
    assert.equal(out.one, when.getTime() / 1000);
    assert.deepEqual(out.names, ['one.txt', 'sub', 'three.txt']);
  });

  test('lftp mirror -R uploads a tree with its times, with no error line', async () => {
    const src = await mkdtemp(join(work, 'lftp-mirror-'));
    await mkdir(join(src, 'inner'));
    await writeFile(join(src, 'top.txt'), 'top');
    await writeFile(join(src, 'inner', 'deep.txt'), 'deep');
    const when = new Date('2021-09-10T11:12:13Z');
    await utimes(join(src, 'top.txt'), when, when);
    const script = [
      'set sftp:auto-confirm yes',
      'set net:max-retries 1',
      `open -u carol,${PASSWORD} -p ${srv.port} sftp://127.0.0.1`,
      `mirror -R ${src} lftp-mirror`,
      'bye',
    ].join('\n');
    const r = await run('lftp', ['-c', script], { timeoutMs: 60_000 });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr.trim(), '');
    const out = await paramiko(`
out["top"] = sftp.stat("lftp-mirror/top.txt").st_mtime
out["deep"] = sftp.open("lftp-mirror/inner/deep.txt").read().decode()
`);
    assert.equal(out.top, when.getTime() / 1000);
    assert.equal(out.deep, 'deep');
  });

  test('rclone copies a tree up and back with identical content', async () => {
    const src = await mkdtemp(join(work, 'rc-src-'));
    const dst = await mkdtemp(join(work, 'rc-dst-'));
    await writeFile(join(src, 'a.bin'), randomBytes(7 * 1024 * 1024));
    await writeFile(join(src, 'b c.txt'), 'spaced');
    const obscured = await run('rclone', ['obscure', PASSWORD]);
    const remote = `:sftp,host=127.0.0.1,port=${srv.port},user=carol,pass=${obscured.stdout.trim()},shell_type=none:`;
    const env = { RCLONE_CONFIG: '/dev/null', AWS_CA_BUNDLE: '' };
    const up = await run('rclone', ['copy', src, `${remote}rclone-tree`], { env, timeoutMs: 120_000 });
    assert.equal(up.code, 0, up.stderr);
    const down = await run('rclone', ['copy', `${remote}rclone-tree`, dst], { env, timeoutMs: 120_000 });
    assert.equal(down.code, 0, down.stderr);
    const check = await run('rclone', ['check', src, dst], { env });
    assert.equal(check.code, 0, check.stderr);
    assert.deepEqual((await readdir(dst)).sort(), ['a.bin', 'b c.txt']);
  });

  test('curl (libssh2) uploads, lists and downloads a file', async () => {
    const data = randomBytes(300_000);
    await writeFile(join(work, 'curl.bin'), data);
    const base = `sftp://127.0.0.1:${srv.port}`;
    const auth = ['--insecure', '--silent', '--show-error', '-u', `carol:${PASSWORD}`];
    const up = await run('curl', [...auth, '--ftp-create-dirs', '-T', join(work, 'curl.bin'), `${base}/curl/curl.bin`]);
    assert.equal(up.code, 0, up.stderr);
    const list = await run('curl', [...auth, `${base}/curl/`]);
    assert.equal(list.code, 0, list.stderr);
    assert.match(list.stdout, /curl\.bin/);
    const down = await run('curl', [...auth, '-o', join(work, 'curl-back.bin'), `${base}/curl/curl.bin`]);
    assert.equal(down.code, 0, down.stderr);
    assert.equal(sha256(await readFile(join(work, 'curl-back.bin'))), sha256(data));
  });

  test('lftp mirrors a file up and lists it', async () => {
    await writeFile(join(work, 'lftp.txt'), 'via lftp');
    const script = [
      'set sftp:auto-confirm yes',
      'set net:max-retries 1',
      `open -u carol,${PASSWORD} -p ${srv.port} sftp://127.0.0.1`,
      `put ${join(work, 'lftp.txt')} -o lftp.txt`,
      'cls -1',
      `get lftp.txt -o ${join(work, 'lftp-back.txt')}`,
      'bye',
    ].join('\n');
    const r = await run('lftp', ['-c', script], { timeoutMs: 60_000 });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /lftp\.txt/);
    assert.equal(await readFile(join(work, 'lftp-back.txt'), 'utf8'), 'via lftp');
  });
});

describe('psftp (PuTTY)', () => {
  /** Runs a psftp batch script as carol, trusting the server's host key by its SHA-256 fingerprint, as a user pins it. */
  async function psftp(commands: string[], cwd: string) {
    const scanned = await run('ssh-keyscan', ['-p', String(srv.port), '-t', 'ed25519', '127.0.0.1']);
    await writeFile(join(work, 'psftp-hostkey'), scanned.stdout);
    const fingerprint = (await run('ssh-keygen', ['-lf', join(work, 'psftp-hostkey')])).stdout.split(' ')[1] ?? '';
    assert.match(fingerprint, /^SHA256:/, scanned.stderr);
    await writeFile(join(work, 'psftp-script'), `${commands.join('\n')}\nquit\n`);
    return run('psftp', ['-batch', '-hostkey', fingerprint, '-P', String(srv.port), '-pw', PASSWORD, '-b', join(work, 'psftp-script'), 'carol@127.0.0.1'], { cwd, timeoutMs: 120_000 });
  }

  test('mput, ls, ren, rm and mget with its defaults: the files come back identical', async () => {
    const src = await mkdtemp(join(work, 'ps-src-'));
    const dst = await mkdtemp(join(work, 'ps-dst-'));
    const files = { 'a.dat': randomBytes(100_000), 'b.dat': randomBytes(3 * 1024 * 1024 + 5), 'c d.txt': Buffer.from('spaced name') };
    for (const [name, data] of Object.entries(files)) await writeFile(join(src, name), data);
    const r = await psftp(['mkdir ps', 'cd ps', `lcd ${src}`, 'mput *', 'ls', 'ren a.dat renamed.dat', 'rm "c d.txt"', `lcd ${dst}`, 'mget *'], src);
    assert.equal(r.code, 0, r.stderr + r.stdout);
    assert.match(r.stdout, /a\.dat/);
    assert.match(r.stdout, /c d\.txt/);
    assert.deepEqual((await readdir(dst)).sort(), ['b.dat', 'renamed.dat']);
    assert.equal(sha256(await readFile(join(dst, 'renamed.dat'))), sha256(files['a.dat']));
    assert.equal(sha256(await readFile(join(dst, 'b.dat'))), sha256(files['b.dat']));
  });

  test('reput continues an interrupted upload: the stored file is the whole local one', async () => {
    const src = await mkdtemp(join(work, 'ps-reput-'));
    const data = randomBytes(2 * 1024 * 1024 + 3);
    await writeFile(join(src, 'resume.bin'), data);
    // What an interrupted upload left: the first part, stored.
    const client = s3ClientFor(s3);
    try {
      await client.send(new PutObjectCommand({ Bucket: srv.bucket, Key: 'tenants/carol/resume.bin', Body: data.subarray(0, 1024 * 1024) }));
    } finally {
      client.destroy();
    }
    const r = await psftp([`lcd ${src}`, 'reput resume.bin'], src);
    assert.equal(r.code, 0, r.stderr + r.stdout);
    // psftp reads the size to continue from with FSTAT on the handle it opened without TRUNC.
    assert.match(r.stdout, /restarting at file position 1048576\b/);
    const back = await paramiko(`
import hashlib
out["sha"] = hashlib.sha256(sftp.open("resume.bin").read()).hexdigest()
`);
    assert.equal(back.sha, sha256(data));
  });
});
