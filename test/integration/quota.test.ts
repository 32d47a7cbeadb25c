/**
 * spec.quota through the real server on Swift S3, with OpenSSH sftp: a
 * streaming upload past maxBytes fails with "quota exceeded", stores nothing
 * and leaves no multipart upload; maxFiles refuses one file too many; a delete
 * frees room; an object written outside s3sftp counts after the re-scan.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import ssh2 from 'ssh2';
import type { SFTPWrapper } from 'ssh2';
import { ListMultipartUploadsCommand, ListObjectsV2Command, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import type { SwiftS3 } from '../../dev/swift.ts';
import { createBucket, makeClientKey, run, s3ClientFor, s3Server, sftpBatch, startTestServer, type TestServer } from '../support/harness.ts';
import { FLAGS, SftpClient, statusOf } from '../support/sftp-client.ts';

const MiB = 1024 * 1024;
let s3: SwiftS3;
let srv: TestServer;
let work: string;
let key: string;
let client: S3Client;

before(async () => {
  s3 = await s3Server();
  work = await mkdtemp(join(tmpdir(), 's3sftp-quota-'));
  key = await makeClientKey(work);
  client = s3ClientFor(s3);
  srv = await startTestServer({
    s3,
    bucket: await createBucket(s3),
    env: { S3SFTP_QUOTA_RESCANINTERVAL: '1s' },
    users: [
      { username: 'bytes', keyFile: key, keyPrefix: 'bytes/', extraSpec: { quota: { maxBytes: 12 * MiB } } },
      { username: 'files', keyFile: key, keyPrefix: 'files/', extraSpec: { quota: { maxFiles: 3 } } },
      { username: 'outside', keyFile: key, keyPrefix: 'outside/', extraSpec: { quota: { maxBytes: 4 * MiB } } },
    ],
  });
  await writeFile(join(work, 'big.bin'), Buffer.alloc(20 * MiB, 7));
  await writeFile(join(work, 'ten.bin'), Buffer.alloc(10 * MiB, 1));
  await writeFile(join(work, 'five.bin'), Buffer.alloc(5 * MiB, 2));
  await writeFile(join(work, 'small.txt'), 'small\n');
});

after(async () => {
  await srv?.stop();
  client?.destroy();
  await s3?.stop();
  await rm(work, { recursive: true, force: true });
});

async function keys(prefix: string): Promise<string[]> {
  const page = await client.send(new ListObjectsV2Command({ Bucket: srv.bucket, Prefix: prefix }));
  return (page.Contents ?? []).map((o) => o.Key ?? '').sort();
}

async function multipartUploads(prefix: string): Promise<string[]> {
  const page = await client.send(new ListMultipartUploadsCommand({ Bucket: srv.bucket, Prefix: prefix }));
  return (page.Uploads ?? []).map((u) => `${u.Key ?? ''} ${u.UploadId ?? ''}`);
}

/**
 * The multipart uploads left under `prefix` once Swift's listing has caught up: Swift updates
 * container listings asynchronously, so an aborted upload can stay listed for a moment on a busy
 * machine. Polls for at most 10 s; an upload still listed then was really left behind.
 */
async function uploadsLeft(prefix: string): Promise<string[]> {
  let left = await multipartUploads(prefix);
  for (let i = 0; i < 20 && left.length > 0; i++) {
    await new Promise((resolve) => setTimeout(resolve, 500));
    left = await multipartUploads(prefix);
  }
  return left;
}

/** An ssh2 SFTP channel to the real server, to read the status message OpenSSH's sftp does not print. */
async function sftpChannel(username: string): Promise<{ sftp: SftpClient; end: () => void }> {
  const conn = new ssh2.Client();
  const ready = once(conn, 'ready');
  conn.connect({ host: '127.0.0.1', port: srv.port, username, privateKey: await readFile(key), readyTimeout: 10_000 });
  await ready;
  const channel = await new Promise<SFTPWrapper>((resolve, reject) => conn.sftp((err, s) => (err ? reject(err) : resolve(s))));
  return { sftp: new SftpClient(channel), end: () => conn.end() };
}

