/**
 * Writes the Ready condition of SftpUser resources through the status subresource, one resource at
 * a time per key (a key queued again while its write is in flight is written again afterwards,
 * with the then-current wish). Level-triggered: the queue holds keys, and each write reads the
 * latest wish and the latest cached object, so a burst of changes costs one write.
 *
 * A status write is itself a watch event (a new resourceVersion), so the writer never writes what
 * the cached object already says, and does not repeat a write whose own watch event has not
 * arrived yet: that is what keeps status updates from feeding a loop.
 */

import { backoffDelay } from '../backoff.ts';
import { describeError, httpStatus } from './api.ts';
import { statusMatches, statusPatch, type DesiredReady, type SftpUserResource } from './sftp-user-resource.ts';

/** The pino methods the writer uses. */
export interface StatusWriterLogger {
  debug(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

export interface StatusWriterOptions {
  /** JSON merge patch of the status subresource. */
  patch(namespace: string, name: string, body: object): Promise<SftpUserResource>;
  /** The object as the informer last saw it. */
  current(key: string): SftpUserResource | undefined;
  log: StatusWriterLogger;
  now?: () => Date;
  /** Writes in flight at once (different keys). Default 4. */
  concurrency?: number;
  /** Retry delay after a failed write: doubles from min to max, with jitter (src/backoff.ts). Defaults 1 s and 60 s. */
  retryDelayMs?: { min: number; max: number };
}

interface Written {
  /** resourceVersion of the object the write was based on: while the cache still shows it, the write's event is pending. */
  basedOn: string | undefined;
  desired: DesiredReady;
}

function sameDesired(a: DesiredReady, b: DesiredReady): boolean {
  return (
    a.status === b.status &&
    a.reason === b.reason &&
    a.message === b.message &&
    a.observedGeneration === b.observedGeneration &&
    a.usage?.bytes === b.usage?.bytes &&
    a.usage?.files === b.usage?.files
  );
}

/** Queues and writes Ready conditions; active only while this replica holds the lease. */
export class StatusWriter {
  readonly #opts: StatusWriterOptions;
  readonly #desired = new Map<string, DesiredReady>();
  readonly #queue = new Set<string>();
  readonly #inFlight = new Set<string>();
  readonly #written = new Map<string, Written>();
  readonly #failures = new Map<string, number>();
  readonly #retryTimers = new Map<string, NodeJS.Timeout>();
  readonly #idle = new Set<() => void>();
  #active = false;
  #closed = false;
  /** Writes made, for tests and logs. */
  writes = 0;

  constructor(opts: StatusWriterOptions) {
    this.#opts = opts;
  }

  /** Starts (true) or stops (false) writing, as the lease is won or lost. Winning re-checks every key. */
  setActive(active: boolean): void {
    if (this.#active === active) return;
    this.#active = active;
    if (active) {
      this.#written.clear();
      for (const key of this.#desired.keys()) this.#queue.add(key);
      this.#pump();
    }
  }

  get active(): boolean {
    return this.#active;
  }

  /** Sets what the resource's Ready condition should say; undefined forgets the resource. */
  want(key: string, desired: DesiredReady | undefined): void {
    if (!desired) {
      this.#desired.delete(key);
      this.#written.delete(key);
      this.#failures.delete(key);
      clearTimeout(this.#retryTimers.get(key));
      this.#retryTimers.delete(key);
      return;
    }
    const before = this.#desired.get(key);
    this.#desired.set(key, desired);
    const resource = this.#opts.current(key);
    if (before && sameDesired(before, desired) && resource && statusMatches(resource, desired)) return;
    this.#queue.add(key);
    this.#pump();
  }

  /** Re-checks a key whose cached object changed (e.g. someone edited its status). */
  touch(key: string): void {
    if (!this.#desired.has(key)) return;
    this.#queue.add(key);
    this.#pump();
  }

  /** Resolves when nothing is queued or in flight (for tests and shutdown). */
  idle(): Promise<void> {
    if (this.#queue.size === 0 && this.#inFlight.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idle.add(resolve));
  }

  close(): void {
    this.#closed = true;
    this.#active = false;
    for (const t of this.#retryTimers.values()) clearTimeout(t);
    this.#retryTimers.clear();
    this.#queue.clear();
    this.#wakeIdle();
  }

  #pump(): void {
    if (!this.#active || this.#closed) {
      this.#wakeIdle();
      return;
    }
    const limit = this.#opts.concurrency ?? 4;
    for (const key of this.#queue) {
      if (this.#inFlight.size >= limit) break;
      if (this.#inFlight.has(key)) continue;
      this.#queue.delete(key);
      this.#inFlight.add(key);
      void this.#write(key).finally(() => {
        this.#inFlight.delete(key);
        this.#pump();
      });
    }
    this.#wakeIdle();
  }

  #wakeIdle(): void {
    const busy = this.#inFlight.size > 0 || (this.#active && !this.#closed && this.#queue.size > 0);
    if (busy) return;
    for (const resolve of this.#idle) resolve();
    this.#idle.clear();
  }

  async #write(key: string): Promise<void> {
    const desired = this.#desired.get(key);
    const resource = this.#opts.current(key);
    if (!desired || !resource || !this.#active) return;
    if (statusMatches(resource, desired)) {
      this.#written.delete(key);
      return;
    }
    const pending = this.#written.get(key);
    if (pending && pending.basedOn === resource.metadata.resourceVersion && sameDesired(pending.desired, desired)) return;
    const { namespace = '', name = '' } = resource.metadata;
    const body = statusPatch(resource, desired, (this.#opts.now ?? (() => new Date()))());
    try {
      await this.#opts.patch(namespace, name, body);
      this.writes++;
      this.#written.set(key, { basedOn: resource.metadata.resourceVersion, desired });
      this.#failures.delete(key);
      this.#opts.log.debug({ resource: key, status: desired.status, reason: desired.reason }, 'wrote SftpUser status');
    } catch (err) {
      if (httpStatus(err) === 404) return; // deleted meanwhile; the informer will forget it
      const failures = (this.#failures.get(key) ?? 0) + 1;
      this.#failures.set(key, failures);
      const { min, max } = this.#opts.retryDelayMs ?? { min: 1_000, max: 60_000 };
      const delay = backoffDelay(failures, { minMs: min, maxMs: max });
      this.#opts.log.warn({ resource: key, error: describeError(err), retryInMs: delay }, 'writing SftpUser status failed; retrying');
      clearTimeout(this.#retryTimers.get(key));
      const timer = setTimeout(() => {
        this.#retryTimers.delete(key);
        this.touch(key);
      }, delay);
      timer.unref();
      this.#retryTimers.set(key, timer);
    }
  }
}

