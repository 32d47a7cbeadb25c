/**
 * Users from SftpUser resources (users.kubernetes) end to end: the real server on the real Swift S3
 * server, configured with a kubeconfig that points at the fake API server
 * (test/support/fake-kube-apiserver.ts), and real OpenSSH clients. Resources are created, changed
 * and deleted over the fake server's HTTP API, as kubectl would.
 *
 * The two-replica test runs two controllers (KubeUserSource, what the server starts) against a
 * second fake API server, with short lease timings.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import ssh2 from 'ssh2';
import type { SwiftS3 } from '../../dev/swift.ts';
import { hashPassword } from '../../src/auth/password.ts';
import { KubeUserSource } from '../../src/kube/controller.ts';
import type { Condition } from '../../src/kube/sftp-user-resource.ts';
import { FakeKubeApiServer } from '../support/fake-kube-apiserver.ts';
import { createBucket, makeClientKey, s3Server, sftpBatch, sftpPassword, startTestServer, type TestServer } from '../support/harness.ts';

const NS = 'sftp';
const USERS = `/apis/s3sftp.io/v1alpha1`;

let s3: SwiftS3;
let fake: FakeKubeApiServer;
let srv: TestServer;
let work: string;
/** Added to the fake API server's clock, to control creationTimestamp (whole seconds). */
let skewMs = 0;

before(async () => {
  s3 = await s3Server();
  work = await mkdtemp(join(tmpdir(), 's3sftp-kube-'));
  fake = await FakeKubeApiServer.start({ bookmarkIntervalMs: 500, now: () => new Date(Date.now() + skewMs) });
  const kubeconfig = join(work, 'kubeconfig');
  await fake.writeKubeconfig(kubeconfig, NS);
  srv = await startTestServer({
    s3,
    bucket: await createBucket(s3),
    env: {
      S3SFTP_USERS_KUBERNETES_ENABLED: 'true',
      S3SFTP_USERS_KUBERNETES_KUBECONFIG: kubeconfig,
    },
  });
  await eventually(() => assert.equal(srv.server.users.ready, true, srv.server.notReadyReason()), 5000);
});

after(async () => {
  await srv?.stop();
  await fake?.stop();
  await s3?.stop();
  await rm(work, { recursive: true, force: true });
});

// ---- helpers ------------------------------------------------------------------------------------

