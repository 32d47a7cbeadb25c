/**
 * Live policy, fast: a change to an SftpUser reaches sessions that are already open. Permissions
 * apply to the next request of the same session; a change of where the files live (keyPrefix,
 * bucket, roleArn) or of allowedCIDRs that excludes the client ends the connection. The real
 * SshServer over MemoryStorage (test/support/in-process-server.ts); the same with a rewritten
 * users directory and Swift is in test/integration/hardening-limits.test.ts.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { after, before, describe, test } from 'node:test';
import { policyChanged } from '../../src/ssh/live-policy.ts';
import { startInProcessServer, userFor, type InProcessServer } from '../support/in-process-server.ts';
import { SftpClient, statusOf } from '../support/sftp-client.ts';
import type { User } from '../../src/users/user.ts';

const PERMISSION_DENIED = 3;

let srv: InProcessServer;

before(async () => {
  srv = await startInProcessServer({ users: [{ username: 'alice' }] });
});

after(() => srv.stop());

/** Resolves true when the client's connection closes within `ms`, false otherwise. */
async function closesWithin(client: { once(e: 'close', l: () => void): unknown }, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const closed = new Promise<boolean>((resolve) => client.once('close', () => resolve(true)));
  const result = await Promise.race([closed, new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), ms)))]);
  clearTimeout(timer);
  return result;
}

async function session(username: string) {
  const client = await srv.connect(username);
  const sftp = await new Promise<import('ssh2').SFTPWrapper>((resolve, reject) => client.sftp((err, s) => (err ? reject(err) : resolve(s))));
  return { client, sftp: new SftpClient(sftp) };
}

describe('a change to the user reaches open sessions', () => {
  test('permissions: narrowed to [list], the same session can no longer upload, download or delete; widened, it can again', async () => {
    srv.addUser({ username: 'perm' });
    const { client, sftp } = await session('perm');
    await sftp.put('/a.txt', Buffer.from('hello'));
    srv.addUser({ username: 'perm', permissions: ['list'] });
    assert.equal((await statusOf(sftp.put('/b.txt', Buffer.from('x')))).code, PERMISSION_DENIED);
    assert.equal((await statusOf(sftp.get('/a.txt'))).code, PERMISSION_DENIED);
    assert.equal((await statusOf(sftp.remove('/a.txt'))).code, PERMISSION_DENIED);
    assert.deepEqual((await sftp.list('/')).map((e) => e.filename), ['a.txt']);
    srv.addUser({ username: 'perm' });
    assert.equal((await sftp.get('/a.txt')).toString(), 'hello');
    client.end();
  });

  for (const [what, change] of [
    ['keyPrefix', (u: User): User => ({ ...u, s3: { ...u.s3, keyPrefix: 'elsewhere/' } })],
    ['bucket', (u: User): User => ({ ...u, s3: { ...u.s3, bucket: 'other-bucket' } })],
    ['roleArn', (u: User): User => ({ ...u, s3: { ...u.s3, roleArn: 'arn:aws:iam::123456789012:role/other' } })],
    ['allowedCIDRs (client excluded)', (u: User): User => ({ ...u, allowedCIDRs: ['10.0.0.0/8'] })],
  ] as const) {
    test(`${what}: the connection is ended within 5 s`, async () => {
      const username = `u-${what.split(' ')[0]!.toLowerCase()}`;
      srv.addUser({ username });
      const { client, sftp } = await session(username);
      await sftp.put('/before.txt', Buffer.from('x'));
      srv.users.set(change(srv.users.get(username)!));
      assert.equal(await closesWithin(client, 5000), true, `connection still open after the ${what} change`);
    });
  }

  test('allowedCIDRs that still include the client, or an unrelated change (permissions), keep the connection', async () => {
    srv.addUser({ username: 'keep' });
    const { client, sftp } = await session('keep');
    const closed = once(client, 'close').then(() => true);
    srv.users.set({ ...userFor({ username: 'keep' }), allowedCIDRs: ['127.0.0.0/8', '::1/128'] });
    srv.addUser({ username: 'keep', permissions: ['list', 'download', 'upload'] });
    await sftp.put('/still.txt', Buffer.from('ok'));
    assert.equal(await Promise.race([closed, sftp.stat('/still.txt').then(() => false)]), false);
    client.end();
  });
});

describe('policyChanged', () => {
  const base = userFor({ username: 'x' });
  test('names what moved; permissions and keys alone are not a reason to end', () => {
    assert.equal(policyChanged(base, { ...base, permissions: new Set(['list']) }, '127.0.0.1'), undefined);
    assert.equal(policyChanged(base, { ...base, s3: { ...base.s3, keyPrefix: 'y/' } }, '127.0.0.1'), 'keyPrefix changed');
    assert.equal(policyChanged(base, { ...base, s3: { ...base.s3, endpoint: 'http://other' } }, '127.0.0.1'), 'endpoint changed');
    assert.equal(policyChanged(base, { ...base, allowedCIDRs: ['127.0.0.1/32'] }, '127.0.0.1'), undefined);
    assert.match(policyChanged(base, { ...base, allowedCIDRs: ['127.0.0.2/32'] }, '127.0.0.1') ?? '', /allowedCIDRs/);
  });
});
