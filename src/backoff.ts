/**
 * The one exponential back-off of the server: Kubernetes watch restarts, status writes, STS
 * failures and S3 request retries all wait `min · 2^(n-1)`, capped at `max`, minus a random
 * share (`jitter`) so that replicas which failed together do not retry together. The delay
 * never exceeds the documented value; `random` is injectable so tests see exact numbers.
 */

/** How a back-off grows. */
export interface BackoffPolicy {
  /** Delay after the first failure. */
  minMs: number;
  /** Upper bound of any delay. */
  maxMs: number;
  /** Share of the delay that may be taken off at random, 0 to 1. Default 0.2. */
  jitter?: number;
  /** Returns a number in [0, 1); default Math.random. */
  random?: () => number;
}

/** The delay before retry number `attempt` (1 for the first retry). Pure apart from `random`. */
export function backoffDelay(attempt: number, policy: BackoffPolicy): number {
  const { minMs, maxMs, jitter = 0.2, random = Math.random } = policy;
  const exponent = Math.max(0, Math.min(attempt - 1, 52));
  const base = Math.min(minMs * 2 ** exponent, maxMs);
  return Math.round(base * (1 - Math.min(Math.max(jitter, 0), 1) * random()));
}

/** A back-off with state: next() after each failure, reset() after a success. */
export class Backoff {
  readonly #policy: BackoffPolicy;
  #failures = 0;

  constructor(policy: BackoffPolicy) {
    this.#policy = policy;
  }

  /** The delay to wait after one more failure. */
  next(): number {
    this.#failures++;
    return backoffDelay(this.#failures, this.#policy);
  }

  /** Failures since the last reset(). */
  get failures(): number {
    return this.#failures;
  }

  reset(): void {
    this.#failures = 0;
  }
}
