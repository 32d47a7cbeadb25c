/**
 * `make bench` part: 10,000 SftpUsers (issue 12 item 7). Loopback only, every loop bounded.
 *
 * The fake Kubernetes API server (test/support/fake-kube-apiserver.ts) holds TENK_USERS SftpUsers in
 * one namespace, each with its own public key and a passwordSecretRef to its own Secret; one Swift
 * serves S3. The real CLI runs as a child process and is measured for:
 *   - start to /readyz 200 (every user listed and loaded), RSS and V8 heap at that moment;
 *   - start until every SftpUser's status says Ready for its current generation (the leader's writes);
 *   - SSH login latency (TCP connect to an open SFTP channel, key auth with ssh2's client),
 *     sequential while quiet, then TENK_LOGIN_CONCURRENCY loops during the storm;
 *   - a storm of TENK_STORM_RATE SftpUser updates per second for TENK_STORM_SECONDS (spec changes
 *     that bump generation, on users not used for logins);
 *   - revocation during the storm: a live session whose SftpUser is deleted, whose Secret's hash
 *     changes, or whose key is removed from the spec — time from the API write to the session's end;
 *   - status catching up after the storm, and SIGTERM-restart to ready.
 * TENK_COMPARE_ROOT=/other/checkout runs the same against that checkout's CLI first (before/after).
 * Results: bench/results/tenk.md (TENK_OUT to change).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile, chmod, mkdir } from 'node:fs/promises';
import { tmpdir, loadavg } from 'node:os';
import { join } from 'node:path';
import ssh2 from 'ssh2';
import { startSwift, type SwiftS3 } from '../dev/swift.ts';
import { hashPassword } from '../src/auth/password.ts';
import { generateEd25519 } from '../src/ssh/keygen.ts';
import { FakeKubeApiServer } from '../test/support/fake-kube-apiserver.ts';
import { createBucket, s3Env } from '../test/support/harness.ts';
import { freePort } from '../test/support/ports.ts';
import { fmt, markdownTable, percentile } from './lib/stats.ts';

const ROOT = join(import.meta.dirname, '..');
const env = (name: string, fallback: number) => Number(process.env[name] ?? fallback);
const USERS = env('TENK_USERS', 10_000);
const STORM_RATE = env('TENK_STORM_RATE', 1000);
const STORM_SECONDS = env('TENK_STORM_SECONDS', 10);
const LOGINS = env('TENK_LOGINS', 100);
/** Quiet logins stop after this long even when fewer than TENK_LOGINS were made (slow builds). */
const QUIET_BUDGET_MS = env('TENK_QUIET_SECONDS', 90) * 1000;
const LOGIN_CONCURRENCY = env('TENK_LOGIN_CONCURRENCY', 4);
const READY_TIMEOUT_MS = env('TENK_READY_TIMEOUT_SECONDS', 300) * 1000;
const STATUS_TIMEOUT_MS = env('TENK_STATUS_TIMEOUT_SECONDS', 180) * 1000;
const OUT = process.env.TENK_OUT ?? join(ROOT, 'bench', 'results', 'tenk.md');
const NAMESPACE = 'sftp';
const PASSWORD = 'tenk-bench-password';
/** Users 0..LOGIN_POOL-1 are logged in as; the storm touches only the others. */
const LOGIN_POOL = Math.min(200, Math.floor(USERS / 2));

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const MiB = 1024 * 1024;

interface Result {
  build: string;
  readyMs?: number;
  rssMiB?: number;
  heapMiB?: number;
  statusMs?: number;
  quiet: number[];
  storm: number[];
  stormUpdates?: number;
  stormSeconds?: number;
  loginErrors: number;
  revocations: { what: string; ms: number | undefined }[];
  statusAfterStormMs?: number;
  restartReadyMs?: number;
  rssAfterStormMiB?: number;
  heapAfterStormMiB?: number;
  notes: string[];
}


