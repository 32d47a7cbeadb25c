/**
 * Bytes in and out of the exec channel, in the units the rcp protocol uses:
 * control records (one line), single-byte responses with an optional message,
 * and file data.
 *
 * Reading is pull-based: bytes are taken from the channel only when the
 * protocol code asks for them, so while a storage write is pending nothing
 * more is read, ssh2 stops widening the SSH window and the client stops
 * sending. Every wait also ends when the channel closes, because ssh2 never
 * completes a write or a drain on a closed channel.
 */
import type { ServerChannel } from 'ssh2';
import { ChannelClosedError, ScpProtocolError } from './errors.ts';

/** Longest control record accepted (OpenSSH's own limit is 2 KiB; S3 names reach 1 KiB of UTF-8). */
const MAX_RECORD_BYTES = 8 * 1024;
const EMPTY = Buffer.alloc(0);

/** What the peer answered to a record or to the end of a file. */
export type Response = { ok: true } | { ok: false; fatal: boolean; message: string };

/** How an ScpChannel reads. */
export interface ScpChannelOptions {
  /**
   * Bytes read from the channel before anyone asks. 0 (sink) keeps reads
   * strictly on demand; the source side reads ahead a little so it notices a
   * client that has gone away while it waits for the window to open.
   */
  readAhead?: number;
}

/** The rcp protocol's reads and writes over one exec channel. */
export class ScpChannel {
  readonly #stream: ServerChannel;
  readonly #readAhead: number;
  #chunks: Buffer[] = [];
  #buffered = 0;
  #eof = false;
  #closed = false;
  #wake: (() => void) | undefined;
  readonly #closedSignal: Promise<void>;
  #signalClosed!: () => void;

  constructor(stream: ServerChannel, options: ScpChannelOptions = {}) {
    this.#stream = stream;
    this.#readAhead = options.readAhead ?? 0;
    this.#closedSignal = new Promise((resolve) => (this.#signalClosed = resolve));
    stream.on('readable', () => {
      if (this.#readAhead > 0) this.#pull(this.#readAhead);
      this.#notify();
    });
    stream.on('end', () => {
      this.#eof = true;
      this.#notify();
    });
    stream.on('close', () => this.markClosed());
    // A write after the peer closed emits 'error'; the closed state already covers it.
    stream.on('error', () => this.markClosed());
    stream.stderr.on('error', () => undefined);
  }

  /** True once the channel is closed or the session was ended. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Ends every pending and future wait with ChannelClosedError. */
  markClosed(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#signalClosed();
    this.#notify();
  }

  // ---- reading -------------------------------------------------------------

  /**
   * One control record without its "\n"; undefined at a clean end of input
   * (before the first byte of a record).
   */
  async readRecord(): Promise<Buffer | undefined> {
    const parts: Buffer[] = [];
    let length = 0;
    for (;;) {
      if (!(await this.#more())) {
        if (length === 0) return undefined;
        throw new ChannelClosedError();
      }
      const head = this.#chunks[0] as Buffer;
      const nl = head.indexOf(0x0a);
      const take = nl < 0 ? head.length : nl + 1;
      if (length + take > MAX_RECORD_BYTES + 1) throw new ScpProtocolError('control record too long');
      const piece = this.#consume(take);
      if (nl >= 0) {
        parts.push(piece.subarray(0, piece.length - 1));
        return Buffer.concat(parts);
      }
      parts.push(piece);
      length += piece.length;
    }
  }

  /** Up to `max` bytes (at least one) of file data; ChannelClosedError at end of input. */
  async readData(max: number): Promise<Buffer> {
    if (!(await this.#more())) throw new ChannelClosedError();
    const head = this.#chunks[0] as Buffer;
    return this.#consume(Math.min(max, head.length));
  }

  /**
   * The peer's answer: "\0" is success, "\1msg\n" an error, "\2msg\n" a fatal
   * error; like OpenSSH, any other byte starts an error message.
   */
  async readResponse(): Promise<Response> {
    if (!(await this.#more())) throw new ChannelClosedError();
    const first = this.#consume(1)[0] as number;
    if (first === 0) return { ok: true };
    const rest = await this.readRecord();
    if (rest === undefined) throw new ChannelClosedError();
    const text = (first === 1 || first === 2 ? rest : Buffer.concat([Buffer.from([first]), rest])).toString('utf8');
    return { ok: false, fatal: first === 2, message: text };
  }

  /** Makes sure at least one byte is buffered; false at end of input or once closed. */
  async #more(): Promise<boolean> {
    for (;;) {
      if (this.#buffered > 0) return true;
      if (this.#closed) return false;
      this.#pull(1);
      if (this.#buffered > 0) return true;
      if (this.#eof) return false;
      await new Promise<void>((resolve) => (this.#wake = resolve));
      this.#wake = undefined;
    }
  }

  /** Moves data from the channel into our buffer until `want` bytes are held or none is left. */
  #pull(want: number): void {
    while (this.#buffered < want) {
      const chunk = this.#stream.read() as Buffer | null;
      if (chunk === null) return;
      this.#chunks.push(chunk);
      this.#buffered += chunk.length;
    }
  }

  #consume(n: number): Buffer {
    const head = this.#chunks[0] as Buffer;
    let out: Buffer;
    if (n >= head.length) {
      this.#chunks.shift();
      out = head;
    } else {
      out = head.subarray(0, n);
      this.#chunks[0] = head.subarray(n);
    }
    this.#buffered -= out.length;
    return out;
  }

  #notify(): void {
    this.#wake?.();
  }

  // ---- writing -------------------------------------------------------------

  /** Sends bytes; resolves once the channel can take more (drain), rejects if it closes. */
  async write(data: Buffer): Promise<void> {
    if (this.#closed) throw new ChannelClosedError();
    if (this.#stream.write(data)) return;
    await this.#until((done) => {
      this.#stream.once('drain', done);
      return () => this.#stream.off('drain', done);
    });
  }

  /** "\0": success. */
  ok(): Promise<void> {
    return this.write(Buffer.from([0]));
  }

  /** "\1msg\n": a failure the peer reports and goes on from. */
  warning(message: string): Promise<void> {
    return this.write(Buffer.from(`\x01${message}\n`));
  }

  /** "\2msg\n": a failure that ends the session. */
  fatal(message: string): Promise<void> {
    return this.write(Buffer.from(`\x02${message}\n`));
  }

  /** A line on the channel's stderr, which ssh prints on the client's terminal. */
  stderr(message: string): void {
    if (!this.#closed) this.#stream.stderr.write(`${message}\n`);
  }

  /**
   * Waits until everything written has been handed to SSH, then sends the
   * exit status and closes the channel. OpenSSH's scp treats a missing exit
   * status as failure, and an exit status sent ahead of queued data would
   * overtake it.
   */
  async finish(status: number): Promise<void> {
    if (this.#closed) return;
    try {
      await this.#until((done) => {
        this.#stream.write(EMPTY, () => done());
        return () => undefined;
      });
    } catch {
      return; // closed meanwhile
    }
    this.#stream.exit(status);
    this.#stream.end();
  }

  /** Resolves when `start`'s callback fires; rejects with ChannelClosedError if the channel closes first. */
  async #until(start: (done: () => void) => () => void): Promise<void> {
    let stop: (() => void) | undefined;
    const happened = new Promise<'done'>((resolve) => (stop = start(() => resolve('done'))));
    try {
      const outcome = await Promise.race([happened, this.#closedSignal.then(() => 'closed' as const)]);
      if (outcome === 'closed') throw new ChannelClosedError();
    } finally {
      stop?.();
    }
  }
}
