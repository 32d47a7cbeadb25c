/**
 * Password verification that costs the same whatever the outcome, on a
 * bounded pool.
 *
 * Same cost: an unknown user, a disabled one and one without a password are
 * checked against a dummy hash made with the same algorithm and parameters as
 * the real hashes (the most common parameters among the loaded users), so the
 * answer takes as long as a wrong password for an existing user and timing
 * does not tell who exists.
 *
 * Bounded pool: argon2 runs on libuv's thread pool and bcrypt on worker
 * threads (bcrypt-pool.ts, as many as `concurrency`); a password spray that
 * verifies every guess at once starves everything else. At most `concurrency` verifications run at once, at most
 * `queueLimit` wait; beyond that an attempt fails at once without hashing
 * (reported as `busy`), which the caller treats as a failed login. Waiting
 * attempts are served round-robin by source address, so one address that
 * sprays guesses over many connections delays a login from elsewhere by about
 * one verification, not by its whole queue.
 */
import { randomBytes } from 'node:crypto';
import * as argon2 from 'argon2';
import { BcryptPool } from './bcrypt-pool.ts';
import { passwordHashAlgorithm, verifyPassword } from './password.ts';

/** The outcome of one password check. */
export type VerifyOutcome = 'ok' | 'wrong' | 'busy';

/** What a password check is about: the user's hash, or undefined for "no usable hash" (unknown, disabled, none). */
export interface VerifyRequest {
  password: string;
  /** The hash to check; undefined runs the dummy and answers 'wrong'. */
  hash: string | undefined;
  /** False for a disabled user: its own hash is checked (same cost) but the answer is 'wrong'. */
  usable?: boolean;
  /** Who asks (the source address): waiting attempts are served round-robin by source. */
  source?: string;
  /** Aborted when the client goes away: a waiting attempt leaves the queue without hashing. */
  signal?: AbortSignal;
}

export interface PasswordVerifierOptions {
  concurrency: number;
  queueLimit: number;
  /** The hashes of the loaded users, to pick the dummy's parameters from. */
  knownHashes: () => Iterable<string>;
  /** Injected for tests; the real one is verifyPassword. */
  verify?: (plain: string, hash: string) => Promise<boolean>;
  /** Injected for tests; makes a hash with the parameters of `like`. */
  makeDummy?: (like: string) => Promise<string>;
  /** Where bcrypt runs; by default a pool of `concurrency` workers owned (and closed) by the verifier. */
  bcrypt?: BcryptPool;
}

/** Where the parameters end: "$2b$12$" for bcrypt, "$argon2id$v=19$m=65536,t=3,p=4$" for argon2id. */
export function hashParameters(hash: string): string | undefined {
  switch (passwordHashAlgorithm(hash)) {
    case 'bcrypt':
      return hash.slice(0, 7);
    case 'argon2id':
      return hash.slice(0, hash.lastIndexOf('$', hash.lastIndexOf('$') - 1) + 1);
    default:
      return undefined;
  }
}

/** The parameters new hashes get from `s3sftp hash-password` (argon2id defaults), used when no user has a hash. */
const FALLBACK_PARAMETERS = '$argon2id$v=19$m=65536,t=3,p=4$';

/** Makes a hash of a random secret with the same algorithm and parameters as `params` (from hashParameters). */
async function dummyLike(params: string, pool: BcryptPool): Promise<string> {
  const secret = randomBytes(24).toString('base64');
  if (params.startsWith('$2')) {
    const cost = Number(params.slice(4, 6));
    // Keep the variant ($2a$/$2b$/$2y$): bcryptjs writes $2b$, and all three cost the same.
    return params.slice(0, 4) + (await pool.hash(secret, cost)).slice(4);
  }
  const m = /m=(\d+)/.exec(params)?.[1];
  const t = /t=(\d+)/.exec(params)?.[1];
  const p = /p=(\d+)/.exec(params)?.[1];
  return argon2.hash(secret, {
    type: argon2.argon2id,
    ...(m ? { memoryCost: Number(m) } : {}),
    ...(t ? { timeCost: Number(t) } : {}),
    ...(p ? { parallelism: Number(p) } : {}),
  });
}

interface Waiter {
  start(): void;
}

/** A bounded pool of password verifications with a dummy for every "no hash" case. */
export class PasswordVerifier {
  readonly #opts: PasswordVerifierOptions;
  readonly #verify: (plain: string, hash: string) => Promise<boolean>;
  readonly #makeDummy: (like: string) => Promise<string>;
  readonly #dummies = new Map<string, Promise<string>>();
  /** Waiting attempts per source, in round-robin order (Map order: the next source to serve first). */
  readonly #waiting = new Map<string, Waiter[]>();
  #queued = 0;
  #running = 0;
  #commonParams: string | undefined;
  readonly #bcrypt: BcryptPool;
  readonly #ownsBcrypt: boolean;

