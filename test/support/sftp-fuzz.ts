/**
 * A fuzzer for the SFTP packet stream. It speaks SFTP v3 by hand on a raw
 * `sftp` subsystem channel (not ssh2's client wrapper, which only sends what
 * is well formed) and sends a seeded mix of:
 *
 * - valid requests in random order (OPEN/READ/WRITE/CLOSE/STAT/SETSTAT/
 *   RENAME/REMOVE/MKDIR/RMDIR/OPENDIR/READDIR/REALPATH/EXTENDED...) on hostile
 *   paths: "../", absolute escapes, very long names, NUL bytes, empty names;
 * - handle misuse: unknown, closed, wrong-kind handles, reuse after CLOSE;
 * - malformed packets: lengths past the packet, zero and huge lengths,
 *   unknown types, huge string lengths and attribute counts, truncated bodies.
 *
 * After a malformed packet the channel's framing is lost on purpose, so the
 * fuzzer waits briefly for the server to close it and opens a new one. The
 * same seed gives the same packets, so a failure can be replayed.
 */
import type { ClientChannel } from 'ssh2';
import { prng } from './fault-proxy.ts';

export interface FuzzChannelSource {
  /** A fresh `sftp` subsystem channel (on a new or reused connection). */
  open(): Promise<ClientChannel>;
}

export interface FuzzOptions {
  seed: number;
  /** Packets to send in total. */
  packets: number;
  source: FuzzChannelSource;
  /** Requests sent before waiting for replies. */
  pipeline?: number;
  /** How long to wait for replies or a close before moving on. */
  replyTimeoutMs?: number;
}

export interface FuzzReport {
  seed: number;
  packets: number;
  malformed: number;
  channels: number;
  /** Channels the server closed (after malformed input, usually). */
  closedByServer: number;
  /** Replies by SFTP type (101 STATUS, 102 HANDLE, 103 DATA, 104 NAME, 105 ATTRS, 2 VERSION). */
  replies: Record<number, number>;
  /** STATUS replies by code. */
  statuses: Record<number, number>;
  /** Requests whose reply did not come within the timeout (the channel stayed open). */
  unanswered: number;
}

const T = {
  INIT: 1, OPEN: 3, CLOSE: 4, READ: 5, WRITE: 6, LSTAT: 7, FSTAT: 8, SETSTAT: 9, FSETSTAT: 10, OPENDIR: 11,
  READDIR: 12, REMOVE: 13, MKDIR: 14, RMDIR: 15, REALPATH: 16, STAT: 17, RENAME: 18, READLINK: 19, SYMLINK: 20,
  EXTENDED: 200,
} as const;

/** Little SFTP encoder. */
class Writer {
  parts: Buffer[] = [];
  u8(v: number): this {
    this.parts.push(Buffer.from([v & 0xff]));
    return this;
  }
  u32(v: number): this {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(v >>> 0);
    this.parts.push(b);
    return this;
  }
  u64(v: bigint): this {
    const b = Buffer.alloc(8);
    b.writeBigUInt64BE(BigInt.asUintN(64, v));
    this.parts.push(b);
    return this;
  }
  str(v: string | Buffer): this {
    const b = typeof v === 'string' ? Buffer.from(v) : v;
    this.u32(b.length);
    this.parts.push(b);
    return this;
  }
  raw(b: Buffer): this {
    this.parts.push(b);
    return this;
  }
  body(): Buffer {
    return Buffer.concat(this.parts);
  }
}

function frame(body: Buffer): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(body.length);
  return Buffer.concat([len, body]);
}

