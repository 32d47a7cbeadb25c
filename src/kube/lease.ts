/**
 * Leader election on a coordination.k8s.io/v1 Lease, so that exactly one replica writes SftpUser
 * status. client-node has no helper for it; this follows client-go's leaderelection package:
 *
 * - A candidate takes the Lease when it does not exist, when its holder is empty (released), or
 *   when the record has not changed for leaseDuration as measured on the candidate's own clock.
 *   Judging expiry by local observation rather than by renewTime keeps clock skew between nodes
 *   out of the decision.
 * - Every write is an update with the record's resourceVersion, so of two candidates racing for
 *   an expired Lease exactly one wins; the other gets 409 Conflict.
 * - The leader renews every renewInterval and stops acting as leader when it has not renewed for
 *   renewDeadline (shorter than leaseDuration), before anyone else may take over.
 * - On stop, the leader releases the Lease (empty holder) so another replica takes over at once.
 *
 * Time and timers are injected so tests can drive the protocol without waiting.
 */

/** The parts of a Lease's spec (and its resourceVersion) that the election reads and writes. */
export interface LeaseRecord {
  holderIdentity: string;
  leaseDurationSeconds: number;
  /** RFC 3339 with microseconds (metav1.MicroTime). */
  acquireTime?: string;
  renewTime?: string;
  leaseTransitions: number;
  resourceVersion?: string;
}

/** The update lost a race: the Lease changed since it was read (HTTP 409). */
export class LeaseConflictError extends Error {
  override name = 'LeaseConflictError';
}

/** One Lease object in the API. create and replace throw LeaseConflictError on 409. */
export interface LeaseApi {
  /** The Lease, or undefined when it does not exist. */
  get(): Promise<LeaseRecord | undefined>;
  create(record: LeaseRecord): Promise<LeaseRecord>;
  /** Updates the Lease; `record.resourceVersion` must be the one read. */
  replace(record: LeaseRecord): Promise<LeaseRecord>;
}

/** Time and timers, injectable for tests. */
export interface LeaseClock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

/** The pino methods the elector uses. */
export interface LeaseLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

export interface LeaseElectorOptions {
  api: LeaseApi;
  /** Unique per replica, e.g. the pod name and a random suffix. */
  identity: string;
  log: LeaseLogger;
  /** Default 15 s. */
  leaseDurationMs?: number;
  /** How often the leader renews and the others retry. Default 5 s. */
  renewIntervalMs?: number;
  /** The leader steps down when it has not renewed for this long. Default 10 s; below leaseDurationMs. */
  renewDeadlineMs?: number;
  clock?: LeaseClock;
  /** Called when this replica starts or stops leading. */
  onLeadingChange?: (leading: boolean) => void;
}

const systemClock: LeaseClock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, ms);
    t.unref();
    return t;
  },
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

/** metav1.MicroTime: the API server insists on exactly six fractional digits. */
export function microTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

/** Elects one leader among the replicas sharing a Lease. */
export class LeaseElector {
  readonly #api: LeaseApi;
  readonly #identity: string;
  readonly #log: LeaseLogger;
  readonly #durationMs: number;
  readonly #intervalMs: number;
  readonly #deadlineMs: number;
  readonly #clock: LeaseClock;
  readonly #onChange: ((leading: boolean) => void) | undefined;
  #leading = false;
  /** The record last seen, and when (local clock) it last changed. */
  #observed: LeaseRecord | undefined;
  #observedAt = 0;
  /** When this replica last wrote the Lease successfully as its holder. */
  #renewedAt = 0;
  #timer: unknown;
  #running = false;
  #attempt: Promise<void> | undefined;

  constructor(opts: LeaseElectorOptions) {
    this.#api = opts.api;
    this.#identity = opts.identity;
    this.#log = opts.log;
    this.#durationMs = opts.leaseDurationMs ?? 15_000;
    this.#intervalMs = opts.renewIntervalMs ?? 5_000;
    this.#deadlineMs = opts.renewDeadlineMs ?? Math.min(10_000, Math.floor((this.#durationMs * 2) / 3));
    this.#clock = opts.clock ?? systemClock;
    this.#onChange = opts.onLeadingChange;
    if (this.#deadlineMs >= this.#durationMs) throw new Error('renewDeadlineMs must be below leaseDurationMs');
  }

  /** True while this replica holds the Lease. */
  get leading(): boolean {
    return this.#leading;
  }

  get identity(): string {
    return this.#identity;
  }

  /** Tries at once, then every renewInterval until stop(). */
  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#loop();
  }

