/**
 * Limits on connections, counted per source address and per user:
 * connections that have not authenticated yet (server-wide and per source),
 * a login grace time after which an unauthenticated connection is closed
 * (OpenSSH's LoginGraceTime), and authenticated connections per user and per
 * source. The SSH layer asks at the socket (before the SSH handshake, so a
 * silent or banner-only client counts too) and at authentication. Timers are
 * injectable so tests control time.
 */
import { normalizeAddress } from './cidr.ts';

/** Why a connection was refused or closed. */
export type LimitReason =
  | 'unauthenticated-total'
  | 'unauthenticated-per-source'
  | 'connections-per-user'
  | 'connections-per-source'
  | 'login-grace-time';

export interface ConnectionLimitsOptions {
  /** 0: no grace time. */
  loginGraceTimeMs: number;
  maxUnauthenticated: number;
  maxUnauthenticatedPerSource: number;
  /** 0: no limit. */
  maxConnectionsPerUser: number;
  /** 0: no limit. */
  maxConnectionsPerSource: number;
  setTimer?: (fn: () => void, ms: number) => unknown;
  clearTimer?: (timer: unknown) => void;
}

/** One admitted connection; call authenticated() once it logs in and closed() when it ends. */
export interface Ticket {
  readonly ip: string;
  /** Counts the connection as the user's; a reason if that would pass a limit (the connection must then end). */
  authenticated(username: string): LimitReason | undefined;
  closed(): void;
}

export class ConnectionLimits {
  readonly #opts: ConnectionLimitsOptions;
  readonly #setTimer: (fn: () => void, ms: number) => unknown;
  readonly #clearTimer: (timer: unknown) => void;
  #unauthenticated = 0;
  readonly #unauthPerSource = new Map<string, number>();
  readonly #perSource = new Map<string, number>();
  readonly #perUser = new Map<string, number>();

  constructor(opts: ConnectionLimitsOptions) {
    this.#opts = opts;
    this.#setTimer =
      opts.setTimer ??
      ((fn, ms) => {
        const t = setTimeout(fn, ms);
        t.unref();
        return t;
      });
    this.#clearTimer = opts.clearTimer ?? ((t) => clearTimeout(t as NodeJS.Timeout));
  }

  /** Connections not yet authenticated, server-wide. */
  get unauthenticated(): number {
    return this.#unauthenticated;
  }

  /**
   * A new connection from `ip`: a ticket, or the limit it would pass. `onGraceExpired` is called
   * (once) if it has not authenticated within the login grace time.
   */
  admit(rawIp: string, onGraceExpired: () => void): Ticket | LimitReason {
    const ip = normalizeAddress(rawIp);
    if (this.#unauthenticated >= this.#opts.maxUnauthenticated) return 'unauthenticated-total';
    if ((this.#unauthPerSource.get(ip) ?? 0) >= this.#opts.maxUnauthenticatedPerSource) return 'unauthenticated-per-source';
    this.#unauthenticated++;
    inc(this.#unauthPerSource, ip, 1);
    let state: 'unauthenticated' | 'authenticated' | 'closed' = 'unauthenticated';
    let username = '';
    const timer = this.#opts.loginGraceTimeMs > 0 ? this.#setTimer(() => state === 'unauthenticated' && onGraceExpired(), this.#opts.loginGraceTimeMs) : undefined;
    const leaveUnauthenticated = () => {
      if (timer !== undefined) this.#clearTimer(timer);
      this.#unauthenticated--;
      inc(this.#unauthPerSource, ip, -1);
    };
    return {
      ip,
      authenticated: (user) => {
        if (state !== 'unauthenticated') return undefined;
        const { maxConnectionsPerUser: perUser, maxConnectionsPerSource: perSource } = this.#opts;
        if (perUser > 0 && (this.#perUser.get(user) ?? 0) >= perUser) return 'connections-per-user';
        if (perSource > 0 && (this.#perSource.get(ip) ?? 0) >= perSource) return 'connections-per-source';
        leaveUnauthenticated();
        state = 'authenticated';
        username = user;
        inc(this.#perUser, user, 1);
        inc(this.#perSource, ip, 1);
        return undefined;
      },
      closed: () => {
        if (state === 'unauthenticated') leaveUnauthenticated();
        else if (state === 'authenticated') {
          inc(this.#perUser, username, -1);
          inc(this.#perSource, ip, -1);
        }
        state = 'closed';
      },
    };
  }
}

/** Adds `by` to a counter, deleting it at zero so the maps stay as small as the live connections. */
function inc(map: Map<string, number>, key: string, by: number): void {
  const n = (map.get(key) ?? 0) + by;
  if (n <= 0) map.delete(key);
  else map.set(key, n);
}