describe('quota on S3', () => {
  it('a streaming put past maxBytes fails with "quota exceeded", storing nothing and leaving no multipart upload', async () => {
    const r = await sftpBatch(srv.port, 'bytes', key, 'put big.bin\n', { cwd: work });
    assert.notEqual(r.code, 0, 'the put must fail');
    assert.match(r.stderr, /Failure|quota/i);
    assert.deepEqual(await keys('bytes/'), []);
    assert.deepEqual(await uploadsLeft('bytes/'), []);

    // The status message itself, at the protocol level: FAILURE "quota exceeded".
    const { sftp, end } = await sftpChannel('bytes');
    try {
      const handle = await sftp.open('/proto.bin', FLAGS.WRITE | FLAGS.CREAT | FLAGS.TRUNC);
      const chunk = Buffer.alloc(256 * 1024);
      let failure;
      for (let offset = 0; offset < 13 * MiB && !failure; offset += chunk.length) {
        failure = await statusOf(sftp.write(handle, offset, chunk)).catch(() => undefined);
      }
      assert.deepEqual(failure, { code: 4, message: 'quota exceeded: at most 12582912 bytes' });
      await statusOf(sftp.close(handle));
    } finally {
      end();
    }
    assert.deepEqual(await keys('bytes/'), []);
    assert.deepEqual(await uploadsLeft('bytes/'), []);
  });

  it('a delete frees quota', async () => {
    let r = await sftpBatch(srv.port, 'bytes', key, 'put ten.bin\n', { cwd: work });
    assert.equal(r.code, 0, r.stderr);
    r = await sftpBatch(srv.port, 'bytes', key, 'put five.bin\n', { cwd: work });
    assert.notEqual(r.code, 0, 'five more MiB do not fit beside ten');
    assert.deepEqual(await keys('bytes/'), ['bytes/ten.bin']);
    r = await sftpBatch(srv.port, 'bytes', key, 'rm ten.bin\nput five.bin\n', { cwd: work });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(await keys('bytes/'), ['bytes/five.bin']);
  });

  it('legacy scp (-O) gets the quota error line, and nothing is stored', async () => {
    const r = await run('scp', ['-O', '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'LogLevel=ERROR', '-o', 'BatchMode=yes', '-o', 'IdentitiesOnly=yes', '-i', key, '-P', String(srv.port), join(work, 'big.bin'), 'bytes@127.0.0.1:big-scp.bin']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /quota exceeded/);
    assert.deepEqual((await keys('bytes/')).filter((k) => k.includes('big')), []);
    assert.deepEqual(await uploadsLeft('bytes/'), []);
  });

  it('maxFiles refuses one file too many until one is removed', async () => {
    let r = await sftpBatch(srv.port, 'files', key, 'put small.txt a\nput small.txt b\nmkdir d\nput small.txt d/c\n', { cwd: work });
    assert.equal(r.code, 0, r.stderr);
    r = await sftpBatch(srv.port, 'files', key, 'put small.txt e\n', { cwd: work });
    assert.notEqual(r.code, 0);
    assert.deepEqual(await keys('files/'), ['files/a', 'files/b', 'files/d/', 'files/d/c']);
    // Replacing a file needs no new one.
    r = await sftpBatch(srv.port, 'files', key, 'put small.txt a\nrm b\nput small.txt e\n', { cwd: work });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(await keys('files/'), ['files/a', 'files/d/', 'files/d/c', 'files/e']);
  });

  it('an object written outside s3sftp is counted after the re-scan', async () => {
    // A session first, so the user's usage is counted (empty) before the outside write.
    let r = await sftpBatch(srv.port, 'outside', key, 'put small.txt first\n', { cwd: work });
    assert.equal(r.code, 0, r.stderr);
    await client.send(new PutObjectCommand({ Bucket: srv.bucket, Key: 'outside/elsewhere.bin', Body: Buffer.alloc(4 * MiB) }));
    await new Promise((resolve) => setTimeout(resolve, 2500)); // rescanInterval is 1s
    r = await sftpBatch(srv.port, 'outside', key, 'put small.txt second\n', { cwd: work });
    assert.notEqual(r.code, 0, 'the outside object fills the quota');
    assert.deepEqual(await keys('outside/'), ['outside/elsewhere.bin', 'outside/first']);
  });
});
