/** The access check (SftpUser Ready condition) covers a user's virtual folders, naming the failing one. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { checkUserAndFolders, folderLocations, type AccessCheck, type AccessUser } from '../../src/users/access.ts';
import type { User } from '../../src/users/user.ts';
import { userFor } from '../support/in-process-server.ts';

const base = userFor({ username: 'alice', permissions: ['upload'] });
const user: User = {
  ...base,
  folders: [
    { path: '/inbound', s3: { bucket: 'b1', keyPrefix: 'in/' }, permissions: new Set(['list'] as const) },
    { path: '/outbound', s3: { bucket: 'b2', keyPrefix: 'out/', roleArn: 'arn:aws:iam::123456789012:role/out' }, permissions: new Set(['download'] as const) },
  ],
};

describe('access checks with folders', () => {
  test('every location is checked, home first; the first failure names its folder', async () => {
    const asked: string[] = [];
    const checker = {
      async checkUserAccess(u: AccessUser): Promise<AccessCheck> {
        asked.push(`${u.s3.bucket}/${u.s3.keyPrefix}`);
        return u.s3.bucket === 'b2' ? { ok: false, reason: 'AccessDenied', message: 'user alice may not list bucket b2 under out/' } : { ok: true };
      },
    };
    const result = await checkUserAndFolders(checker, user);
    assert.deepEqual(asked, [`${base.s3.bucket}/${base.s3.keyPrefix}`, 'b1/in/', 'b2/out/']);
    assert.deepEqual(result, { ok: false, reason: 'AccessDenied', message: 'folder /outbound: user alice may not list bucket b2 under out/' });
  });

  test('folderLocations gives each folder as a location of the same user', () => {
    assert.deepEqual(folderLocations(user).map((l) => [l.username, l.s3.bucket, l.s3.roleArn]), [
      ['alice', 'b1', undefined],
      ['alice', 'b2', 'arn:aws:iam::123456789012:role/out'],
    ]);
    assert.deepEqual(folderLocations(base), []);
  });
});
