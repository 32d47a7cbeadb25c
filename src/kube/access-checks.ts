/**
 * The access checks behind the SftpUsers' Ready condition: one check per resource and storage
 * settings, repeated every `recheckMs` while it fails, so a fixed trust policy or bucket shows
 * as Ready without an edit of the resource. Results arrive asynchronously; `onResult` asks the
 * controller to judge that resource again. At most `concurrency` checks run at once (default 8):
 * 10,000 new users must not mean 10,000 simultaneous requests to STS and S3.
 */
import type { AccessCheck } from '../users/access.ts';
import type { User } from '../users/user.ts';
import type { InformerLogger } from './informer.ts';

const DEFAULT_RECHECK_MS = 5 * 60_000;

export interface AccessChecksOptions {
  check: (user: User) => Promise<AccessCheck>;
  /** Called with the resource's key when a result arrives or a failed check is due again. */
  onResult: (key: string) => void;
  /** Checks running at once. Default 8. */
  concurrency?: number;
  log: InformerLogger;
  /** Default 5 minutes. */
  recheckMs?: number;
  now?: () => number;
}

interface AccessState {
  /** The user fields the check depends on. */
  version: string;
  result?: AccessCheck;
  checkedAt: number;
  running: boolean;
}

export class AccessChecks {
  readonly #o: AccessChecksOptions;
  readonly #states = new Map<string, AccessState>();
  readonly #timers = new Set<NodeJS.Timeout>();
  /** Checks waiting for a slot, oldest first. */
  readonly #queue: (() => void)[] = [];
  #running = 0;
  #closed = false;

  constructor(opts: AccessChecksOptions) {
    this.#o = opts;
  }

  /**
   * The last result for this resource's user, starting a check when there is none for the
   * current storage settings or a failed one is due again. Undefined until known.
   */
  result(key: string, user: User): AccessCheck | undefined {
    const { bucket, keyPrefix, roleArn, region, endpoint } = user.s3;
    const version = JSON.stringify([bucket, keyPrefix, roleArn, region, endpoint]);
    const now = (this.#o.now ?? Date.now)();
    const recheckMs = this.#o.recheckMs ?? DEFAULT_RECHECK_MS;
    let state = this.#states.get(key);
    if (state?.version !== version) {
      state = { version, checkedAt: 0, running: false };
      this.#states.set(key, state);
    }
    const due = !state.result || (!state.result.ok && now - state.checkedAt >= recheckMs);
    if (due && !state.running) this.#run(key, state, user, recheckMs);
    return state.result;
  }

  /** Forgets a resource that is gone. */
  forget(key: string): void {
    this.#states.delete(key);
  }

  /** Forgets resources that are gone. */
  retain(keys: ReadonlySet<string>): void {
    for (const key of this.#states.keys()) if (!keys.has(key)) this.#states.delete(key);
  }

  close(): void {
    this.#closed = true;
    this.#queue.length = 0;
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
  }

  #run(key: string, state: AccessState, user: User, recheckMs: number): void {
    state.running = true;
    this.#queue.push(() => this.#start(key, state, user, recheckMs));
    this.#next();
  }

  #next(): void {
    while (!this.#closed && this.#running < (this.#o.concurrency ?? 8)) {
      const start = this.#queue.shift();
      if (!start) return;
      start();
    }
  }

  #start(key: string, state: AccessState, user: User, recheckMs: number): void {
    if (this.#states.get(key) !== state) {
      // The resource is gone or its storage settings changed while this check waited.
      state.running = false;
      return;
    }
    this.#running++;
    this.#o
      .check(user)
      .catch((err: unknown): AccessCheck => ({ ok: false, reason: 'StorageError', message: `access check failed: ${(err as Error).message}` }))
      .then((result) => {
        this.#running--;
        this.#next();
        state.running = false;
        if (this.#closed) return;
        state.result = result;
        state.checkedAt = (this.#o.now ?? Date.now)();
        if (!result.ok) {
          this.#o.log.warn({ resource: key, reason: result.reason }, result.message);
          const timer = setTimeout(() => {
            this.#timers.delete(timer);
            this.#o.onResult(key);
          }, recheckMs + 10);
          timer.unref();
          this.#timers.add(timer);
        }
        this.#o.onResult(key);
      });
  }
}
