/**
 * Promise wrappers over ssh2's SFTP client, for the in-process protocol tests.
 * Each call sends one request and resolves with its reply; a status other
 * than OK rejects with ssh2's error, whose `code` is the SSH_FX_* status.
 */
import { readFile } from 'node:fs/promises';
import ssh2, { type FileEntryWithStats, type InputAttributes, type SFTPWrapper, type Stats } from 'ssh2';

/** SSH_FXF_* open flags (draft-ietf-secsh-filexfer-02). */
export const FLAGS = { READ: 1, WRITE: 2, APPEND: 4, CREAT: 8, TRUNC: 16, EXCL: 32 } as const;

/** A failed request: the status code and the server's message. */
export interface StatusError {
  code: number;
  message: string;
}

function call<T>(start: (cb: (err: Error | null | undefined, value?: T) => void) => void): Promise<T> {
  return new Promise((resolve, reject) => start((err, value) => (err ? reject(err) : resolve(value as T))));
}

/** The status a request failed with; fails the test if it succeeded. */
export async function statusOf(request: Promise<unknown>): Promise<StatusError> {
  try {
    await request;
  } catch (err) {
    const e = err as { code?: unknown; message: string };
    if (typeof e.code !== 'number') throw err;
    return { code: e.code, message: e.message };
  }
  throw new Error('expected the request to fail');
}

export class SftpClient {
  readonly sftp: SFTPWrapper;

  constructor(sftp: SFTPWrapper) {
    this.sftp = sftp;
  }

  open(path: string, flags: number | string, attrs: InputAttributes = {}): Promise<Buffer> {
    return call((cb) => this.sftp.open(path, flags as number, attrs, cb));
  }

  close(handle: Buffer): Promise<void> {
    return call((cb) => this.sftp.close(handle, cb));
  }

  write(handle: Buffer, position: number, data: Buffer): Promise<void> {
    return call((cb) => this.sftp.write(handle, data, 0, data.length, position, cb));
  }

  /** One READ; an empty buffer at end of file. */
  async read(handle: Buffer, position: number, length: number): Promise<Buffer> {
    const buffer = Buffer.alloc(length);
    const bytes = await new Promise<number>((resolve, reject) =>
      this.sftp.read(handle, buffer, 0, length, position, (err, n) => (err ? reject(err) : resolve(n))),
    );
    return buffer.subarray(0, bytes);
  }

  stat(path: string): Promise<Stats> {
    return call((cb) => this.sftp.stat(path, cb));
  }

  lstat(path: string): Promise<Stats> {
    return call((cb) => this.sftp.lstat(path, cb));
  }

  fstat(handle: Buffer): Promise<Stats> {
    return call((cb) => this.sftp.fstat(handle, cb));
  }

  setstat(path: string, attrs: InputAttributes): Promise<void> {
    return call((cb) => this.sftp.setstat(path, attrs, cb));
  }

  fsetstat(handle: Buffer, attrs: InputAttributes): Promise<void> {
    return call((cb) => this.sftp.fsetstat(handle, attrs, cb));
  }

  opendir(path: string): Promise<Buffer> {
    return call((cb) => this.sftp.opendir(path, cb));
  }

  /** One READDIR: one NAME reply's entries (EOF rejects with code 1). */
  readdir(handle: Buffer): Promise<FileEntryWithStats[]> {
    // `full` keeps "." and ".." if a server sent them; ssh2's types omit the options argument.
    const readdir = this.sftp.readdir.bind(this.sftp) as unknown as (h: Buffer, o: object, cb: unknown) => void;
    return call((cb) => readdir(handle, { full: true }, cb));
  }

  /** Every entry of a directory, "." and ".." left out by ssh2. */
  list(path: string): Promise<FileEntryWithStats[]> {
    return call((cb) => this.sftp.readdir(path, cb as never));
  }

  mkdir(path: string): Promise<void> {
    return call((cb) => this.sftp.mkdir(path, cb));
  }

  rmdir(path: string): Promise<void> {
    return call((cb) => this.sftp.rmdir(path, cb));
  }

  remove(path: string): Promise<void> {
    return call((cb) => this.sftp.unlink(path, cb));
  }

  rename(from: string, to: string): Promise<void> {
    return call((cb) => this.sftp.rename(from, to, cb));
  }

  posixRename(from: string, to: string): Promise<void> {
    return call((cb) => this.sftp.ext_openssh_rename(from, to, cb));
  }

  realpath(path: string): Promise<string> {
    return call((cb) => this.sftp.realpath(path, cb));
  }

  symlink(target: string, path: string): Promise<void> {
    return call((cb) => this.sftp.symlink(target, path, cb));
  }

  readlink(path: string): Promise<string> {
    return call((cb) => this.sftp.readlink(path, cb));
  }

  /**
   * Uploads a whole file in WRITEs sent without waiting, as OpenSSH pipelines them.
   * 16 KiB: ssh2's client splits larger WRITEs and sends the rest only after the first reply.
   */
  async put(path: string, data: Buffer, flags = FLAGS.WRITE | FLAGS.CREAT | FLAGS.TRUNC): Promise<void> {
    const handle = await this.open(path, flags);
    const writes: Promise<void>[] = [];
    for (let offset = 0; offset < data.length; offset += 16 * 1024) {
      writes.push(this.write(handle, offset, data.subarray(offset, offset + 16 * 1024)));
    }
    await Promise.all(writes);
    await this.close(handle);
  }

  /** Downloads a whole file with sequential READs. */
  /** OPENDIR and READDIR to the end: the entries by name. */
  async entries(path: string): Promise<Map<string, FileEntryWithStats>> {
    const handle = await this.opendir(path);
    const entries = new Map<string, FileEntryWithStats>();
    for (;;) {
      const page = await this.readdir(handle).catch((err: { code?: unknown }) => {
        if (err.code === 1) return undefined; // SSH_FX_EOF
        throw err;
      });
      if (!page) break;
      for (const e of page) entries.set(e.filename, e);
    }
    await this.close(handle);
    return entries;
  }

  async get(path: string): Promise<Buffer> {
    const handle = await this.open(path, FLAGS.READ);
    const pieces: Buffer[] = [];
    for (let offset = 0; ; ) {
      const piece = await this.read(handle, offset, 64 * 1024);
      if (piece.length === 0) break;
      pieces.push(piece);
      offset += piece.length;
    }
    await this.close(handle);
    return Buffer.concat(pieces);
  }
}

/** An SSH connection to 127.0.0.1:`port` with a key, and an SFTP session on it (end `client` when done). */
export async function openSftp(port: number, username: string, keyFile: string, readyTimeout = 10_000): Promise<{ client: ssh2.Client; sftp: SftpClient }> {
  const client = new ssh2.Client();
  const privateKey = await readFile(keyFile);
  await new Promise<void>((resolve, reject) => {
    client.once('ready', () => resolve()).once('error', reject);
    client.connect({ host: '127.0.0.1', port, username, privateKey, readyTimeout });
  });
  const sftp = await new Promise<SFTPWrapper>((resolve, reject) => client.sftp((err, s) => (err ? reject(err) : resolve(s))));
  return { client, sftp: new SftpClient(sftp) };
}
