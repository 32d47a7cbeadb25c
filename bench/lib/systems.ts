/**
 * The SFTP servers the benchmark compares, each started as a separate process group so its CPU and
 * memory can be read from /proc: s3sftp itself, `rclone serve sftp` on the same bucket, and OpenSSH's
 * sshd + sftp-server on local disk (the SSH ceiling). All listen on 127.0.0.1 and take the same
 * client key.
 */
import { mkdir, writeFile, chmod } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import type { SwiftS3 } from '../../dev/swift.ts';
import { userYaml } from '../../test/support/harness.ts';
import { freePort } from '../../test/support/ports.ts';
import { generateEd25519 } from '../../src/ssh/keygen.ts';
import { spawnServer, stopGroup } from './procs.ts';

export interface SftpSystem {
  name: string;
  port: number;
  user: string;
  /** Prefix for remote paths in client commands: "" (the login directory) or an absolute directory. */
  remoteDir: string;
  /** Leader of the server's process group. */
  pid: number;
  child: ChildProcess;
  stop(): Promise<void>;
}

export interface ClientKey {
  path: string;
  publicLine: string;
}


/** Polls until something accepts TCP connections on the port (the server is up). */
async function waitForPort(port: number, child: ChildProcess, stderr: () => string, what: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`${what} exited: ${stderr()}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what} did not listen on ${port}: ${stderr()}`);
}

export async function writeClientKey(dir: string): Promise<ClientKey> {
  const pair = generateEd25519();
  const path = join(dir, 'id_ed25519');
  await writeFile(path, pair.private);
  await chmod(path, 0o600);
  return { path, publicLine: pair.public.trim() };
}

const NODE = process.execPath;
const ROOT = new URL('../..', import.meta.url).pathname;

export interface S3sftpOptions {
  s3: SwiftS3;
  /** S3 endpoint the server uses (the latency proxy, or s3.endpoint). */
  endpoint: string;
  bucket: string;
  dir: string;
  key: ClientKey;
  name?: string;
  env?: Record<string, string>;
  /** Another checkout to run instead of this one (before/after comparisons); default this tree. */
  root?: string;
}

/** s3sftp as `node src/cli/main.ts serve`, user `bench` chrooted to `bench/`. */
export async function startS3sftp(o: S3sftpOptions): Promise<SftpSystem & { dataDir: string }> {
  await mkdir(join(o.dir, 'users'), { recursive: true });
  await writeFile(join(o.dir, 'users', 'bench.yaml'), await userYamlWithKey({ username: 'bench', keyPrefix: 'bench/' }, o.key));
  const port = await freePort();
  const dataDir = join(o.dir, 'data');
  const env = {
    PATH: process.env.PATH ?? '',
    HOME: process.env.HOME ?? '/root',
    S3SFTP_LISTEN: `127.0.0.1:${port}`,
    S3SFTP_DATADIR: dataDir,
    S3SFTP_S3_BUCKET: o.bucket,
    S3SFTP_S3_ENDPOINT: o.endpoint,
    S3SFTP_S3_REGION: o.s3.region,
    S3SFTP_S3_FORCEPATHSTYLE: 'true',
    S3SFTP_S3_CREDENTIALS_ACCESSKEYID: o.s3.accessKeyId,
    S3SFTP_S3_CREDENTIALS_SECRETACCESSKEY: o.s3.secretAccessKey,
    S3SFTP_USERS_DIRECTORY: join(o.dir, 'users'),
    S3SFTP_LOG_LEVEL: process.env.BENCH_SERVER_LOG ?? 'warn',
    S3SFTP_METRICS_LISTEN: '127.0.0.1:0',
    // Settings under trial (S3SFTP_S3_DOWNLOAD_READAHEADFILES=0 npm run bench) reach every s3sftp started.
    ...Object.fromEntries(Object.entries(process.env).filter(([k]) => k.startsWith('S3SFTP_'))),
    ...o.env,
  };
  const root = o.root ?? ROOT;
  // Node or V8 flags for the server alone (e.g. a GC setting under trial), not for the bench itself.
  const nodeArgs = (process.env.BENCH_SERVER_NODE_ARGS ?? '').split(/\s+/).filter(Boolean);
  const { child, stderr } = spawnServer(NODE, [...nodeArgs, join(root, 'src/cli/main.ts'), 'serve'], { env, cwd: root });
  await waitForPort(port, child, stderr, 's3sftp');
  return { name: o.name ?? 's3sftp', port, user: 'bench', remoteDir: '', pid: child.pid!, child, dataDir, stop: () => stopGroup(child) };
}