  constructor(opts: PasswordVerifierOptions) {
    this.#opts = opts;
    this.#ownsBcrypt = opts.bcrypt === undefined;
    const pool = (this.#bcrypt = opts.bcrypt ?? new BcryptPool({ size: opts.concurrency }));
    this.#verify =
      opts.verify ?? ((plain, hash) => (passwordHashAlgorithm(hash) === 'bcrypt' ? pool.compare(plain, hash) : verifyPassword(plain, hash)));
    this.#makeDummy = opts.makeDummy ?? ((like) => dummyLike(like, pool));
  }

  /** Stops the bcrypt workers (the server is closing); later bcrypt checks answer 'wrong'. */
  async close(): Promise<void> {
    if (this.#ownsBcrypt) await this.#bcrypt.close();
  }

  /** Verifications running now and waiting now, for metrics. */
  get load(): { running: number; queued: number } {
    return { running: this.#running, queued: this.#queued };
  }

  /** Forget the cached common parameters (call when users change); dummies are kept. */
  usersChanged(): void {
    this.#commonParams = undefined;
  }

  /** Makes the dummy for the current users now, so the first unknown-user login does not pay for it. */
  async warm(): Promise<void> {
    await this.#dummy();
  }

  async check(req: VerifyRequest): Promise<VerifyOutcome> {
    const source = req.source ?? '';
    if (this.#full(source)) return 'busy';
    const hash = req.hash !== undefined && hashParameters(req.hash) !== undefined ? req.hash : await this.#dummy();
    if (!(await this.#slot(source, req.signal))) return 'wrong';
    try {
      const ok = await this.#verify(req.password, hash);
      return ok && hash === req.hash && req.usable !== false ? 'ok' : 'wrong';
    } finally {
      this.#release();
    }
  }

  /**
   * No room to wait: the queue is full, or this source already has a quarter of it, so that one
   * address spraying guesses cannot fill the queue and make everybody else's login 'busy'.
   */
  #full(source: string): boolean {
    if (this.#running < this.#opts.concurrency) return false;
    const perSource = Math.max(1, Math.floor(this.#opts.queueLimit / 4));
    return this.#queued >= this.#opts.queueLimit || (this.#waiting.get(source)?.length ?? 0) >= perSource;
  }

  /** Resolves true with a slot, or false when `signal` aborted while waiting (the slot is not taken). */
  #slot(source: string, signal: AbortSignal | undefined): Promise<boolean> {
    if (signal?.aborted) return Promise.resolve(false);
    if (this.#running < this.#opts.concurrency) {
      this.#running++;
      return Promise.resolve(true);
    }
    return new Promise((resolve) => {
      const waiter: Waiter = { start: () => resolve(true) };
      const queue = this.#waiting.get(source);
      if (queue) queue.push(waiter);
      else this.#waiting.set(source, [waiter]);
      this.#queued++;
      signal?.addEventListener(
        'abort',
        () => {
          const q = this.#waiting.get(source);
          const at = q?.indexOf(waiter) ?? -1;
          if (!q || at < 0) return; // already started
          q.splice(at, 1);
          if (q.length === 0) this.#waiting.delete(source);
          this.#queued--;
          resolve(false);
        },
        { once: true },
      );
    });
  }

  #release(): void {
    const first = this.#waiting.entries().next();
    if (first.done) {
      this.#running--;
      return;
    }
    const [source, queue] = first.value;
    const next = queue.shift();
    // This source goes to the back of the round.
    this.#waiting.delete(source);
    if (queue.length > 0) this.#waiting.set(source, queue);
    this.#queued--;
    // The slot passes straight to the next waiter: #running stays the same.
    next?.start();
  }

  /** The dummy hash with the parameters most users have. */
  #dummy(): Promise<string> {
    this.#commonParams ??= mostCommonParameters(this.#opts.knownHashes()) ?? FALLBACK_PARAMETERS;
    const params = this.#commonParams;
    let dummy = this.#dummies.get(params);
    if (!dummy) {
      dummy = this.#makeDummy(params);
      // A failed dummy must not stick; the next login makes it again.
      dummy.catch(() => this.#dummies.delete(params));
      this.#dummies.set(params, dummy);
    }
    return dummy;
  }
}

function mostCommonParameters(hashes: Iterable<string>): string | undefined {
  const counts = new Map<string, number>();
  for (const h of hashes) {
    const p = hashParameters(h);
    if (p) counts.set(p, (counts.get(p) ?? 0) + 1);
  }
  let best: string | undefined;
  let bestCount = 0;
  for (const [p, n] of counts) {
    if (n > bestCount) [best, bestCount] = [p, n];
  }
  return best;
}
