/**
 * Bounded memory per SFTP session.
 *
 * ssh2 parses every byte a client sends as soon as it arrives and tops the channel window back up
 * at once, so a client that pipelines WRITEs faster than S3 takes them (or never reads the
 * replies) makes the server hold every request in memory. Two bounds stop that:
 *
 * - **Queued WRITE bytes per session** (`sftp.maxQueuedWriteBytes`): data of WRITE requests
 *   received and not yet answered, counted as the incoming buffers it keeps alive. Above it the
 *   channel window is held closed (no WINDOW_ADJUST), so the client stops sending: SSH's own flow
 *   control, no request refused.
 * - **Replies the client does not read**: when a reply does not fit the client's window, ssh2
 *   keeps the packet in its own buffer (its reply methods return nothing in 1.17.0, so the buffer
 *   is looked at); READs are then held back (not served) and the window is
 *   held until the client reads and the buffer drains. ssh2's SFTP object emits no 'drain', so
 *   the moment its buffer empties is caught where ssh2 flushes it (`_chunkcb`, ssh2 1.17.0).
 *
 * Part buffers are bounded server-wide by the storage layer (storage/upload-budget.ts): a WRITE
 * whose part cannot be reserved is answered late, its bytes stay queued here, and the first bound
 * holds the window.
 *
 * What can still arrive while held is what the client had left of the window (at most
 * SFTP_RECEIVE_WINDOW, 8 MiB) plus one reply per request already in progress.
 */
import type { SFTPWrapper } from 'ssh2';
import type { Logger } from 'pino';
import { SFTP_RECEIVE_WINDOW, widenReceiveWindow } from '../ssh/ssh2-window.ts';
import type { WriteData } from './write-requests.ts';

/** Why a session stopped reading from its channel, for the metric. */
export type HoldReason = 'session-writes' | 'unread-replies' | 'queued-requests';

/** Unanswered READs passed to the session at once: enough for any client's pipelining, at most ~16 MiB of replies. */
export const MAX_READS_IN_FLIGHT = 64;
/** ssh2 emits SFTP requests as upper-case event names (OPEN, READ, ...); everything else passes untouched. */
const REQUEST_EVENT = /^[A-Z]+$/;

/** Counters for the metrics layer. */
export interface FlowEvents {
  /** A session stopped reading its channel (once per hold, not per packet). */
  held?(reason: HoldReason): void;
}

export interface FlowControlOptions {
  /** Queued WRITE bytes one session may have before its window is held. */
  maxQueuedWriteBytes: number;
  events?: FlowEvents;
}

/** What the SSH server keeps of one channel's flow control. */
export interface ChannelFlow {
  /** Releases everything the channel still counts (call when the channel closes). */
  detach(): void;
  /** Queued WRITE bytes now (for tests and logs). */
  readonly queuedWriteBytes: number;
}

interface SftpInternals {
  emit(event: string | symbol, ...args: unknown[]): boolean;
  status(id: number, code: number, message?: string): boolean;
  data(id: number, data: Buffer | string, encoding?: BufferEncoding): boolean;
  handle(id: number, handle: Buffer): boolean;
  name(id: number, names: unknown[]): boolean;
  attrs(id: number, attrs: unknown): boolean;
  _buffer?: unknown[];
}

/** Builds the flow control of every SFTP channel on one server. */
export class FlowControl {
  readonly #o: FlowControlOptions;

  constructor(options: FlowControlOptions) {
    this.#o = options;
  }

