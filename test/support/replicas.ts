/**
 * Several s3sftp replicas behind one load balancer, on loopback, as a chart deployment runs them:
 *
 * - N real server processes (`node src/cli/main.ts serve`), each with its own SSH and metrics
 *   port and data directory, the same host key file and the same configuration (env);
 * - HAProxy in TCP mode in front of them, round robin, health-checking each replica's /readyz on
 *   its metrics port as the AWS Load Balancer Controller's target-group check does; optionally
 *   sending PROXY protocol v2 (`send-proxy-v2`), with the replicas trusting 127.0.0.1;
 * - one Swift S3 (the shared one of the run, or a private one), one bucket;
 * - the fake Kubernetes API server with SftpUsers, Secrets, Leases and Events; each replica gets
 *   its own kubeconfig with its own bearer token, so the API server's request log tells which
 *   replica made a call.
 *
 * Clients connect only to `port` (HAProxy). Used by test/integration/replicas.test.ts and usable
 * by the benchmark; everything it starts is stopped by stop().
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile, chmod } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { SwiftS3 } from '../../dev/swift.ts';
import { hashPassword } from '../../src/auth/password.ts';
import { generateEd25519 } from '../../src/ssh/keygen.ts';
import { FakeKubeApiServer } from './fake-kube-apiserver.ts';
import { createBucket, s3Env, s3Server } from './harness.ts';
import { freePort } from './ports.ts';

const ROOT = join(import.meta.dirname, '..', '..');
const MAIN = join(ROOT, 'src', 'cli', 'main.ts');

/** Namespace of the SftpUsers, Secrets and the Lease. */
export const NAMESPACE = 'sftp';

export interface ReplicaSetOptions {
  /** Default 3. */
  replicas?: number;
  /** HAProxy sends PROXY protocol v2 and the replicas trust 127.0.0.1/32. */
  proxyProtocol?: boolean;
  /** Extra S3SFTP_* settings for every replica. */
  env?: Record<string, string>;
  /** Default: the shared S3 of the run, or a private Swift. */
  s3?: SwiftS3;
  /** HAProxy's health-check interval; a replica is out after one failed check. Default 300 ms. */
  checkIntervalMs?: number;
}

/** One server process. */
export interface Replica {
  index: number;
  /** HAProxy's name for it. */
  name: string;
  sshPort: number;
  metricsPort: number;
  /** Bearer token in its kubeconfig (RecordedRequest.token). */
  token: string;
  child: ChildProcess | undefined;
  /** Parsed JSON log lines of every run of this replica, oldest first. */
  logs: Record<string, unknown>[];
  /** Index in `logs` where the current run's lines start. */
  runFrom: number;
}

/** A test user: SftpUser (+ Secret for the password) in the fake API server. */
export interface ReplicaUser {
  username: string;
  keyPrefix: string;
  /** Private key file (OpenSSH format). */
  keyFile: string;
  publicKey: string;
  password?: string;
}


async function sleep(ms: number): Promise<void> {
  await new Promise((r) => setTimeout(r, ms));
}

