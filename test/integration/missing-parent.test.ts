/**
 * Creating a file or a directory in a directory that does not exist, or
 * renaming into one. S3 would accept the key "a/b/c" and thereby create "a/"
 * and "a/b/" implicitly, also for a user without the create_dirs permission.
 * The server answers as OpenSSH's sftp-server does instead: NO_SUCH_FILE,
 * and nothing is stored or moved.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import type { SwiftS3 } from '../../dev/swift.ts';
import { createBucket, makeClientKey, s3ClientFor, s3Server, sftpBatch, startTestServer, type TestServer } from '../support/harness.ts';

let s3: SwiftS3;
let srv: TestServer;
let work: string;
let fullKey: string;
let noDirsKey: string;

before(async () => {
  s3 = await s3Server();
  work = await mkdtemp(join(tmpdir(), 's3sftp-parent-'));
  fullKey = await makeClientKey(work, 'full');
  noDirsKey = await makeClientKey(work, 'nodirs');
  await writeFile(join(work, 'a.txt'), 'payload\n');
  srv = await startTestServer({
    s3,
    bucket: await createBucket(s3),
    users: [
      { username: 'full', keyFile: fullKey, keyPrefix: 'full/' },
      { username: 'nodirs', keyFile: noDirsKey, keyPrefix: 'nodirs/', permissions: ['list', 'download', 'upload', 'overwrite', 'delete', 'rename'] },
    ],
  });
});

after(async () => {
  await srv?.stop();
  await s3?.stop();
  await rm(work, { recursive: true, force: true });
});

async function keysUnder(prefix: string): Promise<string[]> {
  const client = s3ClientFor(s3);
  const page = await client.send(new ListObjectsV2Command({ Bucket: srv.bucket, Prefix: prefix }));
  client.destroy();
  return (page.Contents ?? []).map((o) => o.Key!);
}

test('without create_dirs, a put into a missing directory fails and creates no directory', async () => {
  const r = await sftpBatch(srv.port, 'nodirs', noDirsKey, 'put a.txt missing/deeper/a.txt\n', { cwd: work });
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /No such file/i);
  assert.deepEqual(await keysUnder('nodirs/'), []);
});

test('with every permission, as with OpenSSH: no such file until the directory is made', async () => {
  const refused = await sftpBatch(srv.port, 'full', fullKey, 'put a.txt missing/a.txt\n', { cwd: work });
  assert.notEqual(refused.code, 0);
  assert.match(refused.stderr, /No such file/i);
  assert.deepEqual(await keysUnder('full/'), []);
  const ok = await sftpBatch(srv.port, 'full', fullKey, 'mkdir made\nput a.txt made/a.txt\nput a.txt top.txt\n', { cwd: work });
  assert.equal(ok.code, 0, ok.stderr);
  assert.deepEqual((await keysUnder('full/')).sort(), ['full/made/', 'full/made/a.txt', 'full/top.txt']);
});

test('a directory that exists only through its files (no marker) takes new files', async () => {
  const client = s3ClientFor(s3);
  const { PutObjectCommand } = await import('@aws-sdk/client-s3');
  await client.send(new PutObjectCommand({ Bucket: srv.bucket, Key: 'nodirs/implicit/old.txt', Body: 'old' }));
  client.destroy();
  const r = await sftpBatch(srv.port, 'nodirs', noDirsKey, 'put a.txt implicit/new.txt\n', { cwd: work });
  assert.equal(r.code, 0, r.stderr);
  assert.ok((await keysUnder('nodirs/implicit/')).includes('nodirs/implicit/new.txt'));
});

test('mkdir in a missing directory fails as mkdir(2) does, and makes nothing', async () => {
  const refused = await sftpBatch(srv.port, 'full', fullKey, 'mkdir nowhere/sub\n', { cwd: work });
  assert.notEqual(refused.code, 0);
  assert.match(refused.stderr, /No such file/i);
  assert.deepEqual(await keysUnder('full/nowhere'), []);
  const ok = await sftpBatch(srv.port, 'full', fullKey, 'mkdir nowhere\nmkdir nowhere/sub\n', { cwd: work });
  assert.equal(ok.code, 0, ok.stderr);
  assert.deepEqual((await keysUnder('full/nowhere')).sort(), ['full/nowhere/', 'full/nowhere/sub/']);
});

test('a rename into a missing directory fails as rename(2) does: nothing moves and no directory appears, with or without create_dirs', async () => {
  for (const [user, key] of [['full', fullKey], ['nodirs', noDirsKey]] as const) {
    const put = await sftpBatch(srv.port, user, key, 'put a.txt moving.txt\n', { cwd: work });
    assert.equal(put.code, 0, put.stderr);
    const refused = await sftpBatch(srv.port, user, key, 'rename moving.txt elsewhere/moved.txt\n', { cwd: work });
    assert.notEqual(refused.code, 0, `${user}: the rename was refused`);
    assert.match(refused.stderr, /No such file/i);
    assert.deepEqual(await keysUnder(`${user}/elsewhere`), [], `${user}: no directory made`);
    assert.ok((await keysUnder(`${user}/`)).includes(`${user}/moving.txt`), `${user}: the file stayed`);
  }
});
