/**
 * The Kubernetes user table as a pure function (src/kube/user-table.ts): what users the server
 * serves and what Ready condition each SftpUser gets, from the resources and Secrets alone.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { computeUserTable, type NamespaceSecrets } from '../../src/kube/user-table.ts';
import type { SecretResource, SftpUserResource } from '../../src/kube/sftp-user-resource.ts';
import { generateEd25519 } from '../../src/ssh/keygen.ts';

const KEY = generateEd25519().public;
const BCRYPT = '$2b$12$Lo5S8gBOMiK8V4iyLX/UTOm1fb4Fu17RUmlkXUIDR7flo3skLY/sO';

function sftpUser(
  name: string,
  opts: { namespace?: string; created?: string; spec?: Record<string, unknown>; generation?: number } = {},
): SftpUserResource {
  return {
    apiVersion: 's3sftp.io/v1alpha1',
    kind: 'SftpUser',
    metadata: {
      name,
      namespace: opts.namespace ?? 'team',
      uid: `uid-${name}-${opts.namespace ?? 'team'}`,
      generation: opts.generation ?? 1,
      creationTimestamp: (opts.created ?? '2026-01-01T00:00:00Z') as unknown as Date,
    },
    spec: { publicKeys: [KEY], s3: { keyPrefix: `${name}/` }, permissions: ['*'], ...opts.spec },
  };
}

function listed(...secrets: SecretResource[]): NamespaceSecrets {
  return { listed: true, get: (name) => secrets.find((s) => s.metadata.name === name) };
}

function secret(name: string, data: Record<string, string>): SecretResource {
  return {
    metadata: { name, namespace: 'team' },
    data: Object.fromEntries(Object.entries(data).map(([k, v]) => [k, Buffer.from(v).toString('base64')])),
  };
}

const table = (resources: SftpUserResource[], secrets = new Map<string, NamespaceSecrets>()) =>
  computeUserTable({ resources, secrets, defaultBucket: 'files' });

describe('username conflicts', () => {
  test('the oldest resource keeps the username; the newer one is told which resource has it', () => {
    const t = table([
      sftpUser('alice', { namespace: 'b', created: '2026-02-01T00:00:00Z' }),
      sftpUser('alice', { namespace: 'a', created: '2026-03-01T00:00:00Z' }),
    ]);
    assert.equal(t.users.get('alice')?.source, 'kube b/alice');
    assert.equal(t.verdicts.get('b/alice')?.ready?.reason, 'Loaded');
    const loser = t.verdicts.get('a/alice')?.ready;
    assert.equal(loser?.reason, 'UsernameConflict');
    assert.equal(loser?.status, 'False');
    assert.match(loser?.message ?? '', /already used by SftpUser b\/alice/);
    assert.equal(t.verdicts.get('a/alice')?.user, undefined);
  });

  test('same creation time: namespace/name decides, whatever the input order', () => {
    const one = sftpUser('x', { namespace: 'zeta', spec: { username: 'shared' } });
    const two = sftpUser('y', { namespace: 'alpha', spec: { username: 'shared' } });
    for (const order of [[one, two], [two, one]]) {
      const t = table(order);
      assert.equal(t.users.get('shared')?.source, 'kube alpha/y');
      assert.equal(t.verdicts.get('zeta/x')?.ready?.reason, 'UsernameConflict');
    }
  });

  test('an invalid resource claims no username', () => {
    const t = table([
      sftpUser('bob', { created: '2026-01-01T00:00:00Z', spec: { permissions: ['admin'] } }),
      sftpUser('bob2', { created: '2026-02-01T00:00:00Z', spec: { username: 'bob' } }),
    ]);
    assert.equal(t.verdicts.get('team/bob')?.ready?.reason, 'InvalidSpec');
    assert.match(t.verdicts.get('team/bob')?.ready?.message ?? '', /spec\.permissions\[0\]/);
    assert.equal(t.users.get('bob')?.source, 'kube team/bob2');
  });
});

describe('password Secrets', () => {
  const withRef = (key?: string) => sftpUser('carol', { spec: { publicKeys: [], passwordSecretRef: { name: 'carol-pw', ...(key ? { key } : {}) } } });

  test('a listed Secret gives the user its hash', () => {
    const t = table([withRef()], new Map([['team', listed(secret('carol-pw', { passwordHash: `${BCRYPT}\n` }))]]));
    assert.equal(t.users.get('carol')?.passwordHash, BCRYPT);
    assert.equal(t.verdicts.get('team/carol')?.ready?.status, 'True');
    assert.equal(t.pending, 0);
  });

  test('a missing Secret, a missing key and a plain password each get their own reason', () => {
    const cases: [NamespaceSecrets, string, RegExp][] = [
      [listed(), 'SecretNotFound', /Secret carol-pw in namespace team does not exist; create it/],
      [listed(secret('carol-pw', { other: 'x' })), 'SecretKeyMissing', /has no key passwordHash \(it has other\)/],
      [listed(secret('carol-pw', { passwordHash: 'hunter2' })), 'InvalidSecret', /is not a bcrypt or argon2id hash/],
      [{ listed: false, errorStatus: 403 }, 'SecretUnreadable', /may not list Secrets in namespace team \(HTTP 403\)/],
    ];
    for (const [secrets, reason, message] of cases) {
      const t = table([withRef()], new Map([['team', secrets]]));
      const ready = t.verdicts.get('team/carol')?.ready;
      assert.equal(ready?.reason, reason);
      assert.match(ready?.message ?? '', message);
      assert.doesNotMatch(ready?.message ?? '', /hunter2/, 'the Secret value is never echoed');
      assert.equal(t.users.has('carol'), false);
    }
  });

  test('while the namespace is being listed the verdict is pending and the previous user is kept', () => {
    const first = table([withRef()], new Map([['team', listed(secret('carol-pw', { passwordHash: BCRYPT }))]]));
    const t = computeUserTable({
      resources: [withRef()],
      secrets: new Map([['team', { listed: false }]]),
      defaultBucket: 'files',
      previous: first.users,
    });
    assert.equal(t.pending, 1);
    assert.equal(t.verdicts.get('team/carol')?.ready, undefined);
    assert.equal(t.users.get('carol'), first.users.get('carol'));
    assert.equal(table([withRef()]).users.has('carol'), false, 'no previous user, none served');
  });

  test('a custom key is read', () => {
    const t = table([withRef('hash')], new Map([['team', listed(secret('carol-pw', { hash: BCRYPT }))]]));
    assert.equal(t.users.get('carol')?.passwordHash, BCRYPT);
  });
});

describe('disabled users and notes', () => {
  test('a disabled user is served (so logins are refused by name) and Ready says so', () => {
    const t = table([sftpUser('dave', { spec: { disabled: true } })]);
    assert.equal(t.users.get('dave')?.disabled, true);
    const ready = t.verdicts.get('team/dave')?.ready;
    assert.equal(ready?.status, 'True');
    assert.match(ready?.message ?? '', /it is disabled, so logins are refused/);
  });

  test('a user who cannot log in is loaded with a note', () => {
    const t = table([sftpUser('erin', { spec: { publicKeys: [] } })]);
    assert.match(t.verdicts.get('team/erin')?.ready?.message ?? '', /cannot log in/);
  });

  test('observedGeneration is the resource generation', () => {
    const t = table([sftpUser('fay', { generation: 7 })]);
    assert.equal(t.verdicts.get('team/fay')?.ready?.observedGeneration, 7);
  });
});

describe('access checks', () => {
  test('a failed check keeps the user loaded with the check reason; an unknown result says Loaded', () => {
    const resources = [sftpUser('gus'), sftpUser('hal')];
    const t = computeUserTable({
      resources,
      secrets: new Map(),
      defaultBucket: 'files',
      access: (key) => (key === 'team/gus' ? { ok: false, reason: 'BucketNotFound', message: 'bucket files does not exist (for user gus)' } : undefined),
    });
    assert.equal(t.users.has('gus'), true);
    assert.equal(t.verdicts.get('team/gus')?.ready?.reason, 'BucketNotFound');
    assert.equal(t.verdicts.get('team/hal')?.ready?.reason, 'Loaded');
  });

  test('a long message is cut to a readable length', () => {
    const t = computeUserTable({
      resources: [sftpUser('ivy')],
      secrets: new Map(),
      defaultBucket: 'files',
      access: () => ({ ok: false, reason: 'StorageError', message: 'x'.repeat(10_000) }),
    });
    assert.equal(t.verdicts.get('team/ivy')?.ready?.message.length, 4096);
  });
});
