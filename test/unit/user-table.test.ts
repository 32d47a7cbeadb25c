/**
 * The Kubernetes user table as a pure function (src/kube/user-table.ts): what users the server
 * serves and what Ready condition each SftpUser gets, from the resources and Secrets alone.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { computeUserTable, IncrementalUserTable, type NamespaceSecrets } from '../../src/kube/user-table.ts';
import { validateSftpUser } from '../../src/users/sftp-user.ts';
import { objectKey } from '../../src/kube/sftp-user-resource.ts';
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

describe('the incremental table', () => {
  // A seeded generator, so a failure can be replayed.
  function random(seed: number): () => number {
    let x = seed;
    return () => {
      x = (x * 1103515245 + 12345) % 2147483648;
      return x / 2147483648;
    };
  }

  test('after any sequence of changes it holds what computeUserTable computes from the same state', () => {
    for (let seed = 1; seed <= 25; seed++) {
      const next = random(seed);
      const pick = <T>(xs: readonly T[]): T => xs[Math.floor(next() * xs.length)] as T;
      const resources = new Map<string, SftpUserResource>();
      const secrets = new Map<string, SecretResource>();
      const listing = { team: true, other: true } as Record<string, boolean>;
      const view = () =>
        new Map<string, NamespaceSecrets>(
          ['team', 'other'].map((ns) => [
            ns,
            listing[ns] ? { listed: true, get: (name: string) => secrets.get(`${ns}/${name}`) } : { listed: false },
          ]),
        );
      const parse = (r: SftpUserResource) => validateSftpUser(r, { defaultBucket: 'files', source: `kube ${objectKey(r.metadata)}` });
      const access = (key: string) => (key.endsWith('/r3') ? { ok: false as const, reason: 'AccessDenied' as const, message: 'no' } : undefined);
      const incremental = new IncrementalUserTable();
      let previous = new Map<string, import('../../src/users/user.ts').User>();
      for (let step = 0; step < 60; step++) {
        const namespace = pick(['team', 'other']);
        const name = pick(['r1', 'r2', 'r3', 'r4', 'r5']);
        const key = `${namespace}/${name}`;
        const action = pick(['upsert', 'upsert', 'upsert', 'delete', 'secret', 'secret-delete', 'listing']);
        if (action === 'upsert') {
          const spec: Record<string, unknown> = { username: pick(['ann', 'bob', 'cy']) };
          if (next() < 0.4) spec.passwordSecretRef = { name: pick(['s1', 's2']) };
          if (next() < 0.15) spec.s3 = {};
          const r = sftpUser(name, { namespace, created: pick(['2026-01-01T00:00:00Z', '2026-02-01T00:00:00Z']), generation: step + 1, spec });
          resources.set(key, r);
          incremental.upsert(r, parse(r));
        } else if (action === 'delete') {
          resources.delete(key);
          incremental.remove(key);
        } else if (action === 'secret' || action === 'secret-delete') {
          const sname = pick(['s1', 's2']);
          if (action === 'secret') {
            secrets.set(`${namespace}/${sname}`, { ...secret(sname, { passwordHash: pick([BCRYPT, 'plain']) }), metadata: { name: sname, namespace } });
          } else secrets.delete(`${namespace}/${sname}`);
          incremental.secretChanged(namespace, sname);
        } else {
          listing[namespace] = !listing[namespace];
          incremental.namespaceChanged(namespace);
        }
        const whole = computeUserTable({ resources: [...resources.values()], secrets: view(), defaultBucket: 'files', parse, access, previous });
        incremental.flush({ secrets: view(), access });
        const where = `seed ${seed} step ${step} (${action} ${key})`;
        assert.deepEqual(new Map(incremental.users), whole.users, `users, ${where}`);
        assert.deepEqual(
          new Map([...incremental.verdicts].map(([k, v]) => [k, v.ready])),
          new Map([...whole.verdicts].map(([k, v]) => [k, v.ready])),
          `verdicts, ${where}`,
        );
        assert.equal(incremental.pending, whole.pending, `pending, ${where}`);
        previous = whole.users;
      }
    }
  });

  test('a change re-judges only what it can affect and reports only what changed', () => {
    const t = new IncrementalUserTable();
    const parse = (r: SftpUserResource) => validateSftpUser(r, { defaultBucket: 'files', source: `kube ${objectKey(r.metadata)}` });
    for (let i = 0; i < 100; i++) {
      const r = sftpUser(`u${i}`);
      t.upsert(r, parse(r));
    }
    const first = t.flush({ secrets: new Map() });
    assert.equal(first.users.size, 100);
    const edited = sftpUser('u7', { generation: 2, spec: { disabled: true } });
    t.upsert(edited, parse(edited));
    const second = t.flush({ secrets: new Map() });
    assert.deepEqual([...second.users.keys()], ['u7']);
    assert.deepEqual([...second.verdicts.keys()], ['team/u7']);
    t.remove('team/u8');
    const third = t.flush({ secrets: new Map() });
    assert.deepEqual([...third.users], [['u8', undefined]]);
    assert.deepEqual([...third.verdicts], [['team/u8', undefined]]);
  });
});
