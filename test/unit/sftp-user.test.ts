import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import ssh2 from 'ssh2';
import { parseSftpUser, type ParseSftpUserResult } from '../../src/users/sftp-user.ts';
import { matchPublicKey } from '../../src/auth/public-key.ts';
import { PERMISSIONS, type User } from '../../src/users/user.ts';
import { generateEd25519 } from '../../src/ssh/keygen.ts';

const alice = generateEd25519({ comment: 'alice@laptop' });
const bob = ssh2.utils.generateKeyPairSync('ecdsa', { bits: 256 });
const BCRYPT = '$2b$04$abcdefghijklmnopqrstuujydOTSfIH/d5oUHpsygqV5X9xJLQc6e';
const OPTS = { defaultBucket: 'server-bucket', source: 'test' };

function resource(spec: Record<string, unknown>, name = 'alice'): Record<string, unknown> {
  return { apiVersion: 's3sftp.io/v1alpha1', kind: 'SftpUser', metadata: { name }, spec };
}

const VALID_SPEC = { s3: { keyPrefix: 'users/alice/' }, permissions: ['*'], publicKeys: [alice.public] };

function ok(result: ParseSftpUserResult): { user: User; warnings: string[] } {
  if ('error' in result) assert.fail(`expected a user, got: ${result.error}`);
  return result;
}

function err(result: ParseSftpUserResult): string {
  if (!('error' in result)) assert.fail(`expected an error, got user ${result.user.username}`);
  return result.error;
}

describe('valid resources', () => {
  test('a minimal user gets defaults: username from metadata.name, the server bucket, enabled', () => {
    const { user, warnings } = ok(parseSftpUser(resource(VALID_SPEC), OPTS));
    assert.equal(user.username, 'alice');
    assert.equal(user.disabled, false);
    assert.equal(user.passwordHash, undefined);
    assert.deepEqual(user.publicKeys, [alice.public]);
    assert.deepEqual(user.s3, { bucket: 'server-bucket', keyPrefix: 'users/alice/' });
    assert.deepEqual([...user.permissions].sort(), [...PERMISSIONS].sort());
    assert.equal(user.source, 'test');
    assert.deepEqual(warnings, []);
  });

  test('every field set', () => {
    const { user } = ok(
      parseSftpUser(
        resource({
          username: 'alice.smith_2',
          disabled: true,
          passwordHash: BCRYPT,
          publicKeys: [alice.public, bob.public],
          s3: { bucket: 'other', keyPrefix: 'a/b' },
          permissions: ['list', 'download'],
        }),
        OPTS,
      ),
    );
    assert.equal(user.username, 'alice.smith_2');
    assert.equal(user.disabled, true);
    assert.equal(user.passwordHash, BCRYPT);
    assert.equal(user.publicKeys.length, 2);
    assert.deepEqual(user.s3, { bucket: 'other', keyPrefix: 'a/b/' });
    assert.deepEqual([...user.permissions].sort(), ['download', 'list']);
  });

  test('an argon2id hash is accepted', () => {
    const hash = '$argon2id$v=19$m=4096,t=2,p=1$c29tZXNhbHQxMjM0$cvEazogelEb60VCJP01gP23apDs0bsO4NQBlpChXn9U';
    assert.equal(ok(parseSftpUser(resource({ ...VALID_SPEC, passwordHash: hash }), OPTS)).user.passwordHash, hash);
  });

  test('"" keyPrefix means the whole bucket', () => {
    const { user } = ok(parseSftpUser(resource({ ...VALID_SPEC, s3: { keyPrefix: '' } }), OPTS));
    assert.equal(user.s3.keyPrefix, '');
  });

  test('a user with neither password nor keys loads, with a warning that it cannot log in', () => {
    const { user, warnings } = ok(parseSftpUser(resource({ s3: { keyPrefix: 'x/' }, permissions: ['list'] }), OPTS));
    assert.equal(user.username, 'alice');
    assert.match(warnings.join(), /cannot log in/);
  });

  test('the user is immutable', () => {
    const { user } = ok(parseSftpUser(resource(VALID_SPEC), OPTS));
    assert.throws(() => {
      (user as { disabled: boolean }).disabled = true;
    }, TypeError);
    assert.throws(() => (user.publicKeys as string[]).push('x'), TypeError);
  });

  test('Kubernetes objects carry status and extra metadata; both are fine', () => {
    const doc: Record<string, unknown> = { ...resource(VALID_SPEC), status: { conditions: [] } };
    (doc.metadata as Record<string, unknown>).namespace = 'sftp';
    ok(parseSftpUser(doc, OPTS));
  });
});

