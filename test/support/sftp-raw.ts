/**
 * A small SFTP v3 packet client for tests that need what ordinary clients do
 * not expose: several requests sent back to back without waiting for replies
 * (as sshfs does), and the raw long names of READDIR. It speaks over any
 * duplex stream: an ssh2 `subsystem('sftp')` channel to s3sftp, or the
 * stdin/stdout of OpenSSH's own sftp-server run as a child process.
 */
import type { Duplex, Readable, Writable } from 'node:stream';
import ssh2 from 'ssh2';
import { readFileSync } from 'node:fs';

export const FX = { OK: 0, EOF: 1, NO_SUCH_FILE: 2, PERMISSION_DENIED: 3, FAILURE: 4, BAD_MESSAGE: 5, OP_UNSUPPORTED: 8 } as const;
export const FXF = { READ: 0x01, WRITE: 0x02, APPEND: 0x04, CREAT: 0x08, TRUNC: 0x10, EXCL: 0x20 } as const;

const T = {
  INIT: 1, VERSION: 2, OPEN: 3, CLOSE: 4, READ: 5, WRITE: 6, LSTAT: 7, FSTAT: 8, SETSTAT: 9, FSETSTAT: 10,
  OPENDIR: 11, READDIR: 12, REMOVE: 13, MKDIR: 14, RMDIR: 15, REALPATH: 16, STAT: 17, RENAME: 18,
  STATUS: 101, HANDLE: 102, DATA: 103, NAME: 104, ATTRS: 105, EXTENDED: 200,
} as const;

export interface RawAttrs {
  size?: number;
  uid?: number;
  gid?: number;
  mode?: number;
  atime?: number;
  mtime?: number;
}

/** One reply, whatever its type. */
export type Reply =
  | { type: 'status'; code: number; message: string }
  | { type: 'handle'; handle: Buffer }
  | { type: 'data'; data: Buffer }
  | { type: 'name'; names: { filename: string; longname: string; attrs: RawAttrs }[] }
  | { type: 'attrs'; attrs: RawAttrs };

