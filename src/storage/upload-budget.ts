/**
 * The server-wide budget of upload part memory (`sftp.uploadMemoryBudget`).
 *
 * A writer reserves a part's bytes before it fills them and gives them back once the part is
 * stored, dropped, or the upload ends. When the budget is spent a reservation waits (the WRITE
 * that needs it is answered later, so the client slows down); it never fails for lack of room.
 *
 * Waiting must not deadlock. Bytes handed to S3 come back on their own (stored or failed), so
 * waiting for them is safe; spare buffers are dropped as soon as anyone waits. Bytes in buffers
 * still being filled come back only when their writers make progress. So when nothing is on its
 * way to S3 and every reserved byte belongs to a writer that is itself waiting, the oldest waiter
 * is let through over the limit (a reservation larger than the whole budget is granted that way
 * once nothing else is held). A writer can also sit idle holding a part because its client waits
 * for another upload's WRITE reply on the same channel; a waiter that got nothing for `stallMs`
 * while nothing is on its way to S3 is let through too.
 */

/** Who holds a reservation: one per upload. */
export type BudgetOwner = object;

interface Waiter {
  owner: BudgetOwner;
  bytes: number;
  since: number;
  grant(): void;
}

/** What the metrics layer reads. */
export interface UploadBudgetStats {
  readonly limit: number;
  /** Bytes reserved now: parts being filled, queued or uploading, and spare buffers. */
  readonly held: number;
  /** The most ever reserved at once. */
  readonly peak: number;
  /** Reservations waiting now. */
  readonly waiting: number;
}

export interface UploadBudgetOptions {
  /** How long a waiter may get nothing while nothing is on its way to S3 (default 5 s). */
  stallMs?: number;
  now?: () => number;
}

/** The part memory all uploads of one server share. */
export class UploadBudget implements UploadBudgetStats {
  readonly limit: number;
  #held = 0;
  #peak = 0;
  /** Reserved bytes of parts on their way to S3 (queued, uploading, or a single PUT). */
  #inFlight = 0;
  /** Reserved bytes not in flight, by owner: buffers being filled and spares. */
  readonly #owned = new Map<BudgetOwner, number>();
  readonly #queue: Waiter[] = [];
  /** Writers keeping a spare buffer: asked to drop it as soon as anyone waits. */
  readonly #spareHolders = new Set<() => void>();
  readonly #stallMs: number;
  readonly #now: () => number;
  #stallTimer: NodeJS.Timeout | undefined;

  constructor(limit: number, options: UploadBudgetOptions = {}) {
    if (!(limit > 0)) throw new RangeError(`upload budget must be positive, got ${limit}`);
    this.limit = limit;
    this.#stallMs = options.stallMs ?? 5_000;
    this.#now = options.now ?? Date.now;
  }

  /** A budget that never makes anyone wait (storage built without a server, and tests). */
  static unlimited(): UploadBudget {
    return new UploadBudget(Number.POSITIVE_INFINITY);
  }

  get held(): number {
    return this.#held;
  }

  get peak(): number {
    return this.#peak;
  }

  get waiting(): number {
    return this.#queue.length;
  }

  /**
   * Reserves `bytes` for `owner`, waiting in turn while the budget is spent. Rejects only when
   * `signal` aborts (the upload ended), and then nothing is reserved.
   */
  reserve(owner: BudgetOwner, bytes: number, signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (bytes <= 0) return Promise.resolve();
    if (this.#queue.length === 0 && this.#held + bytes <= this.limit) {
      this.#take(owner, bytes);
      return Promise.resolve();
    }
    const { promise, resolve, reject } = Promise.withResolvers<void>();
    const onAbort = (): void => {
      const i = this.#queue.indexOf(waiter);
      if (i < 0) return;
      this.#queue.splice(i, 1);
      reject(signal!.reason);
      this.#wake();
    };
    const waiter: Waiter = {
      owner,
      bytes,
      since: this.#now(),
      grant: () => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      },
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    this.#queue.push(waiter);
    for (const drop of [...this.#spareHolders]) drop();
    this.#wake();
    return promise;
  }

  /** Gives back bytes of `owner` that are not in flight (a buffer dropped, a spare let go). */
  release(owner: BudgetOwner, bytes: number): void {
    if (bytes <= 0) return;
    this.#own(owner, -bytes);
    this.#held = Math.max(0, this.#held - bytes);
    this.#wake();
  }

  /** `owner`'s reserved bytes became a part on its way to S3. */
  submitted(owner: BudgetOwner, bytes: number): void {
    if (bytes <= 0) return;
    this.#own(owner, -bytes);
    this.#inFlight += bytes;
  }

  /**
   * A part handed to S3 is finished (stored, failed or cancelled). Its bytes are released, or,
   * with `keepFor`, stay reserved for that owner's spare buffer.
   */
  landed(bytes: number, keepFor?: BudgetOwner): void {
    if (bytes <= 0) return;
    this.#inFlight = Math.max(0, this.#inFlight - bytes);
    if (keepFor) this.#own(keepFor, bytes);
    else this.#held = Math.max(0, this.#held - bytes);
    this.#wake();
  }

  /** Registers a writer's way to drop its spare buffer; returns the unregister. */
  holdSpare(drop: () => void): () => void {
    this.#spareHolders.add(drop);
    return () => this.#spareHolders.delete(drop);
  }

  #own(owner: BudgetOwner, delta: number): void {
    const left = (this.#owned.get(owner) ?? 0) + delta;
    if (left > 0) this.#owned.set(owner, left);
    else this.#owned.delete(owner);
  }

  #take(owner: BudgetOwner, bytes: number): void {
    this.#own(owner, bytes);
    this.#held += bytes;
    if (this.#held > this.#peak) this.#peak = this.#held;
  }

  /** Nothing will come back unless a waiter goes on: every byte held is a waiting writer's. */
  #stuck(): boolean {
    if (this.#inFlight > 0) return false;
    let waitersOwn = 0;
    for (const owner of new Set(this.#queue.map((w) => w.owner))) waitersOwn += this.#owned.get(owner) ?? 0;
    return waitersOwn >= this.#held;
  }

  /** Grants waiters in order, as far as the budget allows. */
  #wake(): void {
    while (this.#queue.length > 0) {
      const head = this.#queue[0]!;
      const fits = this.#held + head.bytes <= this.limit;
      const stalled = this.#inFlight === 0 && this.#now() - head.since >= this.#stallMs;
      if (!fits && !stalled && !this.#stuck()) break;
      this.#queue.shift();
      this.#take(head.owner, head.bytes);
      head.grant();
    }
    this.#armStallTimer();
  }

  #armStallTimer(): void {
    clearTimeout(this.#stallTimer);
    this.#stallTimer = undefined;
    if (this.#queue.length === 0 || this.#inFlight > 0 || !Number.isFinite(this.#stallMs)) return;
    const wait = Math.max(0, this.#queue[0]!.since + this.#stallMs - this.#now());
    this.#stallTimer = setTimeout(() => this.#wake(), wait);
    this.#stallTimer.unref();
  }
}