describe('hostile keyPrefix values are rejected', () => {
  const cases: [string, RegExp][] = [
    ['../x', /"\.\." segments/],
    ['users/../../etc/', /"\.\." segments/],
    ['users/./alice/', /"\." or "\.\." segments/],
    ['..', /segments/],
    ['/abs', /must not start with "\/"/],
    ['/', /must not start with "\/"/],
    ['a//b', /must not contain "\/\/"/],
    ['a/b//', /must not contain "\/\/"/],
    ['a\nb/', /control characters/],
  ];
  for (const [prefix, expected] of cases) {
    test(JSON.stringify(prefix), () => {
      const e = err(parseSftpUser(resource({ ...VALID_SPEC, s3: { keyPrefix: prefix } }), OPTS));
      assert.match(e, /^spec\.s3\.keyPrefix: /);
      assert.match(e, expected);
    });
  }

  test('a missing keyPrefix is an error rather than the whole bucket', () => {
    const e = err(parseSftpUser(resource({ ...VALID_SPEC, s3: {} }), OPTS));
    assert.match(e, /spec\.s3\.keyPrefix: is required; .*"" for the whole bucket/);
    assert.match(err(parseSftpUser(resource({ permissions: ['*'] }), OPTS)), /spec\.s3\.keyPrefix: is required/);
  });

  test('a name like "..x" is just a name', () => {
    assert.equal(ok(parseSftpUser(resource({ ...VALID_SPEC, s3: { keyPrefix: '..x/.y' } }), OPTS)).user.s3.keyPrefix, '..x/.y/');
  });
});

