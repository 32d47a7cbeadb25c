/**
 * Live policy with the real pieces: Swift S3, the users directory (its SftpUser file rewritten
 * while a session is open) and an SFTP session that stays open. Permissions apply to the next
 * request of that session; a new keyPrefix or allowedCIDRs that exclude the client end the
 * connection; each within 5 s. (bucket and roleArn changes, and the same cases fast, are in
 * test/unit/live-policy.test.ts.)
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { SwiftS3 } from '../../dev/swift.ts';
import { createBucket, makeClientKey, s3Server, startTestServer, type TestServer, type TestUser } from '../support/harness.ts';
import { connectRaw, FX, FXF, type RawSftp, type Reply } from '../support/sftp-raw.ts';

let s3: SwiftS3;
let srv: TestServer;
let work: string;
let key: string;
const ends: (() => void)[] = [];

before(async () => {
  s3 = await s3Server();
  work = await mkdtemp(join(tmpdir(), 's3sftp-live-'));
  key = await makeClientKey(work, 'carol');
  srv = await startTestServer({ s3, bucket: await createBucket(s3) });
});

after(async () => {
  for (const end of ends) end();
  await srv?.stop();
  await s3?.stop();
  await rm(work, { recursive: true, force: true });
});

async function sessionAs(user: TestUser): Promise<RawSftp> {
  await srv.writeUser(user);
  // The directory source picks the file up within its quiet time; retry the login until it has.
  for (let i = 0; ; i++) {
    try {
      const c = await connectRaw(srv.port, user.username, key);
      ends.push(c.end);
      return c.sftp;
    } catch (err) {
      if (i >= 50) throw err;
      await sleep(100);
    }
  }
}

async function put(sftp: RawSftp, path: string, body: string): Promise<Reply> {
  const open = await sftp.open(path, FXF.WRITE | FXF.CREAT | FXF.TRUNC);
  if (open.type !== 'handle') return open;
  await sftp.write(open.handle, 0, Buffer.from(body));
  return sftp.close(open.handle);
}

/** Polls `check` every 100 ms for up to 5 s; returns the milliseconds it took, or fails. */
async function within5s(what: string, check: () => Promise<boolean>): Promise<number> {
  const start = performance.now();
  while (performance.now() - start < 5000) {
    if (await check()) return Math.round(performance.now() - start);
    await sleep(100);
  }
  assert.fail(`${what} did not happen within 5 s`);
}

describe('a rewritten SftpUser file reaches an open session within 5 s', () => {
  test('permissions narrowed to [list]: the same session can no longer upload, download or delete, and can still list', async () => {
    const user: TestUser = { username: 'carol', keyFile: key, keyPrefix: 'carol/' };
    const sftp = await sessionAs(user);
    assert.equal(((await put(sftp, '/a.txt', 'hello')) as { code: number }).code, FX.OK);
    await srv.writeUser({ ...user, permissions: ['list'] });
    const ms = await within5s('upload refused', async () => ((await put(sftp, '/b.txt', 'x')) as { code?: number }).code === FX.PERMISSION_DENIED);
    assert.equal(((await sftp.open('/a.txt', FXF.READ)) as { code?: number }).code, FX.PERMISSION_DENIED);
    assert.equal(((await sftp.remove('/a.txt')) as { code?: number }).code, FX.PERMISSION_DENIED);
    // (b.txt may exist: uploads tried before the file was re-read succeeded.)
    assert.ok((await sftp.list('/')).some((e) => e.filename === 'a.txt'), 'listing refused or empty');
    console.log(`permissions change reached the open session after ${ms} ms`);
    // Widened again: the same session downloads.
    await srv.writeUser(user);
    await within5s('download allowed again', async () => (await sftp.open('/a.txt', FXF.READ)).type === 'handle');
  });

  for (const [what, change] of [
    ['keyPrefix moved', (u: TestUser): TestUser => ({ ...u, keyPrefix: 'moved/' })],
    ['allowedCIDRs excluding the client', (u: TestUser): TestUser => ({ ...u, allowedCIDRs: ['10.0.0.0/8'] })],
  ] as const) {
    test(`${what}: the connection is ended`, async () => {
      const user: TestUser = { username: `dave-${what.split(' ')[0]!.toLowerCase()}`, keyFile: key, keyPrefix: 'dave/' };
      const sftp = await sessionAs(user);
      assert.equal(((await put(sftp, '/before.txt', 'x')) as { code: number }).code, FX.OK);
      await srv.writeUser(change(user));
      // A closed session answers with code -1 or rejects (test/support/sftp-raw.ts).
      const ms = await within5s('connection closed', () =>
        sftp.stat('/before.txt').then(
          (r) => (r as { code?: number }).code === -1,
          () => true,
        ),
      );
      console.log(`${what}: connection ended after ${ms} ms`);
    });
  }
});