async function userYamlWithKey(user: { username: string; keyPrefix: string }, key: ClientKey): Promise<string> {
  // harness.userYaml takes keys made by its own makeClientKey; the bench writes its own key, so the
  // manifest is patched with the public key line here.
  const doc = JSON.parse(await userYaml(user)) as { spec: Record<string, unknown> };
  doc.spec.publicKeys = [key.publicLine];
  return JSON.stringify(doc);
}

export interface RcloneOptions {
  s3: SwiftS3;
  endpoint: string;
  bucket: string;
  dir: string;
  key: ClientKey;
  partSize: number;
  concurrency: number;
  name?: string;
}

/**
 * `rclone serve sftp` on bucket/rclone/. The remote is configured through RCLONE_CONFIG_* variables
 * (no config file); with --vfs-cache-mode off rclone streams sequential writes straight to a
 * multipart upload and reads with ranged GETs, which is what OpenSSH's sftp client needs.
 */
export async function startRclone(o: RcloneOptions): Promise<SftpSystem> {
  await mkdir(o.dir, { recursive: true });
  const port = await freePort();
  const authorized = join(o.dir, 'authorized_keys');
  await writeFile(authorized, `${o.key.publicLine}\n`);
  const hostKey = join(o.dir, 'host_key');
  await writeFile(hostKey, generateEd25519().private);
  await chmod(hostKey, 0o600);
  const env = {
    PATH: process.env.PATH ?? '',
    HOME: o.dir,
    RCLONE_CONFIG_BENCH_TYPE: 's3',
    RCLONE_CONFIG_BENCH_PROVIDER: 'Other',
    RCLONE_CONFIG_BENCH_ENV_AUTH: 'false',
    RCLONE_CONFIG_BENCH_ACCESS_KEY_ID: o.s3.accessKeyId,
    RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY: o.s3.secretAccessKey,
    RCLONE_CONFIG_BENCH_ENDPOINT: o.endpoint,
    RCLONE_CONFIG_BENCH_REGION: o.s3.region,
    RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE: 'true',
    RCLONE_CONFIG_BENCH_NO_CHECK_BUCKET: 'true',
    RCLONE_CACHE_DIR: join(o.dir, 'cache'),
  };
  const mib = Math.max(5, Math.round(o.partSize / (1024 * 1024)));
  const args = [
    'serve', 'sftp', `bench:${o.bucket}/rclone`,
    '--addr', `127.0.0.1:${port}`,
    '--authorized-keys', authorized,
    '--key', hostKey,
    '--vfs-cache-mode', 'off',
    '--s3-chunk-size', `${mib}M`,
    '--s3-upload-concurrency', String(o.concurrency),
    '--log-level', 'ERROR',
  ];
  const { child, stderr } = spawnServer('rclone', args, { env });
  await waitForPort(port, child, stderr, 'rclone serve sftp');
  return { name: o.name ?? 'rclone serve sftp', port, user: 'bench', remoteDir: '', pid: child.pid!, child, stop: () => stopGroup(child) };
}

/**
 * OpenSSH sshd with a throw-away config on a spare port (its own host key, only our client key,
 * root login allowed for that key only), serving /usr/lib/openssh/sftp-server on a local directory.
 */
export async function startSshd(o: { dir: string; key: ClientKey }): Promise<SftpSystem> {
  await mkdir(join(o.dir, 'files'), { recursive: true });
  await mkdir('/run/sshd', { recursive: true, mode: 0o755 });
  const port = await freePort();
  const hostKey = join(o.dir, 'ssh_host_ed25519_key');
  await writeFile(hostKey, generateEd25519().private);
  await chmod(hostKey, 0o600);
  const authorized = join(o.dir, 'authorized_keys');
  await writeFile(authorized, `${o.key.publicLine}\n`);
  const user = (await import('node:os')).userInfo().username;
  const config = [
    `Port ${port}`,
    'ListenAddress 127.0.0.1',
    `HostKey ${hostKey}`,
    `AuthorizedKeysFile ${authorized}`,
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'PermitRootLogin prohibit-password',
    'UsePAM no',
    'StrictModes no',
    'PidFile none',
    'MaxStartups 1000',
    'MaxSessions 1000',
    'LogLevel ERROR',
    'Subsystem sftp /usr/lib/openssh/sftp-server',
    '',
  ].join('\n');
  const cfg = join(o.dir, 'sshd_config');
  await writeFile(cfg, config);
  const { child, stderr } = spawnServer('/usr/sbin/sshd', ['-D', '-e', '-f', cfg]);
  await waitForPort(port, child, stderr, 'sshd');
  return { name: 'OpenSSH sftp-server (local disk)', port, user, remoteDir: `${join(o.dir, 'files')}/`, pid: child.pid!, child, stop: () => stopGroup(child) };
}