/** Polls until `check` passes or `timeoutMs` is over, then asserts one last time. */
async function eventually(check: () => void | Promise<void>, timeoutMs = 3000): Promise<number> {
  const start = Date.now();
  for (;;) {
    try {
      await check();
      return Date.now() - start;
    } catch (err) {
      if (Date.now() - start > timeoutMs) throw err;
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

/** One call to the fake API server over HTTP, as kubectl makes it. */
async function api(server: FakeKubeApiServer, method: string, path: string, body?: unknown, contentType = 'application/json'): Promise<Record<string, unknown>> {
  const res = await fetch(`${server.url}${path}`, {
    method,
    headers: { 'Content-Type': contentType, Accept: 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = (await res.json()) as Record<string, unknown>;
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(json)}`);
  return json;
}

function sftpUser(name: string, spec: Record<string, unknown>): Record<string, unknown> {
  return { apiVersion: 's3sftp.io/v1alpha1', kind: 'SftpUser', metadata: { name }, spec: { s3: { keyPrefix: `users/${name}/` }, permissions: ['*'], ...spec } };
}

const createUser = (name: string, spec: Record<string, unknown>, ns = NS, server = fake) =>
  api(server, 'POST', `${USERS}/namespaces/${ns}/sftpusers`, sftpUser(name, spec));
const patchUser = (name: string, patch: unknown, ns = NS, server = fake) =>
  api(server, 'PATCH', `${USERS}/namespaces/${ns}/sftpusers/${name}`, patch, 'application/merge-patch+json');
const deleteUser = (name: string, ns = NS, server = fake) => api(server, 'DELETE', `${USERS}/namespaces/${ns}/sftpusers/${name}`);

function secret(name: string, data: Record<string, string>): Record<string, unknown> {
  const encoded = Object.fromEntries(Object.entries(data).map(([k, v]) => [k, Buffer.from(v).toString('base64')]));
  return { apiVersion: 'v1', kind: 'Secret', metadata: { name }, type: 'Opaque', data: encoded };
}

/** The authorized_keys line for a key file made by makeClientKey. */
async function publicKeyLine(keyFile: string): Promise<string> {
  const parsed = ssh2.utils.parseKey(await readFile(keyFile));
  const key = Array.isArray(parsed) ? parsed[0] : parsed;
  if (!key || key instanceof Error) throw new Error(`cannot read ${keyFile}`);
  return `${key.type} ${key.getPublicSSH().toString('base64')}`;
}

function ready(server: FakeKubeApiServer, name: string, ns = NS): Condition | undefined {
  const status = server.get('sftpusers', ns, name)?.status as { conditions?: Condition[] } | undefined;
  return status?.conditions?.find((c) => c.type === 'Ready');
}

function statusWrites(server: FakeKubeApiServer, name: string): number {
  return server.requests.filter((r) => r.method === 'PATCH' && r.path.endsWith(`/sftpusers/${name}/status`)).length;
}

const SSH_OPTS = ['-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'LogLevel=ERROR'];

/**
 * An interactive OpenSSH sftp session driven over stdin, kept open until it ends or is killed.
 * When the server ends the connection, sftp's ssh transport exits and sftp says "Connection
 * closed." at once, but sftp itself waits at its prompt (stdin is open) until told to quit.
 */
class LiveSftp {
  readonly child: ChildProcessWithoutNullStreams;
  output = '';
  readonly exited: Promise<number | null>;

  constructor(cmd: string, args: string[], env: NodeJS.ProcessEnv = {}) {
    this.child = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
    this.child.stdout.on('data', (d) => (this.output += d));
    this.child.stderr.on('data', (d) => (this.output += d));
    this.exited = new Promise((resolve) => this.child.on('close', (code) => resolve(code)));
  }

  static withKey(port: number, user: string, keyFile: string): LiveSftp {
    return new LiveSftp('sftp', [...SSH_OPTS, '-o', 'BatchMode=yes', '-o', 'IdentitiesOnly=yes', '-i', keyFile, '-P', String(port), `${user}@127.0.0.1`]);
  }

  static withPassword(port: number, user: string, password: string): LiveSftp {
    return new LiveSftp(
      'sshpass',
      ['-e', 'sftp', ...SSH_OPTS, '-o', 'PubkeyAuthentication=no', '-o', 'PreferredAuthentications=password', '-o', 'NumberOfPasswordPrompts=1', '-P', String(port), `${user}@127.0.0.1`],
      { SSHPASS: password },
    );
  }

  /** `cd .` (a round trip to the server: realpath and stat) then `pwd`: the session is logged in and working. */
  async alive(timeoutMs = 10_000): Promise<void> {
    const before = this.output.length;
    this.child.stdin.write('cd .\npwd\n');
    await eventually(() => {
      const answer = this.output.slice(before);
      assert.match(answer, /Remote working directory/, this.output);
      assert.doesNotMatch(answer, /Connection closed|Couldn't/, this.output);
    }, timeoutMs);
  }

  /** Milliseconds until the server has ended the connection, failing after `timeoutMs`. */
  async endedWithin(timeoutMs: number): Promise<number> {
    // sftp prints this when its ssh transport exits, which it does when the server disconnects.
    return eventually(() => assert.match(this.output, /Received disconnect[\s\S]*Connection closed/), timeoutMs);
  }

  kill(): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
  }
}

// ---- the server with users from the API ----------------------------------------------------------

describe('SftpUsers from the Kubernetes API', () => {
  test('a user created over the API logs in with OpenSSH sftp within a second, and gets Ready=True', async () => {
    const key = await makeClientKey(work, 'alice');
    await createUser('alice', { publicKeys: [await publicKeyLine(key)] });
    const ms = await eventually(() => assert.ok(srv.server.users.get('alice')), 1000);
    assert.ok(ms < 1000, `took ${ms} ms`);
    const r = await sftpBatch(srv.port, 'alice', key, 'mkdir inbox\nls -1\n');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /inbox/);

    await eventually(() => {
      const c = ready(fake, 'alice');
      assert.equal(c?.status, 'True');
      assert.equal(c?.reason, 'Loaded');
      assert.equal(c?.observedGeneration, 1);
    });
    const obj = fake.get('sftpusers', NS, 'alice');
    assert.equal((obj?.status as { observedGeneration?: number }).observedGeneration, 1);
  });

  test('a new key applies and the old one stops working; status follows the generation without a write loop', async () => {
    const oldKey = await makeClientKey(work, 'carl-old');
    const newKey = await makeClientKey(work, 'carl-new');
    await createUser('carl', { publicKeys: [await publicKeyLine(oldKey)] });
    await eventually(() => assert.equal(ready(fake, 'carl')?.status, 'True'));
    const firstTransition = ready(fake, 'carl')?.lastTransitionTime;
    assert.equal((await sftpBatch(srv.port, 'carl', oldKey, 'pwd\n')).code, 0);

    await patchUser('carl', { spec: { publicKeys: [await publicKeyLine(newKey)] } });
    assert.equal(fake.get('sftpusers', NS, 'carl')?.metadata.generation, 2);
    const newLine = await publicKeyLine(newKey);
    await eventually(() => assert.equal(srv.server.users.get('carl')?.publicKeys[0], newLine), 1000);
    const refused = await sftpBatch(srv.port, 'carl', oldKey, 'pwd\n');
    assert.notEqual(refused.code, 0, 'the old key still logs in');
    const ok = await sftpBatch(srv.port, 'carl', newKey, 'pwd\n');
    assert.equal(ok.code, 0, ok.stderr);

    await eventually(() => assert.equal(ready(fake, 'carl')?.observedGeneration, 2));
    assert.equal(ready(fake, 'carl')?.lastTransitionTime, firstTransition, 'True stayed True: no transition');
    // Each status write is a watch event; none of them may cause another write.
    const writes = statusWrites(fake, 'carl');
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(statusWrites(fake, 'carl'), writes, 'status was rewritten with nothing changed');
    assert.equal(writes, 2, 'one write per generation');
  });

  test('deleting a user ends its live sftp session within 5 s; a change that keeps its key does not', async () => {
    const key = await makeClientKey(work, 'dora');
    await createUser('dora', { publicKeys: [await publicKeyLine(key)] });
    await eventually(() => assert.ok(srv.server.users.get('dora')), 1000);
    const session = LiveSftp.withKey(srv.port, 'dora', key);
    try {
      await session.alive();
      await patchUser('dora', { spec: { permissions: ['list', 'download'] } });
      await eventually(() => assert.equal(srv.server.users.get('dora')?.permissions.size, 2), 1000);
      await session.alive(); // still there: its key is still valid

      await deleteUser('dora');
      const ms = await session.endedWithin(5000);
      assert.ok(ms < 5000);
    } finally {
      session.kill();
    }
  });

  test('replacing the key ends a session that logged in with the old one', async () => {
    const oldKey = await makeClientKey(work, 'emil-old');
    const newKey = await makeClientKey(work, 'emil-new');
    await createUser('emil', { publicKeys: [await publicKeyLine(oldKey)] });
    await eventually(() => assert.ok(srv.server.users.get('emil')), 1000);
    const session = LiveSftp.withKey(srv.port, 'emil', oldKey);
    try {
      await session.alive();
      await patchUser('emil', { spec: { publicKeys: [await publicKeyLine(newKey)] } });
      await session.endedWithin(5000);
    } finally {
      session.kill();
    }
  });

  test('a password from a Secret works; changing the Secret applies and ends the old session', async () => {
    await api(fake, 'POST', `/api/v1/namespaces/${NS}/secrets`, secret('fay-password', { passwordHash: await hashPassword('first secret', 'bcrypt') }));
    await createUser('fay', { passwordSecretRef: { name: 'fay-password' } });
    await eventually(() => assert.ok(srv.server.users.get('fay')?.passwordHash), 2000);
    const first = await sftpPassword(srv.port, 'fay', 'first secret', 'pwd\n');
    assert.equal(first.code, 0, first.stderr);
    await eventually(() => assert.equal(ready(fake, 'fay')?.reason, 'Loaded'));

    const session = LiveSftp.withPassword(srv.port, 'fay', 'first secret');
    try {
      await session.alive();
      // kubectl create secret ... --dry-run=client -o yaml | kubectl replace -f -
      await api(fake, 'PUT', `/api/v1/namespaces/${NS}/secrets/fay-password`, secret('fay-password', { passwordHash: await hashPassword('second secret', 'bcrypt') }));
      await session.endedWithin(5000);
    } finally {
      session.kill();
    }
    assert.notEqual((await sftpPassword(srv.port, 'fay', 'first secret', 'pwd\n')).code, 0, 'the old password still works');
    const second = await sftpPassword(srv.port, 'fay', 'second secret', 'pwd\n');
    assert.equal(second.code, 0, second.stderr);
  });

  test('broken resources get Ready=False with a reason and a message, and the others keep working', async () => {
    const key = await makeClientKey(work, 'gus');
    await createUser('gus', { publicKeys: [await publicKeyLine(key)] });
    // Admitted by an API server whose CRD was older (the fake does not validate), refused by the server.
    await createUser('bad-prefix', { s3: { keyPrefix: '/abs' } });
    await createUser('no-secret', { passwordSecretRef: { name: 'missing' } });
    await api(fake, 'POST', `/api/v1/namespaces/${NS}/secrets`, secret('wrong-key', { password: 'x' }));
    await createUser('no-key', { passwordSecretRef: { name: 'wrong-key' } });
    await api(fake, 'POST', `/api/v1/namespaces/${NS}/secrets`, secret('plain', { passwordHash: 'hunter2' }));
    await createUser('plain-password', { passwordSecretRef: { name: 'plain' } });

    await eventually(() => {
      assert.equal(ready(fake, 'bad-prefix')?.reason, 'InvalidSpec');
      assert.equal(ready(fake, 'no-secret')?.reason, 'SecretNotFound');
      assert.equal(ready(fake, 'no-key')?.reason, 'SecretKeyMissing');
      assert.equal(ready(fake, 'plain-password')?.reason, 'InvalidSecret');
      assert.equal(ready(fake, 'gus')?.status, 'True');
    });
    for (const name of ['bad-prefix', 'no-secret', 'no-key', 'plain-password']) {
      assert.equal(ready(fake, name)?.status, 'False', name);
      assert.equal(srv.server.users.get(name), undefined, name);
    }
    assert.match(ready(fake, 'bad-prefix')?.message ?? '', /spec\.s3\.keyPrefix: "\/abs" must not start with "\/"/);
    assert.match(ready(fake, 'no-secret')?.message ?? '', /Secret missing in namespace sftp does not exist/);
    assert.match(ready(fake, 'no-key')?.message ?? '', /has no key passwordHash \(it has password\)/);
    assert.doesNotMatch(ready(fake, 'plain-password')?.message ?? '', /hunter2/, 'a plain-text password is never echoed');
    assert.equal((await sftpBatch(srv.port, 'gus', key, 'pwd\n')).code, 0);

    // Fixing it: the Secret appears with the right key.
    await api(fake, 'POST', `/api/v1/namespaces/${NS}/secrets`, secret('missing', { passwordHash: await hashPassword('found', 'bcrypt') }));
    await eventually(() => assert.equal(ready(fake, 'no-secret')?.reason, 'Loaded'));
    assert.ok(srv.server.users.get('no-secret')?.passwordHash);
  });

  test('a user whose bucket cannot be reached is loaded but gets Ready=False with the storage reason', async () => {
    const key = await makeClientKey(work, 'wren');
    await createUser('wren', { publicKeys: [await publicKeyLine(key)], s3: { keyPrefix: 'wren/', bucket: 'no-such-bucket-wren' } });
    await eventually(() => assert.equal(ready(fake, 'wren')?.reason, 'BucketNotFound'), 5000);
    assert.equal(ready(fake, 'wren')?.status, 'False');
    assert.match(ready(fake, 'wren')?.message ?? '', /no-such-bucket-wren/);
    // Fixing the spec clears it.
    await api(fake, 'PATCH', `${USERS}/namespaces/${NS}/sftpusers/wren`, { spec: { s3: { bucket: '' } } }, 'application/merge-patch+json');
    await eventually(() => assert.equal(ready(fake, 'wren')?.reason, 'Loaded'), 5000);
  });

  test('a username used in two namespaces: the older resource wins, the newer gets UsernameConflict', async () => {
    const key = await makeClientKey(work, 'hal');
    const otherKey = await makeClientKey(work, 'hal-other');
    await createUser('hal', { publicKeys: [await publicKeyLine(key)] }, 'zeta');
    skewMs = 2000; // a later creationTimestamp (whole seconds), though "alpha" sorts first by name
    try {
      await createUser('hal', { publicKeys: [await publicKeyLine(otherKey)] }, 'alpha');
    } finally {
      skewMs = 0;
    }
    await eventually(() => {
      assert.equal(ready(fake, 'hal', 'alpha')?.reason, 'UsernameConflict');
      assert.equal(ready(fake, 'hal', 'zeta')?.reason, 'Loaded');
    });
    assert.match(ready(fake, 'hal', 'alpha')?.message ?? '', /already used by SftpUser zeta\/hal/);
    assert.equal(srv.server.users.get('hal')?.source, 'kube zeta/hal');
    assert.equal((await sftpBatch(srv.port, 'hal', key, 'pwd\n')).code, 0);
    assert.notEqual((await sftpBatch(srv.port, 'hal', otherKey, 'pwd\n')).code, 0);

    // The winner goes: the other one takes the name.
    await deleteUser('hal', 'zeta');
    await eventually(() => assert.equal(ready(fake, 'hal', 'alpha')?.reason, 'Loaded'));
    assert.equal(srv.server.users.get('hal')?.source, 'kube alpha/hal');
  });

  test('dropped watches, 410 Gone and an API server restart: later changes still apply', async () => {
    const key = await makeClientKey(work, 'ivy');
    const line = await publicKeyLine(key);
    const users = srv.server.users;

    // A dropped connection.
    fake.closeWatches();
    await createUser('ivy', { publicKeys: [line] });
    await eventually(() => assert.ok(users.get('ivy')), 5000);

    // 410: changes made while the watch is down, and the history compacted before it comes back.
    const relistsBefore = fake.requests.filter((r) => r.path === `${USERS}/sftpusers` && r.query.watch !== 'true').length;
    fake.closeWatches();
    fake.delete('sftpusers', NS, 'ivy');
    fake.create('sftpusers', NS, sftpUser('jack', { publicKeys: [line] }) as never);
    fake.compact();
    await eventually(() => {
      assert.equal(users.get('ivy'), undefined);
      assert.ok(users.get('jack'));
    }, 5000);
    const relists = fake.requests.filter((r) => r.path === `${USERS}/sftpusers` && r.query.watch !== 'true').length;
    assert.ok(relists > relistsBefore, 'the informer did not relist after 410');

    // A restart: connections refused for a while, the watch cache gone, changes made meanwhile.
    const restarting = fake.restart(400);
    fake.delete('sftpusers', NS, 'jack');
    fake.create('sftpusers', NS, sftpUser('kim', { publicKeys: [line] }) as never);
    await restarting;
    await eventually(() => {
      assert.equal(users.get('jack'), undefined);
      assert.ok(users.get('kim'));
    }, 8000);
    // And the watch works again afterwards.
    await createUser('lou', { publicKeys: [line] });
    await eventually(() => assert.ok(users.get('lou')), 2000);
    assert.equal((await sftpBatch(srv.port, 'lou', key, 'pwd\n')).code, 0);
    assert.equal(srv.server.users.ready, true);
  });
});

// ---- two replicas ---------------------------------------------------------------------------------

describe('two replicas', () => {
  test('elect exactly one status writer; the other takes over when it stops', async () => {
    const api2 = await FakeKubeApiServer.start({ bookmarkIntervalMs: 500 });
    const log = pino({ level: process.env.S3SFTP_TEST_LOG ?? 'silent' }, pino.destination(2));
    const replica = (identity: string) =>
      new KubeUserSource({
        kubeConfig: api2.kubeConfig(NS),
        namespace: '',
        defaultBucket: 'b',
        leaseNamespace: NS,
        identity,
        log: log.child({ replica: identity }),
        // Long enough that an event-loop stall on a loaded machine does not hand the Lease over.
        lease: { durationMs: 4000, renewIntervalMs: 250, renewDeadlineMs: 3000 },
        informer: { restartDelayMs: { min: 100, max: 1000 }, maxReconnectDelayMs: 500 },
      }).start();
    const a = replica('replica-a');
    const b = replica('replica-b');
    try {
      await Promise.all([a.whenReady(5000), b.whenReady(5000)]);
      await eventually(() => assert.equal([a.leading, b.leading].filter(Boolean).length, 1), 3000);
      const [leader, follower] = a.leading ? [a, b] : [b, a];
      const lease = api2.get('leases', NS, 's3sftp-status-writer')?.spec as { holderIdentity?: string };
      assert.equal(lease.holderIdentity, leader === a ? 'replica-a' : 'replica-b');

      await createUser('one', { s3: { keyPrefix: '/bad' } }, NS, api2);
      await eventually(() => assert.equal(ready(api2, 'one')?.reason, 'InvalidSpec'));
      await eventually(() => assert.ok(follower.verdict(`${NS}/one`)), 1000);
      await new Promise((r) => setTimeout(r, 500));
      assert.equal(follower.statusWrites, 0, 'the follower wrote status');
      assert.equal(leader.statusWrites, 1);
      assert.equal(statusWrites(api2, 'one'), 1);
      assert.equal([a.leading, b.leading].filter(Boolean).length, 1, 'still exactly one leader after a second of renewals');

      // The leader stops (and releases the Lease): the follower takes over and writes status.
      await leader.close();
      await eventually(() => assert.equal(follower.leading, true), 5000);
      await createUser('two', { s3: { keyPrefix: '/bad' } }, NS, api2);
      await eventually(() => assert.equal(ready(api2, 'two')?.reason, 'InvalidSpec'), 2000);
      // The writer counts a write when its response arrives, a moment after the store changed.
      await eventually(() => assert.equal(follower.statusWrites, 1), 1000);
    } finally {
      await Promise.all([a.close(), b.close()]);
      await api2.stop();
    }
  });

  test('not ready until the first list succeeds; a Secret namespace it may not read does not block the others', async () => {
    const api3 = await FakeKubeApiServer.start({ bookmarkIntervalMs: 500 });
    const log = pino({ level: process.env.S3SFTP_TEST_LOG ?? 'silent' }, pino.destination(2));
    api3.create('sftpusers', NS, sftpUser('pat', { passwordSecretRef: { name: 'pat-password' } }) as never);
    api3.create('sftpusers', 'open', sftpUser('quinn', { passwordHash: await hashPassword('q', 'bcrypt') }) as never);
    api3.failRequests((r) => r.path === `${USERS}/sftpusers` && r.query.watch !== 'true', 503, 3);
    api3.failRequests((r) => r.path === `/api/v1/namespaces/${NS}/secrets`, 403);
    const source = new KubeUserSource({
      kubeConfig: api3.kubeConfig(NS),
      namespace: '',
      defaultBucket: 'b',
      leaseNamespace: NS,
      log,
      informer: { restartDelayMs: { min: 200, max: 400 }, maxReconnectDelayMs: 500 },
    });
    let thrown = 0;
    source.onChange(() => {
      thrown++;
      throw new Error('a listener that throws');
    });
    source.start();
    try {
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(source.ready, false, 'ready before any list succeeded');
      await source.whenReady(5000);
      assert.ok(source.get('quinn'));
      assert.equal(source.get('pat'), undefined);
      await eventually(() => assert.equal(ready(api3, 'pat')?.reason, 'SecretUnreadable'));
      assert.match(ready(api3, 'pat')?.message ?? '', /grant its service account get, list and watch on secrets/);
      // The listener threw on every change, and changes still arrive.
      api3.create('sftpusers', 'open', sftpUser('rae', { passwordHash: await hashPassword('r', 'bcrypt') }) as never);
      await eventually(() => assert.ok(source.get('rae')), 2000);
      assert.ok(thrown >= 2);
      // An event client-node's informer chokes on (no metadata): its handler throws inside a
      // promise, which would be an unhandled rejection (fatal) if it escaped.
      api3.injectWatchEvent('sftpusers', { type: 'ADDED', object: { kind: 'SftpUser' } });
      api3.create('sftpusers', 'open', sftpUser('sam', { passwordHash: await hashPassword('s', 'bcrypt') }) as never);
      await eventually(() => assert.ok(source.get('sam')), 2000);
    } finally {
      await source.close();
      await api3.stop();
    }
  });
});
