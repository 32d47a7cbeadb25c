/**
 * Integration-test harness: a real s3sftp server on 127.0.0.1:0 in this
 * process, backed by the real Swift S3 server, with users written as SftpUser
 * YAML files, plus helpers that drive real SFTP clients.
 */
import { mkdtemp, mkdir, rm, writeFile, chmod } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import { pino, type Logger } from 'pino';
import { S3Client, CreateBucketCommand } from '@aws-sdk/client-s3';
import { startSwift, type SwiftS3 } from '../../dev/swift.ts';
import { loadConfig } from '../../src/config/load.ts';
import { startServer, type RunningServer } from '../../src/server.ts';
import type { Clock } from '../../src/storage/s3/upload-pipeline.ts';
import { hashPassword } from '../../src/auth/password.ts';
import { generateEd25519 } from '../../src/ssh/keygen.ts';

/**
 * The S3 server for a test file: the run's shared one (test/support/global-setup.ts)
 * when there is one, else a private Swift started now. Call stop() in `after`.
 */
export async function s3Server(): Promise<SwiftS3> {
  const shared = process.env.S3SFTP_TEST_S3;
  if (shared) return { ...(JSON.parse(shared) as Omit<SwiftS3, 'stop'>), stop: async () => {} };
  return startSwift();
}

