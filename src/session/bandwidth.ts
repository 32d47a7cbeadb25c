/**
 * Bandwidth limits (spec.bandwidth per user, bandwidth.* server-wide).
 *
 * A limit is applied where the session waits anyway: an upload's
 * FileWriter.write() resolves only once the bytes fit the rate, so the SFTP
 * session answers the WRITE late and the client, whose requests in flight are
 * bounded, stops sending (and the channel's window stays shut until the
 * session takes more); a download's FileReader.read() waits before it fetches,
 * so READ replies are delayed and nothing is buffered for them. SFTP and SCP
 * both go through Storage, so one decorator (limitBandwidth) serves both and
 * neither protocol module knows about rates.
 *
 * The buckets allow a short burst (BURST_SECONDS of the rate) and then run in
 * debt: a take() larger than what is left is granted at once and the taker
 * waits until the debt is paid, so a later taker queues behind it. That keeps
 * several sessions sharing one bucket at the bucket's rate in total.
 */
import type { FileReader, FileWriter, OpenWriteOptions, Storage } from '../storage/storage.ts';

/** How much unused rate a bucket saves up: a tenth of a second's worth. */
const BURST_SECONDS = 0.1;

/** Time source and sleep, injectable so tests control time. */
export interface BandwidthClock {
  /** Milliseconds, monotonic. */
  now(): number;
  sleep(ms: number): Promise<void>;
}

export const realClock: BandwidthClock = {
  now: () => performance.now(),
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
};

/** A token bucket in bytes per second that may go into debt. */
export class TokenBucket {
  readonly bytesPerSecond: number;
  readonly #capacity: number;
  readonly #clock: BandwidthClock;
  #tokens: number;
  #last: number;

  constructor(bytesPerSecond: number, clock: BandwidthClock = realClock) {
    this.bytesPerSecond = bytesPerSecond;
    this.#capacity = bytesPerSecond * BURST_SECONDS;
    this.#clock = clock;
    this.#tokens = this.#capacity;
    this.#last = clock.now();
  }

  /**
   * Takes `bytes` now and answers how long (ms) the taker must wait before
   * using them: 0 while the bucket has them, else until the debt is paid.
   */
  take(bytes: number): number {
    const now = this.#clock.now();
    this.#tokens = Math.min(this.#capacity, this.#tokens + ((now - this.#last) / 1000) * this.bytesPerSecond);
    this.#last = now;
    this.#tokens -= bytes;
    return this.#tokens >= 0 ? 0 : (-this.#tokens / this.bytesPerSecond) * 1000;
  }
}

/** Rates in KiB/s; 0 or undefined means unlimited. */
export interface BandwidthRates {
  uploadKiBps?: number;
  downloadKiBps?: number;
}

type Direction = 'upload' | 'download';

/**
 * The buckets of one server: one per direction for the server-wide cap, and
 * one per direction per user, shared by all of that user's sessions (a user
 * with two sessions gets the user's rate in total, not twice).
 */
export class BandwidthLimiter {
  readonly #clock: BandwidthClock;
  readonly #server: Partial<Record<Direction, TokenBucket>>;
  readonly #users = new Map<string, Partial<Record<Direction, TokenBucket>>>();

  constructor(options: { server: BandwidthRates; clock?: BandwidthClock }) {
    this.#clock = options.clock ?? realClock;
    this.#server = this.#buckets(options.server);
  }

  /** True when neither the server nor this user's rates limit anything. */
  unlimited(user: BandwidthRates | undefined): boolean {
    return !this.#server.upload && !this.#server.download && !user?.uploadKiBps && !user?.downloadKiBps;
  }

  /** Waits until `bytes` in `direction` fit the user's rate and the server's. */
  async acquire(username: string, rates: BandwidthRates | undefined, direction: Direction, bytes: number): Promise<void> {
    if (bytes <= 0) return;
    const user = this.#userBuckets(username, rates)[direction];
    const wait = Math.max(this.#server[direction]?.take(bytes) ?? 0, user?.take(bytes) ?? 0);
    if (wait > 0) await this.#clock.sleep(wait);
  }

  #userBuckets(username: string, rates: BandwidthRates | undefined): Partial<Record<Direction, TokenBucket>> {
    let buckets = this.#users.get(username);
    // A changed spec.bandwidth takes effect for the next transfer: new buckets at the new rates.
    if (!buckets || buckets.upload?.bytesPerSecond !== kib(rates?.uploadKiBps) || buckets.download?.bytesPerSecond !== kib(rates?.downloadKiBps)) {
      buckets = this.#buckets(rates ?? {});
      this.#users.set(username, buckets);
    }
    return buckets;
  }

  #buckets(rates: BandwidthRates): Partial<Record<Direction, TokenBucket>> {
    const out: Partial<Record<Direction, TokenBucket>> = {};
    if (rates.uploadKiBps) out.upload = new TokenBucket(rates.uploadKiBps * 1024, this.#clock);
    if (rates.downloadKiBps) out.download = new TokenBucket(rates.downloadKiBps * 1024, this.#clock);
    return out;
  }
}

function kib(rate: number | undefined): number | undefined {
  return rate ? rate * 1024 : undefined;
}

/**
 * `storage` with its reads and writes paced by `limiter` for this user; the
 * storage itself when nothing limits the user.
 */
export function limitBandwidth(storage: Storage, limiter: BandwidthLimiter, username: string, rates: BandwidthRates | undefined): Storage {
  if (limiter.unlimited(rates)) return storage;
  const acquire = (direction: Direction, bytes: number) => limiter.acquire(username, rates, direction, bytes);
  return new Proxy(storage, {
    get(target, prop, receiver) {
      if (prop === 'openRead') return async (path: string) => pacedReader(await target.openRead(path), acquire);
      if (prop === 'openWrite') return async (path: string, options?: OpenWriteOptions) => pacedWriter(await target.openWrite(path, options), acquire);
      const value = Reflect.get(target, prop, receiver) as unknown;
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
}

type Acquire = (direction: Direction, bytes: number) => Promise<void>;

/** Waits before each read for the bytes it will return (known from the size), so nothing waits in memory. */
function pacedReader(reader: FileReader, acquire: Acquire): FileReader {
  return {
    get size() {
      return reader.size;
    },
    get mtime() {
      return reader.mtime;
    },
    async read(offset, length) {
      await acquire('download', Math.max(0, Math.min(length, reader.size - offset)));
      return reader.read(offset, length);
    },
    close: () => reader.close(),
  };
}

/** Waits before passing each write on; the session's reply to the WRITE waits with it. */
function pacedWriter(writer: FileWriter, acquire: Acquire): FileWriter {
  const paced: FileWriter = {
    get bytesReceived() {
      return writer.bytesReceived;
    },
    async write(offset, data) {
      await acquire('upload', data.length);
      return writer.write(offset, data);
    },
    setMtime: (mtime) => writer.setMtime(mtime),
    commit: () => writer.commit(),
    abort: () => writer.abort(),
  };
  if (writer.continueExisting) paced.continueExisting = (size) => writer.continueExisting!(size);
  return paced;
}
