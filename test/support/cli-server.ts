/**
 * The real CLI, `node src/cli/main.ts serve`, as a child process: for tests that need what only a
 * process shows (its memory in /proc, signals, its exit code, its log on stdout).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import type { SwiftS3 } from '../../dev/swift.ts';

/** The CLI's entry point. */
export const CLI_MAIN = join(import.meta.dirname, '../../src/cli/main.ts');

export interface CliServer {
  child: ChildProcess;
  pid: number;
  sshPort: number;
  metricsPort: number;
  /** Every JSON log line on stdout so far. */
  logs: Record<string, unknown>[];
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export interface CliServerOptions {
  /** The test S3 server: its credentials, and its endpoint unless `endpoint` is given. */
  s3: SwiftS3;
  /** The S3 endpoint the server uses, e.g. a proxy's in front of `s3`. */
  endpoint?: string;
  bucket: string;
  /** A scratch folder with the SftpUser files in users/; the server's data goes to data/. */
  dir: string;
  /** More S3SFTP_* variables, over the ones set here. */
  env?: Record<string, string>;
}

/**
 * Starts `s3sftp serve` on 127.0.0.1:0 (SSH and metrics), with the environment of this process, and
 * resolves at its "s3sftp listening" log line. A server that exits first, or does not listen within
 * 30 s, is killed and the promise rejects with its stderr. The caller kills it (SIGKILL in
 * `afterEach`) or signals it and awaits `exited`.
 */
export async function startCliServer(opts: CliServerOptions): Promise<CliServer> {
  const child = spawn(process.execPath, [CLI_MAIN, 'serve'], {
    env: {
      ...process.env,
      S3SFTP_LISTEN: '127.0.0.1:0',
      S3SFTP_METRICS_LISTEN: '127.0.0.1:0',
      S3SFTP_DATADIR: join(opts.dir, 'data'),
      S3SFTP_S3_BUCKET: opts.bucket,
      S3SFTP_S3_ENDPOINT: opts.endpoint ?? opts.s3.endpoint,
      S3SFTP_S3_FORCEPATHSTYLE: 'true',
      S3SFTP_S3_CREDENTIALS_ACCESSKEYID: opts.s3.accessKeyId,
      S3SFTP_S3_CREDENTIALS_SECRETACCESSKEY: opts.s3.secretAccessKey,
      S3SFTP_S3_UPLOAD_PARTSIZE: '5MiB',
      S3SFTP_USERS_DIRECTORY: join(opts.dir, 'users'),
      S3SFTP_LOG_LEVEL: 'info',
      ...opts.env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: Record<string, unknown>[] = [];
  let stderr = '';
  let pending = '';
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal })),
  );
  const listening = new Promise<Record<string, unknown>>((resolve, reject) => {
    child.stdout?.on('data', (chunk: Buffer) => {
      pending += chunk.toString();
      const lines = pending.split('\n');
      pending = lines.pop() ?? '';
      for (const line of lines) {
        if (!line.trim()) continue;
        const entry = JSON.parse(line) as Record<string, unknown>;
        logs.push(entry);
        if (entry.msg === 's3sftp listening') resolve(entry);
      }
    });
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    void exited.then(({ code }) => reject(new Error(`s3sftp exited with ${code} before listening: ${stderr}`)));
    setTimeout(() => reject(new Error(`s3sftp did not start within 30 s: ${stderr}`)), 30_000).unref();
  });
  try {
    const line = await listening;
    const port = (address: unknown) => Number(String(address).split(':').at(-1));
    return { child, pid: child.pid!, sshPort: port(line.address), metricsPort: port(line.metrics), logs, exited };
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  }
}