  /**
   * Installs flow control on a freshly accepted SFTP channel, widening its receive window as
   * ssh2-window.ts does. Call it last among the patches of `push` (it must be the outermost).
   */
  attach(sftp: SFTPWrapper, log?: Logger): ChannelFlow {
    return new SftpChannelFlow(sftp, this.#o, log);
  }
}

class SftpChannelFlow implements ChannelFlow {
  readonly #s: SftpInternals;
  readonly #o: FlowControlOptions;
  /** The memory each unanswered WRITE holds, by request id (a client may reuse an id: a list each). */
  readonly #writes = new Map<number, ArrayBufferLike[][]>();
  /** Unanswered WRITEs holding each piece of memory: it counts once, however many share it. */
  readonly #holders = new Map<ArrayBufferLike, number>();
  #queued = 0;
  /** ssh2 holds replies the client has not taken: no request is passed on meanwhile. */
  #repliesBlocked = false;
  /** Requests not yet passed to the session, in arrival order: [event, ...args]. */
  readonly #waiting: unknown[][] = [];
  /** Unanswered READs by request id (a client may reuse an id: a count each). */
  readonly #readsInFlight = new Map<number, number>();
  #emit: ((event: string | symbol, ...args: unknown[]) => boolean) | undefined;
  #pumping = false;
  #reopen: (() => void) | undefined;
  #heldFor: HoldReason | undefined;
  #detached = false;