/** Splits the reply stream into SFTP packets. */
class ReplyReader {
  #buf = Buffer.alloc(0);
  #onPacket: (type: number, id: number, payload: Buffer) => void;
  constructor(onPacket: (type: number, id: number, payload: Buffer) => void) {
    this.#onPacket = onPacket;
  }
  push(chunk: Buffer): void {
    this.#buf = Buffer.concat([this.#buf, chunk]);
    while (this.#buf.length >= 5) {
      const len = this.#buf.readUInt32BE(0);
      if (this.#buf.length < 4 + len) return;
      const packet = this.#buf.subarray(4, 4 + len);
      this.#buf = this.#buf.subarray(4 + len);
      const type = packet[0]!;
      const id = packet.length >= 5 ? packet.readUInt32BE(1) : 0;
      this.#onPacket(type, id, packet.subarray(5));
    }
  }
}

type HandleKind = 'read' | 'write' | 'dir';

/** Runs the fuzzer; resolves with what happened. Throws only if a channel cannot be opened. */
export async function fuzzSftp(options: FuzzOptions): Promise<FuzzReport> {
  const random = prng(options.seed);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
  const int = (n: number) => Math.floor(random() * n);
  const pipeline = options.pipeline ?? 16;
  const replyTimeoutMs = options.replyTimeoutMs ?? 15_000;
  const report: FuzzReport = { seed: options.seed, packets: 0, malformed: 0, channels: 0, closedByServer: 0, replies: {}, statuses: {}, unanswered: 0 };

  const names = ['a', 'b', 'dir', 'f.txt', 'x y', 'ü', '..', '.', '', 'a/b', 'dir/f', 'dir/sub/g', 'nul\0byte', '%2e%2e', '\\..\\x', 'con', '*', '\n'];
  const path = (): string => {
    switch (int(8)) {
      case 0: return '/' + pick(names);
      case 1: return '../'.repeat(1 + int(6)) + pick(names);
      case 2: return '/../../../etc/' + pick(['passwd', 'shadow', '']);
      case 3: return 'x'.repeat(1 + int(3000));
      case 4: return '/' + Array.from({ length: 1 + int(40) }, () => pick(names)).join('/');
      case 5: return pick(['/', '//', '/./', '~', '~/x', '/other/', '../other/secret', '/../other/x']);
      case 6: return Buffer.from(Array.from({ length: 1 + int(30) }, () => int(256))).toString('latin1');
      default: return pick(names) + (random() < 0.5 ? '' : '/' + pick(names));
    }
  };
  const attrs = (w: Writer): Writer => {
    if (random() < 0.5) return w.u32(0);
    const flags = random() < 0.15 ? int(2 ** 32) : int(16) | (random() < 0.1 ? 0x80000000 : 0);
    w.u32(flags);
    if (flags & 1) w.u64(BigInt(random() < 0.5 ? int(1 << 20) : int(2 ** 31)) * BigInt(1 + int(2 ** 20)));
    if (flags & 2) w.u32(int(2 ** 32)).u32(int(2 ** 32));
    if (flags & 4) w.u32(int(2 ** 32));
    if (flags & 8) w.u32(int(2 ** 32)).u32(int(2 ** 32));
    if (flags & 0x80000000) {
      const count = random() < 0.3 ? int(2 ** 32) : int(4);
      w.u32(count);
      for (let i = 0; i < Math.min(count, 4); i++) w.str(path()).str(path());
    }
    return w;
  };

  let nextId = 1;
  for (let sent = 0; sent < options.packets; ) {
    const channel = await options.source.open();
    report.channels++;
    const handles: { handle: Buffer; kind: HandleKind; open: boolean }[] = [];
    const pending = new Map<number, { resolve(): void; kind?: HandleKind }>();
    let closed = false;
    const closedPromise = new Promise<void>((resolve) => channel.once('close', () => {
      closed = true;
      for (const p of pending.values()) p.resolve();
      pending.clear();
      resolve();
    }));
    const reader = new ReplyReader((type, id, payload) => {
      report.replies[type] = (report.replies[type] ?? 0) + 1;
      if (type === 101 && payload.length >= 4) {
        const code = payload.readUInt32BE(0);
        report.statuses[code] = (report.statuses[code] ?? 0) + 1;
      }
      const waiter = pending.get(id);
      if (type === 102 && waiter?.kind && payload.length >= 4) {
        const len = payload.readUInt32BE(0);
        handles.push({ handle: Buffer.from(payload.subarray(4, 4 + len)), kind: waiter.kind, open: true });
      }
      if (waiter) {
        pending.delete(id);
        waiter.resolve();
      }
    });
    channel.on('data', (chunk: Buffer) => reader.push(chunk));
    channel.stderr?.resume();
    channel.write(frame(new Writer().u8(T.INIT).u32(3).body()));

    const waitFor = (id: number, kind?: HandleKind): Promise<void> =>
      new Promise((resolve) => pending.set(id, { resolve, ...(kind ? { kind } : {}) }));
    const drain = async () => {
      const waiting = [...pending.values()].map((p) => new Promise<void>((r) => {
        const original = p.resolve;
        p.resolve = () => { original(); r(); };
      }));
      const timedOut = await Promise.race([
        Promise.all(waiting).then(() => false),
        closedPromise.then(() => false),
        new Promise<boolean>((r) => setTimeout(() => r(true), replyTimeoutMs).unref()),
      ]);
      if (timedOut) {
        report.unanswered += pending.size;
        pending.clear();
      }
    };
    const handle = (want?: HandleKind): Buffer => {
      const r = random();
      if (r < 0.1 || handles.length === 0) return random() < 0.5 ? Buffer.from([0, 0, 0, int(256)]) : Buffer.from(Array.from({ length: int(300) }, () => int(256)));
      const candidates = want && r < 0.8 ? handles.filter((h) => h.kind === want && h.open) : handles;
      return (candidates.length > 0 ? pick(candidates) : pick(handles)).handle;
    };

    // One request, well formed; returns the id to wait on and the handle kind it may create.
    const request = (): { body: Buffer; id: number; kind?: HandleKind } => {
      const id = random() < 0.05 ? int(2 ** 32) : nextId++;
      const w = new Writer();
      const op = int(20);
      switch (op) {
        case 0: case 1: {
          const write = random() < 0.5;
          const pflags = random() < 0.1 ? int(64) : write ? 0x02 | 0x08 | (random() < 0.7 ? 0x10 : 0) | (random() < 0.1 ? 0x20 : 0) : 0x01;
          attrs(w.u8(T.OPEN).u32(id).str(path()).u32(pflags));
          return { body: w.body(), id, kind: pflags & 0x02 ? 'write' : 'read' };
        }
        case 2: {
          const h = handle();
          const entry = handles.find((x) => x.handle.equals(h));
          if (entry) entry.open = false;
          return { body: w.u8(T.CLOSE).u32(id).str(h).body(), id };
        }
        case 3: return { body: w.u8(T.READ).u32(id).str(handle('read')).u64(BigInt(random() < 0.2 ? int(2 ** 53) : int(1 << 20))).u32(random() < 0.2 ? int(2 ** 32) : int(1 << 18)).body(), id };
        case 4: case 5: {
          const data = Buffer.alloc(random() < 0.1 ? 0 : int(32 * 1024), int(256));
          const offset = random() < 0.15 ? BigInt(int(2 ** 53)) * (random() < 0.2 ? 1024n : 1n) : BigInt(int(256 * 1024));
          return { body: w.u8(T.WRITE).u32(id).str(handle('write')).u64(offset).str(data).body(), id };
        }
        case 6: return { body: w.u8(pick([T.STAT, T.LSTAT])).u32(id).str(path()).body(), id };
        case 7: return { body: w.u8(T.FSTAT).u32(id).str(handle()).body(), id };
        case 8: return { body: attrs(w.u8(T.SETSTAT).u32(id).str(path())).body(), id };
        case 9: return { body: attrs(w.u8(T.FSETSTAT).u32(id).str(handle())).body(), id };
        case 10: return { body: w.u8(T.OPENDIR).u32(id).str(path()).body(), id, kind: 'dir' };
        case 11: return { body: w.u8(T.READDIR).u32(id).str(handle('dir')).body(), id };
        case 12: return { body: w.u8(T.REMOVE).u32(id).str(path()).body(), id };
        case 13: return { body: attrs(w.u8(T.MKDIR).u32(id).str(path())).body(), id };
        case 14: return { body: w.u8(T.RMDIR).u32(id).str(path()).body(), id };
        case 15: return { body: w.u8(T.REALPATH).u32(id).str(path()).body(), id };
        case 16: return { body: w.u8(T.RENAME).u32(id).str(path()).str(path()).body(), id };
        case 17: return { body: w.u8(pick([T.READLINK, T.SYMLINK])).u32(id).str(path()).str(path()).body(), id };
        case 18: {
          const name = pick(['posix-rename@openssh.com', 'statvfs@openssh.com', 'hardlink@openssh.com', 'fsync@openssh.com', 'copy-data', 'x'.repeat(int(2000))]);
          w.u8(T.EXTENDED).u32(id).str(name);
          if (random() < 0.7) w.str(path()).str(path());
          else w.raw(Buffer.from(Array.from({ length: int(64) }, () => int(256))));
          return { body: w.body(), id };
        }
        default: return { body: w.u8(T.STAT).u32(id).str('/' + pick(names)).body(), id };
      }
    };

    /** A packet that breaks the framing or the field layout. */
    const malformed = (): Buffer => {
      switch (int(8)) {
        case 0: { // declared length past what is sent
          const body = request().body;
          const len = Buffer.alloc(4);
          len.writeUInt32BE(body.length + 1 + int(1000));
          return Buffer.concat([len, body]);
        }
        case 1: return Buffer.from([0, 0, 0, 0]); // zero length
        case 2: return Buffer.concat([Buffer.from([0xff, 0xff, 0xff, 0xff]), Buffer.alloc(int(100), 0x41)]); // huge length
        case 3: return frame(new Writer().u8(pick([0, 2, 21, 99, 101, 102, 199, 201, 255])).u32(nextId++).raw(Buffer.alloc(int(40), 7)).body()); // unknown type
        case 4: { // a string whose length runs past the packet
          return frame(new Writer().u8(pick([T.OPEN, T.STAT, T.REMOVE, T.RENAME, T.MKDIR])).u32(nextId++).u32(0x7fffffff).raw(Buffer.from('abc')).body());
        }
        case 5: { // a valid request cut short inside the packet
          const body = request().body;
          return frame(body.subarray(0, 1 + int(Math.max(1, body.length - 1))));
        }
        case 6: { // attributes claiming 4 billion extended pairs
          return frame(new Writer().u8(T.SETSTAT).u32(nextId++).str('/a').u32(0x80000000).u32(0xffffffff).str('k').str('v').body());
        }
        default: { // random bytes in a correct frame
          return frame(Buffer.from(Array.from({ length: 1 + int(200) }, () => int(256))));
        }
      }
    };

    while (sent < options.packets && !closed) {
      sent++;
      report.packets++;
      if (random() < 0.04) {
        report.malformed++;
        channel.write(malformed());
        // Framing is gone: give the server a moment to close, then start over.
        await Promise.race([closedPromise, new Promise((r) => setTimeout(r, 300).unref())]);
        break;
      }
      const req = request();
      void waitFor(req.id, req.kind);
      channel.write(frame(req.body));
      if (pending.size >= pipeline || random() < 0.05) await drain();
    }
    await drain();
    if (closed) report.closedByServer++;
    else channel.close();
    channel.destroy();
  }
  return report;
}