/** Polls `check` every 50 ms until it returns true or `timeoutMs` passes. */
export async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 20_000): Promise<number> {
  const start = Date.now();
  while (Date.now() - start < timeoutMs) {
    if (await check()) return Date.now() - start;
    await sleep(50);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

export class ReplicaSet {
  readonly dir: string;
  readonly s3: SwiftS3;
  readonly bucket: string;
  readonly kube: FakeKubeApiServer;
  /** HAProxy's frontend port: the only one clients use. */
  readonly port: number;
  readonly replicas: Replica[];
  /** The shared host key's public half (for known_hosts). */
  readonly hostPublicKey: string;
  readonly #env: Record<string, string>;
  readonly #ownS3: boolean;
  #haproxy: ChildProcess | undefined;
  readonly #statsSocket: string;

  private constructor(init: {
    dir: string;
    s3: SwiftS3;
    ownS3: boolean;
    bucket: string;
    kube: FakeKubeApiServer;
    port: number;
    replicas: Replica[];
    hostPublicKey: string;
    env: Record<string, string>;
  }) {
    this.dir = init.dir;
    this.s3 = init.s3;
    this.#ownS3 = init.ownS3;
    this.bucket = init.bucket;
    this.kube = init.kube;
    this.port = init.port;
    this.replicas = init.replicas;
    this.hostPublicKey = init.hostPublicKey;
    this.#env = init.env;
    this.#statsSocket = join(init.dir, 'haproxy.sock');
  }

  /** Starts S3 (unless given), the fake API server, the replicas (until ready) and HAProxy. */
  static async start(opts: ReplicaSetOptions = {}): Promise<ReplicaSet> {
    const dir = await mkdtemp(join(tmpdir(), 's3sftp-replicas-'));
    const s3 = opts.s3 ?? (await s3Server());
    const bucket = await createBucket(s3);
    const kube = await FakeKubeApiServer.start({ bookmarkIntervalMs: 1000 });
    const hostKey = generateEd25519();
    const hostKeyFile = join(dir, 'ssh_host_ed25519_key');
    await writeFile(hostKeyFile, hostKey.private);
    await chmod(hostKeyFile, 0o600);
    const count = opts.replicas ?? 3;
    const replicas: Replica[] = [];
    for (let index = 0; index < count; index++) {
      const token = `replica-${index}-${randomBytes(4).toString('hex')}`;
      await kube.writeKubeconfig(join(dir, `kubeconfig-${index}`), NAMESPACE, token);
      replicas.push({ index, name: `r${index}`, sshPort: await freePort(), metricsPort: await freePort(), token, child: undefined, logs: [], runFrom: 0 });
    }
    const env: Record<string, string> = {
      S3SFTP_HOSTKEYS: hostKeyFile,
      ...s3Env(s3, bucket),
      S3SFTP_S3_UPLOAD_PARTSIZE: '5MiB',
      S3SFTP_USERS_KUBERNETES_ENABLED: 'true',
      S3SFTP_USERS_KUBERNETES_NAMESPACE: NAMESPACE,
      S3SFTP_USERS_KUBERNETES_LEASENAMESPACE: NAMESPACE,
      S3SFTP_USERS_KUBERNETES_LEASEDURATION: '3s',
      S3SFTP_USERS_KUBERNETES_LEASERENEWINTERVAL: '500ms',
      S3SFTP_LOG_LEVEL: 'debug',
      ...(opts.proxyProtocol ? { S3SFTP_PROXYPROTOCOL_TRUSTEDCIDRS: '127.0.0.1/32' } : {}),
      ...opts.env,
    };
    const set = new ReplicaSet({
      dir,
      s3,
      ownS3: opts.s3 === undefined && !process.env.S3SFTP_TEST_S3,
      bucket,
      kube,
      port: await freePort(),
      replicas,
      hostPublicKey: hostKey.public,
      env,
    });
    try {
      await Promise.all(replicas.map((r) => set.startReplica(r.index)));
      await set.#startHaproxy(opts);
      for (const r of replicas) await set.waitBalancer(r.index, 'UP');
    } catch (err) {
      await set.stop();
      throw err;
    }
    return set;
  }

  /** Starts (or restarts) one replica and waits until its /readyz answers 200. */
  async startReplica(index: number): Promise<void> {
    const r = this.#replica(index);
    if (r.child && r.child.exitCode === null && r.child.signalCode === null) throw new Error(`${r.name} is running`);
    const child = spawn(process.execPath, [MAIN, 'serve'], {
      cwd: ROOT,
      env: {
        PATH: process.env.PATH,
        HOME: process.env.HOME,
        ...this.#env,
        S3SFTP_LISTEN: `127.0.0.1:${r.sshPort}`,
        S3SFTP_METRICS_LISTEN: `127.0.0.1:${r.metricsPort}`,
        S3SFTP_DATADIR: join(this.dir, `data-${index}`),
        S3SFTP_USERS_KUBERNETES_KUBECONFIG: join(this.dir, `kubeconfig-${index}`),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    r.child = child;
    r.runFrom = r.logs.length;
    let partial = '';
    const onLine = (chunk: Buffer) => {
      const lines = (partial + chunk.toString()).split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) {
        if (!line.startsWith('{')) continue;
        try {
          r.logs.push({ ...(JSON.parse(line) as Record<string, unknown>), replica: r.name });
        } catch {
          // not a log line
        }
      }
    };
    child.stdout?.on('data', onLine);
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => {
      stderr += d.toString();
      onLine(d);
    });
    await waitFor(`${r.name} ready`, async () => {
      if (child.exitCode !== null) throw new Error(`${r.name} exited with ${child.exitCode}: ${stderr.slice(-2000)}`);
      return (await this.readyz(index)) === 200;
    }, 60_000);
  }

  /** Sends `signal` and waits for the process to exit; resolves with its exit code (null if killed). */
  async stopReplica(index: number, signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 60_000): Promise<number | null> {
    const child = this.#replica(index).child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return child?.exitCode ?? null;
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    child.kill(signal);
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    const code = await exited;
    clearTimeout(timer);
    return code;
  }

  running(index: number): boolean {
    const child = this.#replica(index).child;
    return child !== undefined && child.exitCode === null && child.signalCode === null;
  }

  /** GET /readyz on the replica's metrics port: the status, or 0 when nothing listens. */
  async readyz(index: number): Promise<number> {
    try {
      const res = await fetch(`http://127.0.0.1:${this.#replica(index).metricsPort}/readyz`, { signal: AbortSignal.timeout(2000) });
      await res.text();
      return res.status;
    } catch {
      return 0;
    }
  }

  /** True when the replica's SSH port accepts a TCP connection. */
  async listening(index: number): Promise<boolean> {
    return new Promise((resolve) => {
      const s = connect(this.#replica(index).sshPort, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
  }

  /** HAProxy's view of each replica ("UP", "DOWN", "MAINT", ...), from its stats socket. */
  async balancerStatus(): Promise<Map<string, string>> {
    const csv = await new Promise<string>((resolve, reject) => {
      const s = connect(this.#statsSocket);
      let out = '';
      s.on('data', (d) => (out += d.toString()));
      s.on('end', () => resolve(out));
      s.on('error', reject);
      s.write('show stat\n');
    });
    const lines = csv.split('\n');
    const header = (lines[0] ?? '').replace(/^# /, '').split(',');
    const sv = header.indexOf('svname');
    const st = header.indexOf('status');
    const out = new Map<string, string>();
    for (const line of lines.slice(1)) {
      const f = line.split(',');
      if (f[0] === 'replicas' && f[sv] && f[sv] !== 'BACKEND') out.set(f[sv] ?? '', (f[st] ?? '').split(' ')[0] ?? '');
    }
    return out;
  }

  /** Waits until HAProxy reports the replica UP (or DOWN). */
  async waitBalancer(index: number, state: 'UP' | 'DOWN', timeoutMs = 20_000): Promise<number> {
    const name = this.#replica(index).name;
    // The stats socket appears a moment after HAProxy starts listening; until then, not yet.
    return waitFor(`HAProxy to see ${name} ${state}`, async () => (await this.balancerStatus().catch(() => new Map<string, string>())).get(name) === state, timeoutMs);
  }

  /** Log lines of every replica matching `msg` (a substring or a pattern). */
  logs(msg: string | RegExp): Record<string, unknown>[] {
    const match = (m: unknown) => typeof m === 'string' && (typeof msg === 'string' ? m.includes(msg) : msg.test(m));
    return this.replicas.flatMap((r) => r.logs.filter((l) => match(l.msg)));
  }

  /** The last `n` lines at info or above of all replicas, oldest first, as text (for failure messages). */
  recentLogs(n: number): string {
    return this.replicas
      .flatMap((r) => r.logs.filter((l) => Number(l.level) >= 30))
      .sort((a, b) => Number(a.time) - Number(b.time))
      .slice(-n)
      .map((l) => `${l.replica} ${l.msg} ${l.remote ?? ''} ${typeof l.err === 'object' ? JSON.stringify(l.err) : (l.err ?? '')}`)
      .join('\n');
  }

  /** The replicas that hold the Lease now, by their logs ("became" not followed by "stopped being"). */
  leaders(): number[] {
    return this.replicas
      .filter((r) => {
        if (!this.running(r.index)) return false;
        const last = r.logs.slice(r.runFrom).filter((l) => l.msg === 'became the status writer' || l.msg === 'stopped being the status writer').at(-1);
        return last?.msg === 'became the status writer';
      })
      .map((r) => r.index);
  }

  /** Creates an SftpUser with a fresh key pair (and a password Secret when `password` is given). */
  async addUser(username: string, opts: { password?: string; keyPrefix?: string } = {}): Promise<ReplicaUser> {
    const pair = generateEd25519();
    const keyFile = join(this.dir, `id_${username}`);
    await writeFile(keyFile, pair.private);
    await chmod(keyFile, 0o600);
    const keyPrefix = opts.keyPrefix ?? `${username}/`;
    const spec: Record<string, unknown> = { username, s3: { keyPrefix }, permissions: ['*'], publicKeys: [pair.public] };
    if (opts.password) {
      const secret = `${username}-password`;
      this.kube.create('secrets', NAMESPACE, {
        metadata: { name: secret },
        data: { passwordHash: Buffer.from(await hashPassword(opts.password, 'bcrypt')).toString('base64') },
      } as never);
      spec.passwordSecretRef = { name: secret };
    }
    this.kube.create('sftpusers', NAMESPACE, { metadata: { name: username }, spec } as never);
    return { username, keyPrefix, keyFile, publicKey: pair.public, password: opts.password };
  }

  /** Stops HAProxy, every replica (SIGTERM, then SIGKILL), the fake API server and a private S3. */
  async stop(): Promise<void> {
    await Promise.all(this.replicas.map((r) => this.stopReplica(r.index, 'SIGTERM', 15_000).catch(() => null)));
    const haproxy = this.#haproxy;
    if (haproxy && haproxy.exitCode === null && haproxy.signalCode === null) {
      const exited = new Promise((r) => haproxy.once('exit', r));
      haproxy.kill('SIGKILL');
      await exited;
    }
    await this.kube.stop();
    if (this.#ownS3) await this.s3.stop();
    await rm(this.dir, { recursive: true, force: true });
  }

  #replica(index: number): Replica {
    const r = this.replicas[index];
    if (!r) throw new Error(`no replica ${index}`);
    return r;
  }

  async #startHaproxy(opts: ReplicaSetOptions): Promise<void> {
    const inter = opts.checkIntervalMs ?? 300;
    const send = opts.proxyProtocol ? ' send-proxy-v2' : '';
    const cfg = [
      'global',
      `  stats socket ${this.#statsSocket} mode 600 level admin`,
      '  maxconn 2000',
      'defaults',
      '  mode tcp',
      '  timeout connect 2s',
      '  timeout client 10m',
      '  timeout server 10m',
      '  timeout check 1s',
      'frontend sftp',
      `  bind 127.0.0.1:${this.port}`,
      '  default_backend replicas',
      'backend replicas',
      '  balance roundrobin',
      // The AWS Load Balancer Controller's target-group check: HTTP GET /readyz on the metrics port.
      '  option httpchk GET /readyz',
      '  http-check expect status 200',
      // A refused connection (replica gone) is retried on another replica.
      '  retries 3',
      '  option redispatch',
      `  default-server inter ${inter}ms fastinter ${inter}ms downinter ${inter}ms fall 1 rise 2`,
      ...this.replicas.map((r) => `  server ${r.name} 127.0.0.1:${r.sshPort} check port ${r.metricsPort}${send}`),
      '',
    ].join('\n');
    const file = join(this.dir, 'haproxy.cfg');
    await writeFile(file, cfg);
    await mkdir(this.dir, { recursive: true });
    const child = spawn('haproxy', ['-db', '-f', file], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.#haproxy = child;
    let out = '';
    child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
    await waitFor('HAProxy listening', async () => {
      if (child.exitCode !== null) throw new Error(`haproxy exited with ${child.exitCode}: ${out}`);
      return new Promise<boolean>((resolve) => {
        const s = connect(this.port, '127.0.0.1');
        s.once('connect', () => {
          s.destroy();
          resolve(true);
        });
        s.once('error', () => resolve(false));
      });
    });
  }
}

/** sha256 of a buffer, hex. */
export function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}