function rssMiB(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

async function heapMiB(metricsPort: number): Promise<number> {
  try {
    const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`, { signal: AbortSignal.timeout(30_000) })).text();
    const m = /^nodejs_heap_size_used_bytes (\S+)/m.exec(text);
    return m ? Number(m[1]) / MiB : NaN;
  } catch {
    return NaN;
  }
}

async function readyz(metricsPort: number): Promise<number> {
  try {
    const res = await fetch(`http://127.0.0.1:${metricsPort}/readyz`, { signal: AbortSignal.timeout(2000) });
    await res.text();
    return res.status;
  } catch {
    return 0;
  }
}

/** Polls every `everyMs` until `check` holds; the elapsed ms, or undefined after `timeoutMs`. */
async function until(check: () => boolean | Promise<boolean>, timeoutMs: number, everyMs = 100): Promise<number | undefined> {
  const start = performance.now();
  while (performance.now() - start < timeoutMs) {
    if (await check()) return performance.now() - start;
    await sleep(everyMs);
  }
  return undefined;
}

interface Fixture {
  keys: { private: string; public: string }[];
  hash: string;
  otherHash: string;
}

async function fixture(): Promise<Fixture> {
  const keys = Array.from({ length: USERS }, () => generateEd25519());
  return { keys, hash: await hashPassword(PASSWORD, 'bcrypt'), otherHash: await hashPassword(`${PASSWORD}-changed`, 'bcrypt') };
}

const userName = (i: number) => `u${String(i).padStart(5, '0')}`;

function populate(kube: FakeKubeApiServer, fx: Fixture): void {
  const b64 = Buffer.from(fx.hash).toString('base64');
  for (let i = 0; i < USERS; i++) {
    const name = userName(i);
    kube.create('secrets', NAMESPACE, { metadata: { name: `${name}-password` }, data: { passwordHash: b64 } } as never);
    kube.create('sftpusers', NAMESPACE, {
      metadata: { name },
      spec: {
        username: name,
        passwordSecretRef: { name: `${name}-password` },
        publicKeys: [fx.keys[i]!.public],
        s3: { keyPrefix: `home/${name}/` },
        permissions: ['*'],
      },
    } as never);
  }
}

interface Running {
  child: ChildProcess;
  startedAt: number;
  stderr: () => string;
}

function startServer(root: string, dir: string, s3: SwiftS3, bucket: string, ports: { ssh: number; metrics: number }, hostKey: string, kubeconfig: string): Running {
  const child = spawn(process.execPath, [join(root, 'src', 'cli', 'main.ts'), 'serve'], {
    cwd: root,
    env: {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      S3SFTP_LISTEN: `127.0.0.1:${ports.ssh}`,
      S3SFTP_METRICS_LISTEN: `127.0.0.1:${ports.metrics}`,
      S3SFTP_DATADIR: join(dir, 'data'),
      S3SFTP_HOSTKEYS: hostKey,
      ...s3Env(s3, bucket),
      S3SFTP_USERS_KUBERNETES_ENABLED: 'true',
      S3SFTP_USERS_KUBERNETES_NAMESPACE: NAMESPACE,
      S3SFTP_USERS_KUBERNETES_LEASENAMESPACE: NAMESPACE,
      S3SFTP_USERS_KUBERNETES_KUBECONFIG: kubeconfig,
      S3SFTP_LOG_LEVEL: 'warn',
      // Many logins from one address in a short time are the point here, not an attack.
      S3SFTP_DEFENDER_ENABLED: 'false',
      ...(process.env.TENK_SERVER_NODE_OPTIONS ? { NODE_OPTIONS: process.env.TENK_SERVER_NODE_OPTIONS } : {}),
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let err = '';
  child.stderr?.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-4000)));
  return { child, startedAt: performance.now(), stderr: () => err };
}

async function stopServer(r: Running): Promise<void> {
  const child = r.child;
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
  await exited;
  clearTimeout(timer);
}

interface Session {
  client: InstanceType<typeof ssh2.Client>;
  closed: Promise<number>;
  ms: number;
}

/** Connect, authenticate and open an SFTP channel; `closed` resolves with performance.now() at close. */
function login(port: number, username: string, auth: { privateKey: string } | { password: string }, timeoutMs = 60_000): Promise<Session> {
  const start = performance.now();
  return new Promise((resolve, reject) => {
    const client = new ssh2.Client();
    let closedAt: (t: number) => void = () => {};
    const closed = new Promise<number>((r) => (closedAt = r));
    client.on('close', () => closedAt(performance.now()));
    const timer = setTimeout(() => {
      client.end();
      reject(new Error('login timed out'));
    }, timeoutMs);
    client.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    client.on('ready', () => {
      client.sftp((err) => {
        clearTimeout(timer);
        if (err) return reject(err);
        resolve({ client, closed, ms: performance.now() - start });
      });
    });
    client.connect({ host: '127.0.0.1', port, username, ...auth, readyTimeout: timeoutMs });
  });
}

async function measure(build: string, root: string, s3: SwiftS3, fx: Fixture): Promise<Result> {
  const result: Result = { build, quiet: [], storm: [], loginErrors: 0, revocations: [], notes: [] };
  const dir = await mkdtemp(join(tmpdir(), 's3sftp-tenk-'));
  const kube = await FakeKubeApiServer.start({ historyLimit: 200_000, bookmarkIntervalMs: 5000 });
  let server: Running | undefined;
  try {
    await mkdir(join(dir, 'data'));
    const bucket = await createBucket(s3);
    const hostKey = join(dir, 'host_key');
    await writeFile(hostKey, generateEd25519().private);
    await chmod(hostKey, 0o600);
    const kubeconfig = join(dir, 'kubeconfig');
    await kube.writeKubeconfig(kubeconfig, NAMESPACE);
    populate(kube, fx);
    const ports = { ssh: await freePort(), metrics: await freePort() };
    const start = () => startServer(root, dir, s3, bucket, ports, hostKey, kubeconfig);

    server = start();
    const s = server;
    const ready = await until(async () => {
      if (s.child.exitCode !== null) throw new Error(`server exited: ${s.stderr()}`);
      return (await readyz(ports.metrics)) === 200;
    }, READY_TIMEOUT_MS);
    if (ready === undefined) throw new Error(`not ready within ${READY_TIMEOUT_MS} ms: ${s.stderr()}`);
    result.readyMs = performance.now() - s.startedAt;
    result.rssMiB = rssMiB(s.child.pid!);
    result.heapMiB = await heapMiB(ports.metrics);
    console.log(`[${build}] ready in ${fmt(result.readyMs / 1000)} s, RSS ${fmt(result.rssMiB)} MiB, heap ${fmt(result.heapMiB)} MiB`);

    const upToDate = (o: Readonly<Record<string, unknown> & { metadata: { generation?: number } }>) => {
      const conditions = (o.status as { conditions?: { type: string; status: string; observedGeneration?: number }[] } | undefined)?.conditions;
      const c = conditions?.find((x) => x.type === 'Ready');
      return c !== undefined && c.status === 'True' && c.observedGeneration === o.metadata.generation;
    };
    const statusDone = await until(() => kube.count('sftpusers', upToDate) === USERS, STATUS_TIMEOUT_MS, 500);
    if (statusDone === undefined) result.notes.push(`status: ${kube.count('sftpusers', upToDate)} of ${USERS} Ready after ${STATUS_TIMEOUT_MS / 1000} s more`);
    else result.statusMs = performance.now() - s.startedAt;
    console.log(`[${build}] status caught up: ${statusDone === undefined ? 'no' : fmt(result.statusMs! / 1000)} s`);

    // Quiet: sequential logins, bounded by count and time.
    const quietStart = performance.now();
    for (let i = 0; i < LOGINS && performance.now() - quietStart < QUIET_BUDGET_MS; i++) {
      try {
        const session = await login(ports.ssh, userName(i % LOGIN_POOL), { privateKey: fx.keys[i % LOGIN_POOL]!.private });
        result.quiet.push(session.ms);
        session.client.end();
      } catch {
        result.loginErrors++;
      }
    }
    console.log(`[${build}] quiet logins: ${result.quiet.length}, p50 ${fmt(percentile(result.quiet, 50), 0)} ms`);

    // The sessions to revoke during the storm, opened before it.
    const victims = [LOGIN_POOL - 1, LOGIN_POOL - 2, LOGIN_POOL - 3].map(userName);
    const byKey = await login(ports.ssh, victims[0]!, { privateKey: fx.keys[LOGIN_POOL - 1]!.private });
    const byPassword = await login(ports.ssh, victims[1]!, { password: PASSWORD });
    const byKey2 = await login(ports.ssh, victims[2]!, { privateKey: fx.keys[LOGIN_POOL - 3]!.private });

    // The storm: STORM_RATE updates a second in 20 ms ticks, spec changes on users outside the login pool.
    let updates = 0;
    let stormOver = false;
    const stormStart = performance.now();
    const storm = (async () => {
      const perTick = Math.max(1, Math.round(STORM_RATE / 50));
      let next = LOGIN_POOL;
      let tick = 0;
      while (performance.now() - stormStart < STORM_SECONDS * 1000) {
        for (let k = 0; k < perTick; k++) {
          const name = userName(next);
          next = next + 1 >= USERS ? LOGIN_POOL : next + 1;
          const permissions = (updates + k) % 2 === 0 ? ['list', 'download', 'upload'] : ['*'];
          kube.patch('sftpusers', NAMESPACE, name, { spec: { permissions } });
        }
        updates += perTick;
        tick++;
        const due = stormStart + tick * 20;
        await sleep(Math.max(0, due - performance.now()));
      }
      result.stormSeconds = (performance.now() - stormStart) / 1000;
      stormOver = true;
    })();
    const loops = Array.from({ length: LOGIN_CONCURRENCY }, async (_, loop) => {
      for (let i = loop; !stormOver && i < 100_000; i += LOGIN_CONCURRENCY) {
        try {
          const session = await login(ports.ssh, userName(i % (LOGIN_POOL - 3)), { privateKey: fx.keys[i % (LOGIN_POOL - 3)]!.private }, 30_000);
          if (!stormOver) result.storm.push(session.ms);
          session.client.end();
        } catch {
          result.loginErrors++;
        }
      }
    });
    const revoke = async (atS: number, what: string, session: Session, change: () => void) => {
      await sleep(Math.max(0, stormStart + atS * 1000 - performance.now()));
      const t0 = performance.now();
      change();
      const end = await Promise.race([session.closed, sleep(30_000).then(() => undefined)]);
      result.revocations.push({ what, ms: end === undefined ? undefined : end - t0 });
      session.client.end();
    };
    const third = (STORM_SECONDS * 1000) / 4 / 1000;
    await Promise.all([
      storm,
      ...loops,
      revoke(third, 'SftpUser deleted', byKey, () => kube.delete('sftpusers', NAMESPACE, victims[0]!)),
      revoke(2 * third, 'password hash in the Secret changed', byPassword, () =>
        kube.patch('secrets', NAMESPACE, `${victims[1]}-password`, { data: { passwordHash: Buffer.from(fx.otherHash).toString('base64') } }),
      ),
      revoke(3 * third, 'public key removed from spec', byKey2, () => kube.patch('sftpusers', NAMESPACE, victims[2]!, { spec: { publicKeys: null } })),
    ]);
    result.stormUpdates = updates;
    result.rssAfterStormMiB = rssMiB(s.child.pid!);
    result.heapAfterStormMiB = await heapMiB(ports.metrics);
    console.log(`[${build}] storm: ${updates} updates in ${fmt(result.stormSeconds)} s; logins ${result.storm.length}, p50 ${fmt(percentile(result.storm, 50), 0)} ms; revocations ${result.revocations.map((r) => fmt(r.ms, 0)).join(', ')} ms`);

    // Status after the storm: every user Ready for its current generation again (the two revoked
    // by a spec or Secret change stay Ready; the deleted one is gone).
    const want = USERS - 1;
    const afterStorm = await until(() => kube.count('sftpusers', upToDate) >= want, STATUS_TIMEOUT_MS, 250);
    result.statusAfterStormMs = afterStorm;
    if (afterStorm === undefined) result.notes.push(`status after the storm: ${kube.count('sftpusers', upToDate)} of ${want} current after ${STATUS_TIMEOUT_MS / 1000} s`);

    // Restart: SIGTERM (drain), start again, time to ready.
    await stopServer(s);
    server = start();
    const r = server;
    const again = await until(async () => r.child.exitCode === null && (await readyz(ports.metrics)) === 200, READY_TIMEOUT_MS);
    result.restartReadyMs = again === undefined ? undefined : performance.now() - r.startedAt;
    console.log(`[${build}] restart to ready: ${fmt((result.restartReadyMs ?? NaN) / 1000)} s`);
  } finally {
    if (server) await stopServer(server);
    await kube.stop();
    await rm(dir, { recursive: true, force: true });
  }
  return result;
}

function report(results: Result[], load: { before: string; after: string }): string {
  const ms = (v: number | undefined) => (v === undefined ? 'timed out' : fmt(v, 0));
  const s = (v: number | undefined) => (v === undefined ? 'timed out' : fmt(v / 1000));
  const rows: [string, (r: Result) => string][] = [
    ['start → /readyz 200 (s)', (r) => s(r.readyMs)],
    ['RSS at ready (MiB)', (r) => fmt(r.rssMiB, 0)],
    ['V8 heap used at ready (MiB)', (r) => fmt(r.heapMiB, 0)],
    ['start → every status Ready for its generation (s)', (r) => s(r.statusMs)],
    ['quiet logins (count)', (r) => String(r.quiet.length)],
    ['login p50 / p99, quiet (ms)', (r) => `${ms(percentile(r.quiet, 50))} / ${ms(percentile(r.quiet, 99))}`],
    ['storm: updates / seconds', (r) => `${r.stormUpdates ?? '-'} / ${fmt(r.stormSeconds)}`],
    ['logins during the storm (count)', (r) => String(r.storm.length)],
    ['login p50 / p99, storm (ms)', (r) => `${ms(percentile(r.storm, 50))} / ${ms(percentile(r.storm, 99))}`],
    ['failed logins', (r) => String(r.loginErrors)],
    ...(['SftpUser deleted', 'password hash in the Secret changed', 'public key removed from spec'].map(
      (what): [string, (r: Result) => string] => [`revocation: ${what} → session closed (ms)`, (r) => ms(r.revocations.find((x) => x.what === what)?.ms)],
    )),
    ['RSS / V8 heap used after the storm (MiB)', (r) => `${fmt(r.rssAfterStormMiB, 0)} / ${fmt(r.heapAfterStormMiB, 0)}`],
    ['storm end → every status current (s)', (r) => s(r.statusAfterStormMs)],
    ['SIGTERM restart → /readyz 200 (s)', (r) => s(r.restartReadyMs)],
  ];
  const lines = [
    '# 10,000 SftpUsers',
    '',
    `Written by \`node bench/tenk.ts\` (part of \`make bench\`) on ${new Date().toISOString()}.`,
    `${USERS} SftpUsers in one namespace, each with its own ed25519 key and a passwordSecretRef to its own Secret (bcrypt);`,
    `the fake API server runs in the benchmark's process; one Swift; the server is \`node src/cli/main.ts serve\` as a child process.`,
    `Logins: ssh2 client, key auth, TCP connect to an open SFTP channel; ${LOGINS} sequential while quiet (at most ${QUIET_BUDGET_MS / 1000} s),`,
    `${LOGIN_CONCURRENCY} concurrent loops during a storm of ${STORM_RATE} SftpUser spec updates per second for ${STORM_SECONDS} s.`,
    `Machine load (\`uptime\`) before: ${load.before}; after: ${load.after}.`,
    '',
    markdownTable(['', ...results.map((r) => r.build)], rows.map(([name, f]) => [name, ...results.map(f)])),
    '',
    ...results.flatMap((r) => r.notes.map((n) => `- ${r.build}: ${n}`)),
    '',
  ];
  return lines.join('\n');
}

function uptime(): string {
  return `load average ${loadavg().map((l) => l.toFixed(2)).join(', ')}`;
}

async function main(): Promise<void> {
  const before = uptime();
  console.log(`tenk: ${USERS} users, storm ${STORM_RATE}/s for ${STORM_SECONDS} s; ${before}`);
  const fx = await fixture();
  const s3 = await startSwift();
  const results: Result[] = [];
  try {
    const compare = process.env.TENK_COMPARE_ROOT;
    if (compare) results.push(await measure(`before (${compare})`, compare, s3, fx));
    results.push(await measure(compare ? 'after (this checkout)' : 'this checkout', ROOT, s3, fx));
  } finally {
    await s3.stop();
  }
  const text = report(results, { before, after: uptime() });
  await writeFile(OUT, text);
  console.log(text);
}

await main();
