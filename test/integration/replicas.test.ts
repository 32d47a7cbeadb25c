/**
 * Three replicas behind HAProxy (test/support/replicas.ts), as the chart runs them behind an NLB:
 * the same host key from every replica, one leader for status and the janitor, failover after
 * kill -9, a rolling restart under upload load that loses nothing, PROXY protocol v2 from the
 * balancer, and keepalives that keep live clients and drop frozen ones.
 *
 * Timings in this file's config: Lease 3 s, renewed every 500 ms; HAProxy checks /readyz every
 * 300 ms and takes a replica out after one failure; a SIGTERMed replica keeps listening for
 * 1.5 s (shutdownDelay) and drains for at most 5 s; keepalives every 1 s, 2 may go unanswered.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { connect as tcpConnect } from 'node:net';
import { join } from 'node:path';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import ssh2 from 'ssh2';
import { run, s3ClientFor } from '../support/harness.ts';
import { NAMESPACE, ReplicaSet, sha256, waitFor, type ReplicaUser } from '../support/replicas.ts';

const LEASE_MS = 3000;
const RENEW_MS = 500;
const KEEPALIVE_MS = 1000;
const KEEPALIVE_COUNT = 2;

let set: ReplicaSet;
let alice: ReplicaUser;

before(async () => {
  set = await ReplicaSet.start({
    proxyProtocol: true,
    env: {
      S3SFTP_SHUTDOWNDELAY: '1500ms',
      S3SFTP_SHUTDOWNGRACEPERIOD: '5s',
      S3SFTP_KEEPALIVE_INTERVAL: `${KEEPALIVE_MS}ms`,
      S3SFTP_KEEPALIVE_COUNTMAX: String(KEEPALIVE_COUNT),
    },
  });
  alice = await set.addUser('alice', { password: 'alice-pw' });
  await waitFor('alice Ready', () => readyCondition('alice')?.status === 'True');
});

after(async () => {
  await set?.stop();
});

function readyCondition(name: string): { status: string; observedGeneration?: number } | undefined {
  const obj = set.kube.get('sftpusers', NAMESPACE, name) as { status?: { conditions?: { type: string; status: string; observedGeneration?: number }[] } } | undefined;
  return obj?.status?.conditions?.find((c) => c.type === 'Ready');
}

function sshOpts(knownHosts: string): string[] {
  return ['-o', 'StrictHostKeyChecking=yes', '-o', `UserKnownHostsFile=${knownHosts}`, '-o', 'LogLevel=ERROR', '-o', 'BatchMode=yes', '-o', 'IdentitiesOnly=yes'];
}

/** An ssh2 client through the balancer on a socket we opened, so we know its local port. */
async function connectClient(user: ReplicaUser): Promise<{ client: ssh2.Client; localPort: number }> {
  const sock = tcpConnect(set.port, '127.0.0.1');
  await new Promise<void>((resolve, reject) => {
    sock.once('connect', resolve);
    sock.once('error', reject);
  });
  const localPort = sock.localPort ?? 0;
  const client = new ssh2.Client();
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      client.end();
      sock.destroy();
      reject(new Error('login timed out'));
    }, 25_000);
    client.once('ready', () => {
      clearTimeout(timer);
      resolve();
    });
    client.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    // A balancer with no replica up closes at once, without an SSH error.
    client.once('close', () => {
      clearTimeout(timer);
      reject(new Error('connection closed before login'));
    });
    client.connect({ sock, username: user.username, password: user.password, readyTimeout: 20_000 });
  });
  client.on('error', () => {});
  return { client, localPort };
}

function sftpOf(client: ssh2.Client): Promise<ssh2.SFTPWrapper> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('sftp channel timed out')), 15_000);
    client.once('close', () => reject(new Error('connection closed')));
    client.sftp((err, sftp) => {
      clearTimeout(timer);
      if (err) reject(err);
      else resolve(sftp);
    });
  });
}

