/**
 * spec.folders (virtual folders): parsed into User.folders by the one validator, with the user's
 * spec.s3 filled in, and refused (by the parser and by the CRD alike) when a path is not a usable
 * mount point, listed twice, or nested in another.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { validateSftpUser, type ParseSftpUserResult } from '../../src/users/sftp-user.ts';
import { crdSchemaProblems } from '../../src/users/crd-schema.ts';
import { permissionsAt, sameUser, type User } from '../../src/users/user.ts';
import { generateEd25519 } from '../../src/ssh/keygen.ts';

const key = generateEd25519().public;
const OPTS = { defaultBucket: 'server-bucket', source: 'test' };

function resource(folders: unknown, s3: Record<string, unknown> = { keyPrefix: 'home/alice/' }): Record<string, unknown> {
  return {
    apiVersion: 's3sftp.io/v1alpha1',
    kind: 'SftpUser',
    metadata: { name: 'alice' },
    spec: { publicKeys: [key], s3, permissions: ['upload'], folders },
  };
}

function ok(result: ParseSftpUserResult): User {
  if ('error' in result) assert.fail(`expected a user, got: ${result.error}`);
  return result.user;
}

function err(result: ParseSftpUserResult): string {
  if (!('error' in result)) assert.fail('expected an error');
  return result.error;
}

describe('spec.folders', () => {
  test('a folder takes its own location and permissions; unset fields are the user\'s', () => {
    const user = ok(
      validateSftpUser(
        resource(
          [
            { path: '/outbound', bucket: 'exports', keyPrefix: 'out/alice', roleArn: 'arn:aws:iam::123456789012:role/out', permissions: ['list', 'download'] },
            { path: '/partners/acme', keyPrefix: '', permissions: ['*'] },
          ],
          { keyPrefix: 'home/alice/', region: 'eu-west-1', storageClass: 'STANDARD_IA' },
        ),
        OPTS,
      ),
    );
    assert.equal(user.folders?.length, 2);
    const [out, acme] = user.folders ?? [];
    assert.deepEqual(out?.s3, { bucket: 'exports', keyPrefix: 'out/alice/', region: 'eu-west-1', storageClass: 'STANDARD_IA', roleArn: 'arn:aws:iam::123456789012:role/out' });
    assert.deepEqual(acme?.s3, { bucket: 'server-bucket', keyPrefix: '', region: 'eu-west-1', storageClass: 'STANDARD_IA' });
    assert.deepEqual([...permissionsAt(user, '/outbound/a.csv')].sort(), ['download', 'list']);
    assert.deepEqual([...permissionsAt(user, '/outbound')].sort(), ['download', 'list']);
    assert.deepEqual([...permissionsAt(user, '/outbound2')], ['upload']);
    assert.equal(permissionsAt(user, '/partners/acme/x').size, 7);
    // A parent of a mount point can be listed, so the folders can be found; nothing else is added.
    assert.deepEqual([...permissionsAt(user, '/partners')], ['upload', 'list']);
    assert.deepEqual([...permissionsAt(user, '/')], ['upload', 'list']);
    assert.deepEqual([...permissionsAt(user, '/elsewhere')], ['upload']);
  });

  test('no folders: none on the user', () => {
    assert.equal(ok(validateSftpUser(resource(undefined), OPTS)).folders, undefined);
    assert.equal(ok(validateSftpUser(resource([]), OPTS)).folders, undefined);
  });

  test('a change to a folder is a change to the user', () => {
    const a = ok(validateSftpUser(resource([{ path: '/in', keyPrefix: 'in/', permissions: ['list'] }]), OPTS));
    const b = ok(validateSftpUser(resource([{ path: '/in', keyPrefix: 'in/', permissions: ['list', 'download'] }]), OPTS));
    const c = ok(validateSftpUser(resource([{ path: '/in', keyPrefix: 'in/', permissions: ['list'] }]), OPTS));
    assert.equal(sameUser(a, b), false);
    assert.equal(sameUser(a, c), true);
  });

  const refused: [string, unknown, RegExp][] = [
    ['"/"', [{ path: '/', keyPrefix: 'x/', permissions: ['list'] }], /spec\.folders\[0\]\.path: "\/" must not be "\/"/],
    ['a relative path', [{ path: 'inbound', keyPrefix: 'x/', permissions: ['list'] }], /must be absolute/],
    ['a trailing slash', [{ path: '/inbound/', keyPrefix: 'x/', permissions: ['list'] }], /must not contain "\/\/" or end with "\/"/],
    ['a ".." segment', [{ path: '/a/../b', keyPrefix: 'x/', permissions: ['list'] }], /"\." or "\.\." segments/],
    ['a missing keyPrefix', [{ path: '/in', permissions: ['list'] }], /spec\.folders\[0\]\.keyPrefix: is required/],
    ['an escaping keyPrefix', [{ path: '/in', keyPrefix: 'a/../../b', permissions: ['list'] }], /keyPrefix: .* must not contain "\." or "\.\." segments/],
    ['missing permissions', [{ path: '/in', keyPrefix: 'x/' }], /permissions: is required/],
    ['an unknown permission', [{ path: '/in', keyPrefix: 'x/', permissions: ['read'] }], /permissions\[0\]: "read" is not a permission/],
    ['an unknown field', [{ path: '/in', keyPrefix: 'x/', permissions: ['list'], storageclass: 'X' }], /storageclass: is not a known field/],
    [
      'the same path twice',
      [{ path: '/in', keyPrefix: 'x/', permissions: ['list'] }, { path: '/in', keyPrefix: 'y/', permissions: ['list'] }],
      /spec\.folders\[1\]\.path: \/in is listed twice/,
    ],
    [
      'a folder inside another',
      [{ path: '/in', keyPrefix: 'x/', permissions: ['list'] }, { path: '/in/deeper', keyPrefix: 'y/', permissions: ['list'] }],
      /\/in\/deeper and \/in are nested/,
    ],
    ['a bad roleArn', [{ path: '/in', keyPrefix: 'x/', roleArn: 'sftp-role', permissions: ['list'] }], /spec\.folders\[0\]\.roleArn:/],
  ];
  for (const [what, folders, message] of refused) {
    test(`refuses ${what}, in the parser and in the CRD`, () => {
      assert.match(err(validateSftpUser(resource(folders), OPTS)), message);
      // Duplicate paths are refused by the API server as duplicate keys of a list-type map, which ajv does not model.
      if (what !== 'the same path twice') assert.notDeepEqual(crdSchemaProblems(resource(folders)), [], `the CRD admits ${what}`);
    });
  }

  test('the CRD names the nesting rule', () => {
    const problems = crdSchemaProblems(resource([{ path: '/a', keyPrefix: 'x/', permissions: ['list'] }, { path: '/a/b', keyPrefix: 'y/', permissions: ['list'] }]));
    assert.deepEqual(problems, ['spec.folders: folders cannot be nested in one another; mount them side by side (e.g. /inbound and /outbound)']);
  });
});
