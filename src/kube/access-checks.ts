/**
 * The access checks behind the SftpUsers' Ready condition: one check per resource and storage
 * settings, repeated every `recheckMs` while it fails, so a fixed trust policy or bucket shows
 * as Ready without an edit of the resource. Results arrive asynchronously; `onResult` asks the
 * controller for another rebuild.
 */
import type { AccessCheck } from '../users/access.ts';
import type { User } from '../users/user.ts';
import type { InformerLogger } from './informer.ts';

const DEFAULT_RECHECK_MS = 5 * 60_000;

export interface AccessChecksOptions {
  check: (user: User) => Promise<AccessCheck>;
  /** Called when a result arrives or a failed check is due again. */
  onResult: () => void;
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

  /** Forgets resources that are gone. */
  retain(keys: ReadonlySet<string>): void {
    for (const key of this.#states.keys()) if (!keys.has(key)) this.#states.delete(key);
  }

  close(): void {
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
  }

  #run(key: string, state: AccessState, user: User, recheckMs: number): void {
    state.running = true;
    this.#o
      .check(user)
      .catch((err: unknown): AccessCheck => ({ ok: false, reason: 'StorageError', message: `access check failed: ${(err as Error).message}` }))
      .then((result) => {
        state.running = false;
        state.result = result;
        state.checkedAt = (this.#o.now ?? Date.now)();
        if (!result.ok) {
          this.#o.log.warn({ resource: key, reason: result.reason }, result.message);
          const timer = setTimeout(() => {
            this.#timers.delete(timer);
            this.#o.onResult();
          }, recheckMs + 10);
          timer.unref();
          this.#timers.add(timer);
        }
        this.#o.onResult();
      });
  }
}