describe('invalid resources name the field and the fix', () => {
  test('wrong apiVersion or kind', () => {
    assert.match(
      err(parseSftpUser({ ...resource(VALID_SPEC), apiVersion: 'v1' }, OPTS)),
      /^apiVersion: "v1" is not supported; use s3sftp\.io\/v1alpha1$/,
    );
    assert.match(err(parseSftpUser({ ...resource(VALID_SPEC), kind: 'ConfigMap' }, OPTS)), /^kind: "ConfigMap" is not supported; use SftpUser$/);
  });

  test('not a mapping at all', () => {
    assert.match(err(parseSftpUser('hello', OPTS)), /not a mapping/);
    assert.match(err(parseSftpUser(null, OPTS)), /not a mapping/);
  });

  test('missing metadata.name or spec', () => {
    assert.match(err(parseSftpUser({ ...resource(VALID_SPEC), metadata: {} }, OPTS)), /metadata\.name: is missing/);
    const { spec: _, ...noSpec } = resource(VALID_SPEC);
    assert.match(err(parseSftpUser(noSpec, OPTS)), /^spec: is missing/);
  });

  test('usernames must be lower case and short', () => {
    assert.match(err(parseSftpUser(resource({ ...VALID_SPEC, username: 'Alice' }), OPTS)), /spec\.username: "Alice" is not a valid username; use 1-63 lower-case/);
    assert.match(err(parseSftpUser(resource(VALID_SPEC, 'Bob'), OPTS)), /metadata\.name \(used as the username\): "Bob" is not a valid username/);
    assert.match(err(parseSftpUser(resource({ ...VALID_SPEC, username: 'a'.repeat(64) }), OPTS)), /spec\.username/);
    assert.match(err(parseSftpUser(resource({ ...VALID_SPEC, username: '-x' }), OPTS)), /spec\.username/);
    assert.match(err(parseSftpUser(resource({ ...VALID_SPEC, username: 'a b' }), OPTS)), /spec\.username/);
    ok(parseSftpUser(resource({ ...VALID_SPEC, username: 'a'.repeat(63) }), OPTS));
  });

  test('a password that is not a supported hash is rejected without echoing it', () => {
    const e = err(parseSftpUser(resource({ ...VALID_SPEC, passwordHash: 'hunter2' }), OPTS));
    assert.match(e, /^spec\.passwordHash: is not a bcrypt .* or argon2id .* hash; generate one with `s3sftp hash-password`$/);
    assert.doesNotMatch(e, /hunter2/);
    assert.match(err(parseSftpUser(resource({ ...VALID_SPEC, passwordHash: '$1$abc$def' }), OPTS)), /spec\.passwordHash/);
    assert.match(err(parseSftpUser(resource({ ...VALID_SPEC, passwordHash: '$argon2i$v=19$m=4096,t=3,p=1$c2FsdA$aGFzaA' }), OPTS)), /spec\.passwordHash/);
  });

  test('a private key among publicKeys is rejected and not echoed', () => {
    const e = err(parseSftpUser(resource({ ...VALID_SPEC, publicKeys: [alice.public, alice.private] }), OPTS));
    assert.match(e, /^spec\.publicKeys\[1\]: is a private key; remove it/);
    assert.doesNotMatch(e, /BEGIN/);
    const pem = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs1', format: 'pem' }).toString();
    assert.match(err(parseSftpUser(resource({ ...VALID_SPEC, publicKeys: [pem] }), OPTS)), /spec\.publicKeys\[0\]: is a private key/);
  });

  test('malformed public keys say what to paste', () => {
    assert.match(
      err(parseSftpUser(resource({ ...VALID_SPEC, publicKeys: ['ssh-ed25519 AAAAnotbase64'] }), OPTS)),
      /^spec\.publicKeys\[0\]: is not a valid public key \(.*\); paste one line of a \.pub file/,
    );
    assert.match(
      err(parseSftpUser(resource({ ...VALID_SPEC, publicKeys: [`no-pty ${alice.public}`] }), OPTS)),
      /spec\.publicKeys\[0\]: starts with "no-pty"; authorized_keys options are not supported/,
    );
    assert.match(err(parseSftpUser(resource({ ...VALID_SPEC, publicKeys: alice.public }), OPTS)), /spec\.publicKeys: must be a list/);
    assert.match(err(parseSftpUser(resource({ ...VALID_SPEC, publicKeys: [`${alice.public}\n${bob.public}`] }), OPTS)), /one key per list entry/);
  });

  test('unknown permissions name the allowed ones', () => {
    const e = err(parseSftpUser(resource({ ...VALID_SPEC, permissions: ['list', 'write'] }), OPTS));
    assert.equal(e, 'spec.permissions[1]: "write" is not a permission; use ["*"] or a subset of list, download, upload, overwrite, delete, rename, create_dirs');
    assert.match(err(parseSftpUser(resource({ ...VALID_SPEC, permissions: undefined }), OPTS)), /^spec\.permissions: is required/);
    assert.match(err(parseSftpUser(resource({ ...VALID_SPEC, permissions: '*' }), OPTS)), /^spec\.permissions: must be a list/);
  });

  test('misspelt or unknown fields are errors, not silently ignored', () => {
    assert.match(
      err(parseSftpUser(resource({ ...VALID_SPEC, publickeys: [alice.public] }), OPTS)),
      /spec\.publickeys: is not a known field; did you mean publicKeys\?/,
    );
    assert.match(
      err(parseSftpUser(resource({ ...VALID_SPEC, s3: { keyPrefix: 'x/', path: 'eu' } }), OPTS)),
      /spec\.s3\.path: is not a known field; use only bucket, keyPrefix, region, endpoint, storageClass, roleArn/,
    );
    assert.match(
      err(parseSftpUser(resource({ ...VALID_SPEC, passwordSecretRef: { name: 'p', Key: 'k' } }), OPTS)),
      /spec\.passwordSecretRef\.Key: is not a known field; did you mean key\?/,
    );
  });

  test('wrong types', () => {
    assert.match(err(parseSftpUser(resource({ ...VALID_SPEC, disabled: 'yes' }), OPTS)), /spec\.disabled: must be true or false/);
    assert.match(err(parseSftpUser(resource({ ...VALID_SPEC, s3: { keyPrefix: 7 } }), OPTS)), /spec\.s3\.keyPrefix: must be a string/);
    assert.match(err(parseSftpUser(resource({ ...VALID_SPEC, s3: { keyPrefix: '', bucket: 's3://b' } }), OPTS)), /spec\.s3\.bucket: "s3:\/\/b" is a URL/);
  });

  test('all problems are reported together', () => {
    const e = err(parseSftpUser(resource({ username: 'X', s3: { keyPrefix: '/x' }, permissions: ['fly'] }), OPTS));
    assert.match(e, /spec\.username/);
    assert.match(e, /spec\.s3\.keyPrefix/);
    assert.match(e, /spec\.permissions\[0\]/);
  });
});

describe('matchPublicKey', () => {
  const { user } = ok(parseSftpUser(resource({ ...VALID_SPEC, publicKeys: [bob.public, alice.public] }), OPTS));

  function offered(publicLine: string): { algo: string; data: Buffer } {
    const key = ssh2.utils.parseKey(publicLine);
    if (key instanceof Error) throw key;
    return { algo: key.type, data: key.getPublicSSH() };
  }

  test('returns the matching key, which verifies the client signature', () => {
    const key = matchPublicKey(user, offered(alice.public));
    assert.ok(key);
    assert.equal(key.type, 'ssh-ed25519');
    const priv = ssh2.utils.parseKey(alice.private);
    if (priv instanceof Error) throw priv;
    const data = Buffer.from('session data');
    assert.equal(key.verify(data, priv.sign(data)), true);
  });

  test('an unknown key or a mismatched algorithm does not match', () => {
    const carol = generateEd25519();
    assert.equal(matchPublicKey(user, offered(carol.public)), undefined);
    assert.equal(matchPublicKey(user, { ...offered(alice.public), algo: 'ssh-rsa' }), undefined);
    assert.equal(matchPublicKey(user, { algo: 'ssh-ed25519', data: Buffer.alloc(0) }), undefined);
  });
});
