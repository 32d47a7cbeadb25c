/**
 * Bandwidth limits through the real server on Swift S3 with OpenSSH sftp: a
 * few MiB at a low rate take as long as the rate says (the measured rate,
 * as a ratio to the limit, within ±20%), per user in both directions, and a
 * server-wide cap is shared by two sessions at once.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { SwiftS3 } from '../../dev/swift.ts';
import { createBucket, makeClientKey, s3Server, sftpBatch, startTestServer, type TestServer } from '../support/harness.ts';

const KiB = 1024;
const MiB = 1024 * KiB;
const LIMIT_KIBPS = 512;
let s3: SwiftS3;
let perUser: TestServer;
let capped: TestServer;
let work: string;
let key: string;

before(async () => {
  s3 = await s3Server();
  work = await mkdtemp(join(tmpdir(), 's3sftp-bandwidth-'));
  key = await makeClientKey(work);
  perUser = await startTestServer({
    s3,
    bucket: await createBucket(s3),
    users: [{ username: 'slow', keyFile: key, keyPrefix: 'slow/', extraSpec: { bandwidth: { uploadKiBps: LIMIT_KIBPS, downloadKiBps: LIMIT_KIBPS } } }],
  });
  capped = await startTestServer({
    s3,
    bucket: await createBucket(s3),
    env: { S3SFTP_BANDWIDTH_UPLOADKIBPS: String(LIMIT_KIBPS) },
    users: [
      { username: 'one', keyFile: key, keyPrefix: 'one/' },
      { username: 'two', keyFile: key, keyPrefix: 'two/' },
    ],
  });
  await writeFile(join(work, 'three.bin'), randomBytes(3 * MiB));
  await writeFile(join(work, 'half.bin'), randomBytes(1.5 * MiB));
});

after(async () => {
  await perUser?.stop();
  await capped?.stop();
  await s3?.stop();
  await rm(work, { recursive: true, force: true });
});

/** Wall time of a session that transfers nothing (login, handshake). */
async function idleSessionMs(srv: TestServer, user: string): Promise<number> {
  const t0 = performance.now();
  const idle = await sftpBatch(srv.port, user, key, 'pwd\n', { cwd: work });
  assert.equal(idle.code, 0, idle.stderr);
  return performance.now() - t0;
}

/**
 * Wall time of an sftp batch, less that of a session that transfers nothing. The quicker of two
 * idle sessions counts: a slow one (a loaded machine, a cold server) would make the transfer look
 * faster than the limit allows.
 */
async function transferSeconds(srv: TestServer, user: string, commands: string): Promise<number> {
  const overhead = Math.min(await idleSessionMs(srv, user), await idleSessionMs(srv, user));
  const t1 = performance.now();
  const r = await sftpBatch(srv.port, user, key, commands, { cwd: work, timeoutMs: 60_000 });
  const total = performance.now() - t1;
  assert.equal(r.code, 0, r.stderr);
  return (total - overhead) / 1000;
}

function assertRate(t: { diagnostic(m: string): void }, bytes: number, seconds: number, what: string): void {
  const ratio = bytes / KiB / seconds / LIMIT_KIBPS;
  t.diagnostic(`${what}: ${(bytes / KiB / seconds).toFixed(0)} KiB/s, ratio ${ratio.toFixed(3)} to the limit`);
  assert.ok(ratio > 0.8 && ratio < 1.2, `${what}: ${(bytes / KiB / seconds).toFixed(0)} KiB/s against a limit of ${LIMIT_KIBPS} (ratio ${ratio.toFixed(2)})`);
}

describe('bandwidth limits on S3', () => {
  it('spec.bandwidth.uploadKiBps paces a 3 MiB put', async (t) => {
    assertRate(t, 3 * MiB, await transferSeconds(perUser, 'slow', 'put three.bin\n'), 'upload');
  });

  it('spec.bandwidth.downloadKiBps paces a 3 MiB get', async (t) => {
    assertRate(t, 3 * MiB, await transferSeconds(perUser, 'slow', 'get three.bin back.bin\n'), 'download');
    assert.equal((await stat(join(work, 'back.bin'))).size, 3 * MiB);
  });

  it('the server-wide cap is shared by two sessions', async (t) => {
    const t0 = performance.now();
    const [a, b] = await Promise.all([
      sftpBatch(capped.port, 'one', key, 'put half.bin\n', { cwd: work, timeoutMs: 60_000 }),
      sftpBatch(capped.port, 'two', key, 'put half.bin\n', { cwd: work, timeoutMs: 60_000 }),
    ]);
    const total = performance.now() - t0;
    assert.equal(a.code, 0, a.stderr);
    assert.equal(b.code, 0, b.stderr);
    const overhead = Math.min(await idleSessionMs(capped, 'one'), await idleSessionMs(capped, 'one'));
    // Alone, each would take 3 s at the cap; together they share it: 3 MiB in about 6 s.
    assertRate(t, 3 * MiB, (total - overhead) / 1000, 'two sessions together');
  });
});
