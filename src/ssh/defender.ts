/**
 * Scores misbehaviour per source address and bans sources whose score within
 * the observation time reaches the threshold, as SFTPGo's defender does.
 * Trusted CIDRs are never scored. Time comes from an injected clock so tests
 * can move it; memory is bounded by dropping the oldest tracked sources.
 */
import { CidrSet, normalizeAddress } from './cidr.ts';

/** Why a source is scored; the weight of each is in SCORES. */
export type Offence = 'login-failed' | 'limit-exceeded' | 'grace-time' | 'protocol-error';

const SCORES: Record<Offence, number> = {
  'login-failed': 1,
  'limit-exceeded': 3,
  'grace-time': 3,
  'protocol-error': 3,
};

/** Sources tracked at once; beyond this the least recently scored are forgotten. */
const MAX_TRACKED = 100_000;

export interface DefenderOptions {
  enabled: boolean;
  threshold: number;
  observationTimeMs: number;
  banTimeMs: number;
  trustedCIDRs: readonly string[];
  /** Milliseconds since the epoch; Date.now unless a test controls time. */
  now?: () => number;
  /** Called once per ban (for the audit log and metrics). */
  onBan?: (ban: { ip: string; score: number; until: number; offence: Offence }) => void;
}

interface Record_ {
  events: { at: number; score: number }[];
  bannedUntil: number;
}

export class Defender {
  readonly #opts: DefenderOptions;
  readonly #trusted: CidrSet;
  readonly #now: () => number;
  readonly #sources = new Map<string, Record_>();

  constructor(opts: DefenderOptions) {
    this.#opts = opts;
    this.#trusted = new CidrSet(opts.trustedCIDRs);
    this.#now = opts.now ?? Date.now;
  }

  isTrusted(ip: string): boolean {
    return this.#trusted.has(ip);
  }

  /** True while `ip` is banned. */
  isBanned(ip: string): boolean {
    if (!this.#opts.enabled) return false;
    const rec = this.#sources.get(normalizeAddress(ip));
    return rec !== undefined && rec.bannedUntil > this.#now();
  }

  /** Sources banned now, for the gauge. */
  bannedCount(): number {
    const now = this.#now();
    let n = 0;
    for (const rec of this.#sources.values()) if (rec.bannedUntil > now) n++;
    return n;
  }

  /** The source's current score within the observation time. */
  score(ip: string): number {
    const rec = this.#sources.get(normalizeAddress(ip));
    if (!rec) return 0;
    const since = this.#now() - this.#opts.observationTimeMs;
    return rec.events.reduce((sum, e) => (e.at > since ? sum + e.score : sum), 0);
  }

  /** Adds an offence; bans the source when its score reaches the threshold. Returns true if this banned it. */
  record(ip: string, offence: Offence): boolean {
    if (!this.#opts.enabled || this.isTrusted(ip)) return false;
    const address = normalizeAddress(ip);
    const now = this.#now();
    let rec = this.#sources.get(address);
    if (rec) this.#sources.delete(address); // re-insert: Map order is least recently scored first
    rec ??= { events: [], bannedUntil: 0 };
    this.#sources.set(address, rec);
    const since = now - this.#opts.observationTimeMs;
    rec.events = rec.events.filter((e) => e.at > since);
    rec.events.push({ at: now, score: SCORES[offence] });
    this.#trim();
    if (rec.bannedUntil > now) return false;
    const score = rec.events.reduce((sum, e) => sum + e.score, 0);
    if (score < this.#opts.threshold) return false;
    rec.bannedUntil = now + this.#opts.banTimeMs;
    // A fresh start once the ban ends.
    rec.events = [];
    this.#opts.onBan?.({ ip: address, score, until: rec.bannedUntil, offence });
    return true;
  }

  #trim(): void {
    while (this.#sources.size > MAX_TRACKED) {
      const oldest = this.#sources.keys().next();
      if (oldest.done) return;
      this.#sources.delete(oldest.value);
    }
  }
}