  constructor(sftp: SFTPWrapper, options: FlowControlOptions, log?: Logger) {
    this.#s = sftp as unknown as SftpInternals;
    this.#o = options;
    this.#wrapRequests();
    this.#wrapReplies();
    this.#watchDrain();
    widenReceiveWindow(sftp, log, SFTP_RECEIVE_WINDOW, {
      held: () => this.#held(),
      onRelease: (reopen) => (this.#reopen = reopen),
    });
  }

  get queuedWriteBytes(): number {
    return this.#queued;
  }

  detach(): void {
    if (this.#detached) return;
    this.#detached = true;
    this.#queued = 0;
    this.#writes.clear();
    this.#holders.clear();
    this.#waiting.length = 0;
    this.#readsInFlight.clear();
  }

  /** True while the channel must not be read; reports each new hold once. */
  #held(): boolean {
    const reason = this.#holdReason();
    if (reason && reason !== this.#heldFor) this.#o.events?.held?.(reason);
    this.#heldFor = reason;
    return reason !== undefined;
  }

  #holdReason(): HoldReason | undefined {
    if (this.#detached) return undefined;
    if (this.#repliesBlocked) return 'unread-replies';
    if (this.#waiting.length > 0) return 'queued-requests';
    if (this.#queued > this.#o.maxQueuedWriteBytes) return 'session-writes';
    return undefined;
  }

  #maybeRelease(): void {
    if (this.#heldFor === undefined || this.#held()) return;
    this.#reopen?.();
  }

  /**
   * Counts WRITE data on arrival, and passes requests to the session in arrival order while at
   * most MAX_READS_IN_FLIGHT READs are unanswered and ssh2 is not holding replies. Once one
   * request waits, every later one waits behind it, so no request overtakes another (a CLOSE
   * must not pass the READs before it).
   */
  #wrapRequests(): void {
    const s = this.#s;
    const emit = s.emit.bind(s);
    this.#emit = emit;
    s.emit = (event: string | symbol, ...args: unknown[]): boolean => {
      if (typeof event !== 'string' || !REQUEST_EVENT.test(event) || this.#detached) return emit(event, ...args);
      if (event === 'WRITE') {
        const [id, , , data] = args as [number, Buffer, number, WriteData];
        this.#count(id, data);
      }
      if (this.#waiting.length > 0 || !this.#mayPass(event)) {
        this.#waiting.push([event, ...args]);
        this.#held();
        return true;
      }
      return this.#pass(event, args);
    };
  }

  #mayPass(event: string): boolean {
    return !this.#repliesBlocked && (event !== 'READ' || this.#readsInFlight.size < MAX_READS_IN_FLIGHT);
  }

  #pass(event: string, args: unknown[]): boolean {
    if (event === 'READ') {
      const id = args[0] as number;
      this.#readsInFlight.set(id, (this.#readsInFlight.get(id) ?? 0) + 1);
    }
    return this.#emit!(event, ...args);
  }

  /** Passes waiting requests on, in order, as far as the limits allow. */
  #pump(): void {
    if (this.#pumping) return;
    this.#pumping = true;
    try {
      while (this.#waiting.length > 0 && !this.#detached && this.#mayPass(this.#waiting[0]![0] as string)) {
        const [event, ...args] = this.#waiting.shift()!;
        this.#pass(event as string, args);
      }
    } finally {
      this.#pumping = false;
    }
    this.#maybeRelease();
  }

  /**
   * Counts a WRITE by the memory its data keeps alive: the buffers it is a view of (write-requests.ts
   * hands out views of the incoming chunks), each once while any unanswered WRITE holds it. A chunk
   * shared by two WRITEs counts once; one that also held bytes of a packet ssh2 copied counts whole.
   */
  #count(id: number, data: WriteData): void {
    const memory: ArrayBufferLike[] = [];
    for (const piece of Array.isArray(data) ? data : [data]) {
      if (memory.includes(piece.buffer)) continue;
      memory.push(piece.buffer);
      const holders = this.#holders.get(piece.buffer) ?? 0;
      if (holders === 0) this.#queued += piece.buffer.byteLength;
      this.#holders.set(piece.buffer, holders + 1);
    }
    const list = this.#writes.get(id);
    if (list) list.push(memory);
    else this.#writes.set(id, [memory]);
  }

  /** Every reply: releases a WRITE's bytes when it is answered, and notices ssh2 buffering. */
  #wrapReplies(): void {
    const s = this.#s;
    for (const method of ['status', 'data', 'handle', 'name', 'attrs'] as const) {
      const original = (s[method] as (...a: unknown[]) => boolean).bind(s);
      (s as unknown as Record<string, unknown>)[method] = (id: number, ...rest: unknown[]): boolean => {
        if (method === 'status') this.#answered(id);
        original(id, ...rest);
        // ssh2's server-side reply methods return nothing; what they could not send waits in `_buffer`.
        const sent = !s._buffer || s._buffer.length === 0;
        if (!sent && !this.#repliesBlocked) {
          this.#repliesBlocked = true;
          this.#held();
        }
        if (method === 'data' || method === 'status') this.#readAnswered(id);
        return sent;
      };
    }
  }

  #readAnswered(id: number): void {
    const n = this.#readsInFlight.get(id);
    if (n === undefined) return;
    if (n <= 1) this.#readsInFlight.delete(id);
    else this.#readsInFlight.set(id, n - 1);
    if (this.#waiting.length > 0) queueMicrotask(() => this.#pump());
  }

  #answered(id: number): void {
    const list = this.#writes.get(id);
    if (!list) return;
    const memory = list.shift() ?? [];
    if (list.length === 0) this.#writes.delete(id);
    for (const buffer of memory) {
      const holders = (this.#holders.get(buffer) ?? 1) - 1;
      if (holders > 0) this.#holders.set(buffer, holders);
      else {
        this.#holders.delete(buffer);
        this.#queued -= buffer.byteLength;
      }
    }
    this.#maybeRelease();
  }

  /**
   * ssh2 flushes its reply buffer from `_chunkcb` when the client opens its window; once the
   * buffer is empty, held READs are served and the channel reopens.
   */
  #watchDrain(): void {
    const s = this.#s as unknown as { _chunkcb?: (() => void) | undefined; _buffer?: unknown[] };
    let inner = s._chunkcb;
    const self = this;
    function flushed(this: unknown): void {
      const f = inner;
      f?.call(this);
      if (!s._buffer || s._buffer.length === 0) self.#drained();
    }
    Object.defineProperty(s, '_chunkcb', {
      configurable: true,
      get: () => (inner ? flushed : undefined),
      set: (v: (() => void) | undefined) => (inner = v),
    });
  }

  #drained(): void {
    if (!this.#repliesBlocked) return;
    this.#repliesBlocked = false;
    this.#pump();
  }
}