  /** Stops trying; a leader releases the Lease so another replica can take it over at once. */
  async stop(): Promise<void> {
    this.#running = false;
    this.#clock.clearTimeout(this.#timer);
    await this.#attempt;
    if (!this.#leading) return;
    this.#setLeading(false);
    const held = this.#observed;
    if (!held || held.holderIdentity !== this.#identity) return;
    const now = this.#clock.now();
    try {
      await this.#api.replace({ ...held, holderIdentity: '', leaseDurationSeconds: 1, renewTime: microTime(now), acquireTime: microTime(now) });
    } catch (err) {
      // The others take over when the Lease expires instead.
      this.#log.warn({ err }, 'releasing the status-writer lease failed');
    }
  }

  /** One round of the protocol: acquire, renew, or observe. Exposed for tests. */
  async tryAcquireOrRenew(): Promise<void> {
    this.#attempt = this.#round();
    await this.#attempt;
  }

  #loop(): void {
    if (!this.#running) return;
    void this.tryAcquireOrRenew().finally(() => {
      if (this.#running) this.#timer = this.#clock.setTimeout(() => this.#loop(), this.#intervalMs);
    });
  }

  async #round(): Promise<void> {
    let record: LeaseRecord | undefined;
    try {
      record = await this.#api.get();
    } catch (err) {
      this.#failed(err);
      return;
    }
    const now = this.#clock.now();
    if (!record) {
      const fresh: LeaseRecord = {
        holderIdentity: this.#identity,
        leaseDurationSeconds: Math.ceil(this.#durationMs / 1000),
        acquireTime: microTime(now),
        renewTime: microTime(now),
        leaseTransitions: 0,
      };
      await this.#write(() => this.#api.create(fresh));
      return;
    }
    this.#observe(record, now);
    const holder = record.holderIdentity;
    const mine = holder === this.#identity;
    const expired = holder === '' || now - this.#observedAt >= record.leaseDurationSeconds * 1000;
    if (!mine && !expired) {
      this.#setLeading(false);
      return;
    }
    await this.#write(() =>
      this.#api.replace({
        ...record,
        holderIdentity: this.#identity,
        leaseDurationSeconds: Math.ceil(this.#durationMs / 1000),
        renewTime: microTime(now),
        acquireTime: mine && record.acquireTime ? record.acquireTime : microTime(now),
        leaseTransitions: mine ? record.leaseTransitions : record.leaseTransitions + 1,
      }),
    );
  }

  async #write(write: () => Promise<LeaseRecord>): Promise<void> {
    try {
      const written = await write();
      const now = this.#clock.now();
      this.#observe(written, now);
      this.#renewedAt = now;
      this.#setLeading(true);
    } catch (err) {
      if (err instanceof LeaseConflictError) {
        // Another replica wrote first; whoever it is, the next round reads its record.
        this.#setLeading(false);
        return;
      }
      this.#failed(err);
    }
  }

  #failed(err: unknown): void {
    this.#log.warn({ err, leading: this.#leading }, 'the status-writer lease could not be read or renewed');
    if (this.#leading && this.#clock.now() - this.#renewedAt >= this.#deadlineMs) this.#setLeading(false);
  }

  #observe(record: LeaseRecord, now: number): void {
    const before = this.#observed;
    const changed =
      !before ||
      before.holderIdentity !== record.holderIdentity ||
      before.renewTime !== record.renewTime ||
      before.resourceVersion !== record.resourceVersion;
    this.#observed = record;
    if (changed) this.#observedAt = now;
  }

  #setLeading(leading: boolean): void {
    if (leading === this.#leading) return;
    this.#leading = leading;
    this.#log.info({ identity: this.#identity }, leading ? 'became the status writer' : 'stopped being the status writer');
    this.#onChange?.(leading);
  }
}