export function s3ClientFor(s3: SwiftS3): S3Client {
  return new S3Client({
    endpoint: s3.endpoint,
    region: s3.region,
    forcePathStyle: true,
    credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
}

export async function createBucket(s3: SwiftS3, bucket = `b-${randomBytes(4).toString('hex')}`): Promise<string> {
  const client = s3ClientFor(s3);
  await client.send(new CreateBucketCommand({ Bucket: bucket }));
  client.destroy();
  return bucket;
}

export interface TestUser {
  username: string;
  password?: string;
  /** Path of an OpenSSH private key file for this user. */
  keyFile?: string;
  keyPrefix: string;
  permissions?: string[];
  disabled?: boolean;
  /** spec.allowedCIDRs */
  allowedCIDRs?: string[];
  /** More spec fields (spec.quota, spec.bandwidth, ...), merged in as they are. */
  extraSpec?: Record<string, unknown>;
  /** How the password is hashed; bcrypt unless set. */
  passwordAlgorithm?: 'bcrypt' | 'argon2id';
  /** spec.folders (virtual folders), as written in the resource. */
  folders?: Record<string, unknown>[];
}

export interface TestServer {
  port: number;
  dir: string;
  bucket: string;
  server: RunningServer;
  log: Logger;
  /** Writes (or rewrites) a user's SftpUser file; the directory source picks it up. */
  writeUser(user: TestUser): Promise<void>;
  stop(): Promise<void>;
}

export interface ServerOptions {
  s3: SwiftS3;
  bucket: string;
  env?: Record<string, string>;
  users?: TestUser[];
  /** The sessions' storage clock (their 5 s memories); default the system clock. */
  storageClock?: Clock;
}

/** The server settings that point it at a test S3 server's bucket (path-style, static keys). */
export function s3Env(s3: SwiftS3, bucket: string): Record<string, string> {
  return {
    S3SFTP_S3_BUCKET: bucket,
    S3SFTP_S3_ENDPOINT: s3.endpoint,
    S3SFTP_S3_REGION: s3.region,
    S3SFTP_S3_FORCEPATHSTYLE: 'true',
    S3SFTP_S3_CREDENTIALS_ACCESSKEYID: s3.accessKeyId,
    S3SFTP_S3_CREDENTIALS_SECRETACCESSKEY: s3.secretAccessKey,
  };
}

export async function startTestServer(opts: ServerOptions): Promise<TestServer> {
  const dir = await mkdtemp(join(tmpdir(), 's3sftp-test-'));
  const usersDir = join(dir, 'users');
  await mkdir(usersDir);
  const env = {
    S3SFTP_LISTEN: '127.0.0.1:0',
    S3SFTP_DATADIR: join(dir, 'data'),
    ...s3Env(opts.s3, opts.bucket),
    S3SFTP_S3_UPLOAD_PARTSIZE: '5MiB',
    S3SFTP_USERS_DIRECTORY: usersDir,
    S3SFTP_LOG_LEVEL: process.env.S3SFTP_TEST_LOG ?? 'silent',
    S3SFTP_METRICS_LISTEN: '127.0.0.1:0',
    // Every test client comes from loopback: one file's deliberate wrong passwords must not get
    // the next test banned. The defender's own tests override this.
    S3SFTP_DEFENDER_TRUSTEDCIDRS: '127.0.0.0/8,::1',
    ...opts.env,
  };
  const config = loadConfig({ env });
  const log = pino({ level: config.log.level }, pino.destination(2));
  const writeUser = async (user: TestUser) => {
    await writeFile(join(usersDir, `${user.username}.yaml`), await userYaml(user));
  };
  for (const u of opts.users ?? []) await writeUser(u);
  const server = await startServer(config, log, opts.storageClock ? { storageClock: opts.storageClock } : {});
  return {
    port: server.ssh.port,
    dir,
    bucket: opts.bucket,
    server,
    log,
    writeUser,
    async stop() {
      await server.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** An SftpUser manifest for `user` (JSON, which is YAML), as the directory source reads it. */
export async function userYaml(user: TestUser): Promise<string> {
  const spec: Record<string, unknown> = {
    username: user.username,
    disabled: user.disabled ?? false,
    s3: { keyPrefix: user.keyPrefix },
    permissions: user.permissions ?? ['*'],
  };
  if (user.password) spec.passwordHash = await hashPassword(user.password, user.passwordAlgorithm ?? 'bcrypt');
  if (user.keyFile) spec.publicKeys = [publicKeys.get(user.keyFile)];
  if (user.allowedCIDRs) spec.allowedCIDRs = user.allowedCIDRs;
  if (user.folders) spec.folders = user.folders;
  Object.assign(spec, user.extraSpec);
  return JSON.stringify({ apiVersion: 's3sftp.io/v1alpha1', kind: 'SftpUser', metadata: { name: user.username }, spec });
}

const publicKeys = new Map<string, string>();

/** Writes a fresh ed25519 client key pair into `dir`; returns the private key path. */
export async function makeClientKey(dir: string, name = 'id_ed25519'): Promise<string> {
  const pair = generateEd25519();
  const path = join(dir, name);
  await writeFile(path, pair.private);
  await chmod(path, 0o600);
  publicKeys.set(path, pair.public);
  return path;
}

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a program with a hard time limit so a hung client cannot hang the suite. */
export function run(cmd: string, args: string[], opts: { input?: string; timeoutMs?: number; env?: NodeJS.ProcessEnv; cwd?: string } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env: { ...process.env, ...opts.env }, cwd: opts.cwd, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      stderr += `\n[killed after ${opts.timeoutMs ?? 120000} ms]`;
    }, opts.timeoutMs ?? 120000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    // A command that exits without reading its input (fusermount3, mountpoint) makes the write fail
    // with EPIPE; that is not an error of the command.
    child.stdin.on('error', () => {});
    child.stdin.end(opts.input ?? '');
  });
}

const SSH_OPTS = ['-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'LogLevel=ERROR'];

/** OpenSSH sftp in batch mode with key authentication. */
export function sftpBatch(port: number, user: string, keyFile: string, commands: string, opts: { timeoutMs?: number; cwd?: string } = {}): Promise<RunResult> {
  return run('sftp', [...SSH_OPTS, '-o', 'BatchMode=yes', '-o', 'IdentitiesOnly=yes', '-i', keyFile, '-P', String(port), '-b', '-', `${user}@127.0.0.1`], { input: commands, ...opts });
}

/** OpenSSH sftp with a password, through sshpass. */
export function sftpPassword(port: number, user: string, password: string, commands: string, opts: { timeoutMs?: number; cwd?: string } = {}): Promise<RunResult> {
  return run('sshpass', ['-e', 'sftp', ...SSH_OPTS, '-o', 'BatchMode=no', '-o', 'PubkeyAuthentication=no', '-o', 'PreferredAuthentications=password,keyboard-interactive', '-o', 'NumberOfPasswordPrompts=1', '-P', String(port), '-b', '-', `${user}@127.0.0.1`], {
    input: commands,
    env: { SSHPASS: password },
    ...opts,
  });
}

/** OpenSSH scp (SFTP protocol, the default since OpenSSH 9.0). */
export function scp(port: number, keyFile: string, args: string[], opts: { timeoutMs?: number } = {}): Promise<RunResult> {
  return run('scp', [...SSH_OPTS, '-o', 'BatchMode=yes', '-o', 'IdentitiesOnly=yes', '-i', keyFile, '-P', String(port), ...args], opts);
}

/** Debian's python3 with paramiko (the pyenv python on the PATH lacks it). */
export const PYTHON = '/usr/bin/python3';