class Writer {
  #parts: Buffer[] = [];
  u8(v: number): this {
    this.#parts.push(Buffer.from([v]));
    return this;
  }
  u32(v: number): this {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(v);
    this.#parts.push(b);
    return this;
  }
  u64(v: number): this {
    const b = Buffer.alloc(8);
    b.writeBigUInt64BE(BigInt(v));
    this.#parts.push(b);
    return this;
  }
  str(v: string | Buffer): this {
    const b = typeof v === 'string' ? Buffer.from(v) : v;
    this.u32(b.length);
    this.#parts.push(b);
    return this;
  }
  attrs(a: RawAttrs): this {
    let flags = 0;
    if (a.size !== undefined) flags |= 0x1;
    if (a.uid !== undefined || a.gid !== undefined) flags |= 0x2;
    if (a.mode !== undefined) flags |= 0x4;
    if (a.mtime !== undefined) flags |= 0x8;
    this.u32(flags);
    if (a.size !== undefined) this.u64(a.size);
    if (flags & 0x2) this.u32(a.uid ?? 0).u32(a.gid ?? 0);
    if (a.mode !== undefined) this.u32(a.mode);
    if (a.mtime !== undefined) this.u32(a.atime ?? a.mtime).u32(a.mtime);
    return this;
  }
  done(): Buffer {
    return Buffer.concat(this.#parts);
  }
}

class Reader {
  #p = 0;
  readonly buf: Buffer;
  constructor(buf: Buffer) {
    this.buf = buf;
  }
  u32(): number {
    const v = this.buf.readUInt32BE(this.#p);
    this.#p += 4;
    return v;
  }
  u64(): number {
    const v = Number(this.buf.readBigUInt64BE(this.#p));
    this.#p += 8;
    return v;
  }
  bytes(): Buffer {
    const n = this.u32();
    const b = this.buf.subarray(this.#p, this.#p + n);
    this.#p += n;
    return b;
  }
  str(): string {
    return this.bytes().toString('utf8');
  }
  attrs(): RawAttrs {
    const flags = this.u32();
    const a: RawAttrs = {};
    if (flags & 0x1) a.size = this.u64();
    if (flags & 0x2) [a.uid, a.gid] = [this.u32(), this.u32()];
    if (flags & 0x4) a.mode = this.u32();
    if (flags & 0x8) [a.atime, a.mtime] = [this.u32(), this.u32()];
    if (flags & 0x80000000) for (let n = this.u32(); n > 0; n--) [this.str(), this.str()];
    return a;
  }
}

/** An SFTP v3 client on a raw stream. Every request is written at once; replies resolve by id. */
export class RawSftp {
  #out: Writable;
  #buffer = Buffer.alloc(0);
  #nextId = 1;
  #pending = new Map<number, (r: Reply) => void>();
  #version: ((v: number) => void) | undefined;
  #error: Error | undefined;

  constructor(input: Readable, output: Writable) {
    this.#out = output;
    input.on('data', (chunk: Buffer) => this.#receive(chunk));
    input.on('error', (err: Error) => this.#fail(err));
    input.on('close', () => this.#fail(new Error('sftp stream closed')));
  }

  static over(stream: Duplex): RawSftp {
    return new RawSftp(stream, stream);
  }

  /** Sends INIT and waits for VERSION. */
  init(): Promise<number> {
    const version = new Promise<number>((resolve) => (this.#version = resolve));
    this.#packet(new Writer().u8(T.INIT).u32(3).done());
    return version;
  }

  open(path: string, flags: number, attrs: RawAttrs = {}): Promise<Reply> {
    return this.#request(T.OPEN, (w) => w.str(path).u32(flags).attrs(attrs));
  }
  close(handle: Buffer): Promise<Reply> {
    return this.#request(T.CLOSE, (w) => w.str(handle));
  }
  read(handle: Buffer, offset: number, len: number): Promise<Reply> {
    return this.#request(T.READ, (w) => w.str(handle).u64(offset).u32(len));
  }
  write(handle: Buffer, offset: number, data: Buffer): Promise<Reply> {
    return this.#request(T.WRITE, (w) => w.str(handle).u64(offset).str(data));
  }
  lstat(path: string): Promise<Reply> {
    return this.#request(T.LSTAT, (w) => w.str(path));
  }
  stat(path: string): Promise<Reply> {
    return this.#request(T.STAT, (w) => w.str(path));
  }
  fstat(handle: Buffer): Promise<Reply> {
    return this.#request(T.FSTAT, (w) => w.str(handle));
  }
  setstat(path: string, attrs: RawAttrs): Promise<Reply> {
    return this.#request(T.SETSTAT, (w) => w.str(path).attrs(attrs));
  }
  fsetstat(handle: Buffer, attrs: RawAttrs): Promise<Reply> {
    return this.#request(T.FSETSTAT, (w) => w.str(handle).attrs(attrs));
  }
  opendir(path: string): Promise<Reply> {
    return this.#request(T.OPENDIR, (w) => w.str(path));
  }
  readdir(handle: Buffer): Promise<Reply> {
    return this.#request(T.READDIR, (w) => w.str(handle));
  }
  remove(path: string): Promise<Reply> {
    return this.#request(T.REMOVE, (w) => w.str(path));
  }
  mkdir(path: string): Promise<Reply> {
    return this.#request(T.MKDIR, (w) => w.str(path).attrs({}));
  }
  rmdir(path: string): Promise<Reply> {
    return this.#request(T.RMDIR, (w) => w.str(path));
  }
  rename(from: string, to: string): Promise<Reply> {
    return this.#request(T.RENAME, (w) => w.str(from).str(to));
  }

  /** Every entry of a directory, READDIR until EOF. */
  async list(path: string): Promise<{ filename: string; longname: string; attrs: RawAttrs }[]> {
    const h = handleOf(await this.opendir(path));
    const out: { filename: string; longname: string; attrs: RawAttrs }[] = [];
    for (let i = 0; i < 10_000; i++) {
      const r = await this.readdir(h);
      if (r.type !== 'name') break;
      out.push(...r.names);
    }
    await this.close(h);
    return out;
  }

  #request(type: number, body: (w: Writer) => Writer): Promise<Reply> {
    if (this.#error) return Promise.reject(this.#error);
    const id = this.#nextId++;
    const reply = new Promise<Reply>((resolve) => this.#pending.set(id, resolve));
    this.#packet(body(new Writer().u8(type).u32(id)).done());
    return reply;
  }

  #packet(payload: Buffer): void {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(payload.length);
    this.#out.write(Buffer.concat([len, payload]));
  }

  #receive(chunk: Buffer): void {
    this.#buffer = Buffer.concat([this.#buffer, chunk]);
    while (this.#buffer.length >= 4) {
      const len = this.#buffer.readUInt32BE(0);
      if (this.#buffer.length < 4 + len) return;
      const packet = this.#buffer.subarray(4, 4 + len);
      this.#buffer = this.#buffer.subarray(4 + len);
      this.#dispatch(packet);
    }
  }

  #dispatch(packet: Buffer): void {
    const type = packet[0];
    const r = new Reader(packet.subarray(1));
    if (type === T.VERSION) return this.#version?.(r.u32());
    const id = r.u32();
    const resolve = this.#pending.get(id);
    if (!resolve) return;
    this.#pending.delete(id);
    if (type === T.STATUS) resolve({ type: 'status', code: r.u32(), message: r.str() });
    else if (type === T.HANDLE) resolve({ type: 'handle', handle: r.bytes() });
    else if (type === T.DATA) resolve({ type: 'data', data: r.bytes() });
    else if (type === T.ATTRS) resolve({ type: 'attrs', attrs: r.attrs() });
    else if (type === T.NAME) {
      const names = [];
      for (let n = r.u32(); n > 0; n--) names.push({ filename: r.str(), longname: r.str(), attrs: r.attrs() });
      resolve({ type: 'name', names });
    }
  }

  #fail(err: Error): void {
    this.#error ??= err;
    for (const resolve of this.#pending.values()) resolve({ type: 'status', code: -1, message: err.message });
    this.#pending.clear();
  }
}

/** The handle of a HANDLE reply; throws with the reply otherwise. */
export function handleOf(r: Reply): Buffer {
  if (r.type !== 'handle') throw new Error(`expected a handle, got ${JSON.stringify(r)}`);
  return r.handle;
}

/** Connects with ssh2 as `username` (private key file) and opens the raw sftp subsystem. */
export async function connectRaw(port: number, username: string, keyFile: string): Promise<{ sftp: RawSftp; end(): void }> {
  const client = new ssh2.Client();
  await new Promise<void>((resolve, reject) => {
    client.once('ready', resolve).once('error', reject);
    client.connect({ host: '127.0.0.1', port, username, privateKey: readFileSync(keyFile) });
  });
  const channel = await new Promise<Duplex>((resolve, reject) =>
    client.subsys('sftp', (err: Error | undefined, stream: unknown) => (err ? reject(err) : resolve(stream as Duplex))),
  );
  const sftp = RawSftp.over(channel);
  await sftp.init();
  return { sftp, end: () => client.end() };
}
