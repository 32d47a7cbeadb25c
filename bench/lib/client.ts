/** The clients the benchmark drives: OpenSSH `sftp` with a batch file, and ssh2's SFTP client for per-request work. */
import { spawn } from 'node:child_process';
import { writeFile, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import ssh2 from 'ssh2';
import type { SFTPWrapper } from 'ssh2';
import type { SftpSystem, ClientKey } from './systems.ts';

const SSH_OPTS = ['-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'LogLevel=ERROR', '-o', 'BatchMode=yes', '-o', 'IdentitiesOnly=yes'];

export interface SftpRun {
  code: number | null;
  stderr: string;
  ms: number;
}

let batchSeq = 0;

/**
 * OpenSSH sftp with `-b batchfile` (so a failing command fails the run). `onStart` gets the client's
 * pid (the chart reads its I/O counters). Extra `sftpArgs` go before the destination, e.g. cipher.
 */
export async function runSftp(
  sys: SftpSystem,
  key: ClientKey,
  commands: string,
  opts: { cwd: string; workDir: string; timeoutMs?: number; onStart?: (pid: number) => void; sftpArgs?: string[] },
): Promise<SftpRun> {
  const batch = join(opts.workDir, `batch-${process.pid}-${++batchSeq}.txt`);
  await writeFile(batch, commands);
  const start = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn('sftp', [...SSH_OPTS, ...(opts.sftpArgs ?? []), '-i', key.path, '-P', String(sys.port), '-b', batch, `${sys.user}@127.0.0.1`], {
      cwd: opts.cwd,
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
    if (child.pid !== undefined) opts.onStart?.(child.pid);
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 30 * 60_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stderr: stderr.trim(), ms: performance.now() - start });
    });
  });
}

/** Throws with the client's stderr when a run failed. */
export function check(run: SftpRun, what: string): SftpRun {
  if (run.code !== 0) throw new Error(`${what} failed (exit ${run.code}): ${run.stderr}`);
  return run;
}

/** Bytes read and written by a process so far (rchar/wchar: files and sockets), 0 once it exited. */
export async function ioChars(pid: number): Promise<{ read: number; written: number }> {
  try {
    const text = await readFile(`/proc/${pid}/io`, 'utf8');
    return { read: Number(/rchar: (\d+)/.exec(text)?.[1] ?? 0), written: Number(/wchar: (\d+)/.exec(text)?.[1] ?? 0) };
  } catch {
    return { read: 0, written: 0 };
  }
}

/** Bytes a process caused to be written to storage (/proc/PID/io write_bytes): spooling shows here. */
export async function storageWrites(pid: number): Promise<number> {
  try {
    return Number(/^write_bytes: (\d+)/m.exec(await readFile(`/proc/${pid}/io`, 'utf8'))?.[1] ?? 0);
  } catch {
    return NaN;
  }
}

export interface Ssh2Session {
  client: InstanceType<typeof ssh2.Client>;
  sftp: SFTPWrapper;
  /** From TCP connect to the SFTP channel being ready. */
  loginMs: number;
}

/** An ssh2 client session with an SFTP channel open. */
export function openSsh2Sftp(sys: SftpSystem, privateKey: string, timeoutMs = 60_000): Promise<Ssh2Session> {
  const start = performance.now();
  return new Promise((resolve, reject) => {
    const client = new ssh2.Client();
    const timer = setTimeout(() => {
      client.end();
      reject(new Error('login timed out'));
    }, timeoutMs);
    client.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    client.on('ready', () => {
      client.sftp((err, sftp) => {
        clearTimeout(timer);
        if (err) return reject(err);
        resolve({ client, sftp, loginMs: performance.now() - start });
      });
    });
    client.connect({ host: '127.0.0.1', port: sys.port, username: sys.user, privateKey, readyTimeout: timeoutMs });
  });
}

/** Promise wrappers for the few ssh2 SFTP calls the benchmark makes. */
export const p = {
  open: (s: SFTPWrapper, path: string, flags: 'r' | 'w') => new Promise<Buffer>((res, rej) => s.open(path, flags, (e, h) => (e ? rej(e) : res(h)))),
  write: (s: SFTPWrapper, h: Buffer, data: Buffer) => new Promise<void>((res, rej) => s.write(h, data, 0, data.length, 0, (e) => (e ? rej(e) : res()))),
  read: (s: SFTPWrapper, h: Buffer, len: number) =>
    new Promise<number>((res, rej) => s.read(h, Buffer.alloc(len), 0, len, 0, (e, n) => (e ? rej(e) : res(n)))),
  fstat: (s: SFTPWrapper, h: Buffer) => new Promise<void>((res, rej) => s.fstat(h, (e) => (e ? rej(e) : res()))),
  close: (s: SFTPWrapper, h: Buffer) => new Promise<void>((res, rej) => s.close(h, (e) => (e ? rej(e) : res()))),
  stat: (s: SFTPWrapper, path: string) => new Promise<void>((res, rej) => s.stat(path, (e) => (e ? rej(e) : res()))),
  rename: (s: SFTPWrapper, from: string, to: string) => new Promise<void>((res, rej) => s.rename(from, to, (e) => (e ? rej(e) : res()))),
  mkdir: (s: SFTPWrapper, path: string) => new Promise<void>((res, rej) => s.mkdir(path, (e) => (e ? rej(e) : res()))),
  rmdir: (s: SFTPWrapper, path: string) => new Promise<void>((res, rej) => s.rmdir(path, (e) => (e ? rej(e) : res()))),
  unlink: (s: SFTPWrapper, path: string) => new Promise<void>((res, rej) => s.unlink(path, (e) => (e ? rej(e) : res()))),
  opendir: (s: SFTPWrapper, path: string) => new Promise<Buffer>((res, rej) => s.opendir(path, (e, h) => (e ? rej(e) : res(h)))),
  /** One READDIR: the number of names ("." and ".." left out), or false at EOF. */
  readdir: (s: SFTPWrapper, h: Buffer) =>
    new Promise<number | false>((res, rej) =>
      s.readdir(h, (e, list) => {
        if (e && (e as { code?: number }).code === 1) return res(false);
        if (e) return rej(e);
        res(Array.isArray(list) ? list.filter((n) => n.filename !== '.' && n.filename !== '..').length : false);
      }),
    ),
};