describe('several replicas behind one balancer', () => {
  test('every replica presents the same host key: OpenSSH with StrictHostKeyChecking=yes never complains', async () => {
    const knownHosts = join(set.dir, 'known_hosts');
    await writeFile(knownHosts, `[127.0.0.1]:${set.port} ${set.hostPublicKey.trim()}\n`);
    const before = set.replicas.map((r) => r.logs.filter((l) => l.msg === 'authenticated').length);
    for (let i = 0; i < 6; i++) {
      const r = await run('sftp', [...sshOpts(knownHosts), '-i', alice.keyFile, '-P', String(set.port), '-b', '-', 'alice@127.0.0.1'], { input: 'pwd\n', timeoutMs: 30_000 });
      assert.equal(r.code, 0, `connection ${i}: ${r.stderr}`);
      assert.match(r.stdout, /Remote working directory: \//);
    }
    // Round robin: each replica served at least one of the six.
    const after = set.replicas.map((r) => r.logs.filter((l) => l.msg === 'authenticated').length);
    assert.ok(after.every((n, i) => n > (before[i] ?? 0)), `logins per replica before ${before}, after ${after}`);
  });

  test('PROXY protocol v2 from HAProxy: the replica logs the client address, not the balancer’s', async () => {
    const { client, localPort } = await connectClient(alice);
    try {
      await waitFor('the login log line', () => set.logs('authenticated').some((l) => l.remote === `127.0.0.1:${localPort}`), 5000);
    } finally {
      client.end();
    }
    // The replicas trust 127.0.0.1 and so require a header from it: a direct connection without one is refused.
    const direct = await run('ssh', ['-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'BatchMode=yes', '-p', String(set.replicas[0]?.sshPort), 'alice@127.0.0.1', 'true'], { timeoutMs: 20_000 });
    assert.notEqual(direct.code, 0);
    await waitFor('the refusal log line', () => set.logs(/connection refused: the connection does not start with a PROXY protocol header/).length > 0, 5000);
  });

  test('one leader writes status and runs the janitor; kill -9 of it hands both over within leaseDuration + one renewal', async () => {
    await waitFor('one leader', () => set.leaders().length === 1);
    // Stays one over several renewals.
    for (let i = 0; i < 4; i++) {
      await new Promise((r) => setTimeout(r, RENEW_MS));
      assert.equal(set.leaders().length, 1, `leaders: ${set.leaders()}`);
    }
    const [leader = -1] = set.leaders();
    const leaderToken = set.replicas[leader]?.token;
    const statusWriters = new Set(set.kube.requests.filter((r) => r.path.endsWith('/status') && r.method !== 'GET').map((r) => r.token));
    assert.deepEqual([...statusWriters], [leaderToken], 'only the leader wrote status');
    const janitorOn = (i: number) => set.replicas[i]?.logs.filter((l) => typeof l.msg === 'string' && l.msg.startsWith('abandoned-upload janitor:')).at(-1)?.msg;
    assert.match(String(janitorOn(leader)), /running on this replica/);
    for (const r of set.replicas) if (r.index !== leader) assert.doesNotMatch(String(janitorOn(r.index)), /running on this replica/);

    const killedAt = Date.now();
    await set.stopReplica(leader, 'SIGKILL');
    const tookMs = await waitFor('a new leader', () => set.leaders().length === 1, LEASE_MS * 4);
    const [next = -1] = set.leaders();
    assert.notEqual(next, leader);
    // Slack for a busy 2-core machine: the Lease is judged expired on the next renewal tick after
    // leaseDuration, and the log line is read back through a pipe.
    assert.ok(Date.now() - killedAt <= LEASE_MS + RENEW_MS + 1500, `failover took ${tookMs} ms`);
    await waitFor('the janitor on the new leader', () => /running on this replica/.test(String(janitorOn(next))), 5000);

    // A spec change after the failover: status follows, written by the new leader.
    const writesBefore = set.kube.requests.length;
    set.kube.patch('sftpusers', NAMESPACE, 'alice', { spec: { s3: { keyPrefix: 'alice2/' } } });
    const generation = set.kube.get('sftpusers', NAMESPACE, 'alice')?.metadata.generation;
    assert.equal(generation, 2);
    await waitFor('observedGeneration 2', () => readyCondition('alice')?.observedGeneration === 2, 10_000);
    const lateWriters = new Set(set.kube.requests.slice(writesBefore).filter((r) => r.path.endsWith('/status') && r.method !== 'GET').map((r) => r.token));
    assert.deepEqual([...lateWriters], [set.replicas[next]?.token]);
    set.kube.patch('sftpusers', NAMESPACE, 'alice', { spec: { s3: { keyPrefix: 'alice/' } } });

    await set.startReplica(leader);
    await set.waitBalancer(leader, 'UP');
    assert.deepEqual(set.leaders(), [next], 'the restarted replica does not take the Lease back');
  });

  test('the leader alone records Events: a missing Secret gives one Warning on the SftpUser', async () => {
    await waitFor('one leader', () => set.leaders().length === 1);
    const from = set.kube.requests.length;
    set.kube.create('sftpusers', NAMESPACE, { metadata: { name: 'ghost' }, spec: { username: 'ghost', s3: { keyPrefix: 'ghost/' }, permissions: ['*'], passwordSecretRef: { name: 'nope' } } } as never);
    const events = () => set.kube.list('events').filter((e) => (e as { regarding?: { name?: string } }).regarding?.name === 'ghost');
    await waitFor('the event', () => events().length > 0, 10_000);
    // Give the other replicas time to (wrongly) record it too.
    await new Promise((r) => setTimeout(r, 4 * RENEW_MS));
    assert.equal(events().length, 1);
    const e = events()[0] as { type?: string; reason?: string; note?: string };
    assert.equal(e.type, 'Warning');
    assert.equal(e.reason, 'SecretNotFound');
    assert.match(e.note ?? '', /Secret nope in namespace sftp does not exist/);
    const [leader = -1] = set.leaders();
    const creators = new Set(set.kube.requests.slice(from).filter((r) => r.path.includes('/events') && r.method === 'POST').map((r) => r.token));
    assert.deepEqual([...creators], [set.replicas[leader]?.token]);
    set.kube.delete('sftpusers', NAMESPACE, 'ghost');
  });

  test('rolling restart (SIGTERM one at a time) under 4 clients × 50 uploads: every acknowledged upload is whole; /readyz turns 503 and the balancer drops the replica before it stops listening', async () => {
    const users = await Promise.all([0, 1, 2, 3].map((i) => set.addUser(`load${i}`, { password: `pw-${i}` })));
    await waitFor('load users Ready', () => users.every((u) => readyCondition(u.username)?.status === 'True'));
    const acked = new Map<string, string>();
    let retries = 0;
    let lastError = '';
    const errors = new Map<string, number>();
    let restartsDone = false;
    const clientLoop = async (user: ReplicaUser) => {
      let conn: { client: ssh2.Client; sftp: ssh2.SFTPWrapper } | undefined;
      for (let n = 0; n < 50; n++) {
        const data = randomBytes(64 * 1024 + n);
        const name = `f${n}.bin`;
        for (let attempt = 0; ; attempt++) {
          assert.ok(attempt < 40, `${user.username} ${name}: too many retries; last error: ${lastError}`);
          try {
            if (!conn) {
              const { client } = await connectClient(user);
              conn = { client, sftp: await sftpOf(client) };
            }
            const sftp = conn.sftp;
            await new Promise<void>((resolve, reject) => {
              const timer = setTimeout(() => reject(new Error('upload timed out')), 20_000);
              sftp.writeFile(`/${name}`, data, (err) => {
                clearTimeout(timer);
                if (err) reject(err);
                else resolve();
              });
            });
            acked.set(`${user.keyPrefix}${name}`, sha256(data));
            break;
          } catch (err) {
            // Refused or dropped, as rclone and WinSCP see it: reconnect and send the file again.
            lastError = `${user.username} ${name}: ${(err as Error).message}`;
            errors.set((err as Error).message, (errors.get((err as Error).message) ?? 0) + 1);
            retries++;
            conn?.client.end();
            conn = undefined;
            await new Promise((r) => setTimeout(r, 200));
          }
        }
        // Spread the uploads over the restarts.
        if (!restartsDone) await new Promise((r) => setTimeout(r, 250));
      }
      conn?.client.end();
    };
    const clients = Promise.all(users.map(clientLoop));
    clients.catch(() => console.error(set.recentLogs(40)));

    const drainOrder: string[][] = [];
    for (const r of set.replicas) {
      console.error(`# restarting ${r.name}; ${acked.size} uploads acknowledged, ${retries} retries so far: ${JSON.stringify([...errors])}`);
      const seen: string[] = [];
      const exited = set.stopReplica(r.index, 'SIGTERM');
      // /readyz says 503 while the SSH port still accepts connections, and HAProxy takes the
      // replica out in that window.
      await waitFor(`${r.name} /readyz 503`, async () => (await set.readyz(r.index)) === 503, 5000);
      if (await set.listening(r.index)) seen.push('503 while listening');
      await set.waitBalancer(r.index, 'DOWN', 5000);
      if (await set.listening(r.index)) seen.push('balancer DOWN while listening');
      drainOrder.push(seen);
      assert.equal(await exited, 0, `${r.name} exit code`);
      await set.startReplica(r.index);
      await set.waitBalancer(r.index, 'UP');
    }
    restartsDone = true;
    await clients;
    for (const seen of drainOrder) assert.deepEqual(seen, ['503 while listening', 'balancer DOWN while listening']);

    assert.equal(acked.size, 200);
    const s3 = s3ClientFor(set.s3);
    try {
      for (const [key, digest] of acked) {
        const got = await s3.send(new GetObjectCommand({ Bucket: set.bucket, Key: key }));
        const body = Buffer.from(await (got.Body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray());
        assert.equal(sha256(body), digest, key);
      }
    } finally {
      s3.destroy();
    }
    // The restarts really hit the clients (a test that never retried proves little).
    assert.ok(retries > 0, 'no client ever had to retry');
  });

  test('keepalives: a live idle client stays past several intervals; a frozen one is dropped after interval × (countMax + 1)', async () => {
    const knownHosts = join(set.dir, 'known_hosts');
    await writeFile(knownHosts, `[127.0.0.1]:${set.port} ${set.hostPublicKey.trim()}\n`);
    const sftpArgs = [...sshOpts(knownHosts), '-i', alice.keyFile, '-P', String(set.port), 'alice@127.0.0.1'];
    // Live: OpenSSH sftp idle (stdin open, no command) for 4 intervals, then a command.
    const live = spawn('sftp', sftpArgs, { stdio: ['pipe', 'pipe', 'pipe'] });
    let liveOut = '';
    live.stdout.on('data', (d) => (liveOut += d));
    live.stderr.on('data', (d) => (liveOut += d));
    const liveExit = new Promise<number | null>((r) => live.once('exit', r));
    await waitFor('live sftp connected', () => liveOut.includes('Connected to'), 15_000);
    await new Promise((r) => setTimeout(r, KEEPALIVE_MS * (KEEPALIVE_COUNT + 2)));
    live.stdin.end('pwd\nbye\n');
    assert.equal(await liveExit, 0, liveOut);
    assert.match(liveOut, /Remote working directory/);

    // Frozen: SIGSTOP the client once logged in. `ssh -N` rather than sftp, since sftp leaves the
    // connection to an ssh child process, which would go on answering.
    const before = set.logs('client stopped answering keepalives').length;
    const logins = set.logs('authenticated').length;
    const frozen = spawn('ssh', [...sshOpts(knownHosts), '-N', '-i', alice.keyFile, '-p', String(set.port), 'alice@127.0.0.1'], { stdio: ['ignore', 'pipe', 'pipe'] });
    const frozenExit = new Promise((r) => frozen.once('exit', r));
    try {
      await waitFor('ssh -N logged in', () => set.logs('authenticated').length > logins, 15_000);
      frozen.kill('SIGSTOP');
      const stoppedAt = Date.now();
      await waitFor('the server to give up on the frozen client', () => set.logs('client stopped answering keepalives').length > before, KEEPALIVE_MS * (KEEPALIVE_COUNT + 1) + 5000);
      const took = Date.now() - stoppedAt;
      assert.ok(took >= KEEPALIVE_MS * KEEPALIVE_COUNT, `dropped after only ${took} ms`);
    } finally {
      frozen.kill('SIGKILL');
      frozen.kill('SIGCONT');
      await frozenExit;
    }
  });
});
