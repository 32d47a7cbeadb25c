/** A 1 GiB file through OpenSSH sftp: multipart upload and parallel ranged download keep every byte. */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import type { SwiftS3 } from '../../dev/swift.ts';
import { createBucket, makeClientKey, s3Server, sftpBatch, startTestServer, type TestServer } from '../support/harness.ts';

const SIZE = 1024 * 1024 * 1024;
let s3: SwiftS3;
let srv: TestServer;
let work: string;
let key: string;

before(async () => {
  s3 = await s3Server();
  work = await mkdtemp(join(tmpdir(), 's3sftp-large-'));
  key = await makeClientKey(work);
  srv = await startTestServer({
    s3,
    bucket: await createBucket(s3),
    env: { S3SFTP_S3_UPLOAD_PARTSIZE: '16MiB', S3SFTP_S3_UPLOAD_CONCURRENCY: '4' },
    users: [{ username: 'big', keyFile: key, keyPrefix: 'big/' }],
  });
});

after(async () => {
  await srv?.stop();
  await s3?.stop();
  await rm(work, { recursive: true, force: true });
});

async function writeRandomFile(path: string, size: number): Promise<string> {
  const hash = createHash('sha256');
  const out = createWriteStream(path);
  const chunk = 4 * 1024 * 1024;
  for (let written = 0; written < size; written += chunk) {
    const block = randomBytes(Math.min(chunk, size - written));
    hash.update(block);
    if (!out.write(block)) await once(out, 'drain');
  }
  out.end();
  await once(out, 'finish');
  return hash.digest('hex');
}

async function hashFile(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const block of createReadStream(path)) hash.update(block as Buffer);
  return hash.digest('hex');
}

test('1 GiB put and get round trip with matching sha256', { timeout: 15 * 60_000 }, async () => {
  const expected = await writeRandomFile(join(work, 'gig.bin'), SIZE);
  const r = await sftpBatch(srv.port, 'big', key, 'put gig.bin\nls -l gig.bin\nget gig.bin gig.back\n', { cwd: work, timeoutMs: 14 * 60_000 });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, new RegExp(`\\b${SIZE}\\b`));
  assert.equal(await hashFile(join(work, 'gig.back')), expected);
});
