/**
 * Retries on top of the SDK's own. The SDK retries throttling, 5xx and
 * connection errors a few times, but it does not put a time limit on a
 * request and it gives up on a part after its attempts. A part of a large
 * upload is worth a few more tries, each with its own deadline, before the
 * whole transfer is failed.
 */
import { setTimeout as sleepFor } from 'node:timers/promises';
import { errorCodeOf, httpStatusOf } from './errors.ts';
import { backoffDelay } from '../../backoff.ts';

const TRANSIENT_CODES = new Set([
  'AbortError', // our per-attempt deadline (the caller's own abort is checked first)
  'TimeoutError',
  'RequestTimeout',
  'RequestTimeTooSkewed',
  'SlowDown',
  'InternalError',
  'ServiceUnavailable',
  'ECONNRESET',
  'ECONNREFUSED',
  'EPIPE',
  'ETIMEDOUT',
  'EAI_AGAIN',
]);

/** True for failures another attempt may cure: 5xx, throttling, timeouts, dropped connections. */
export function isTransient(err: unknown): boolean {
  const status = httpStatusOf(err);
  // 501 Not Implemented is a permanent answer (Swift's conditional PUT, for one).
  if (status === 501) return false;
  if (status !== undefined && (status >= 500 || status === 429 || status === 408)) return true;
  if (TRANSIENT_CODES.has(errorCodeOf(err))) return true;
  // Socket errors surface without a status; S3 answered nothing we could judge.
  // A body cut short (fewer bytes than Content-Length) fails the read with a bare "aborted"
  // whose name "Error" hides its ECONNRESET code from errorCodeOf().
  if (status === undefined && (err as { code?: unknown })?.code === 'ECONNRESET') return true;
  return status === undefined && /socket hang up|ECONNRESET|EPIPE|^aborted$|premature close/i.test(String((err as Error)?.message));
}

export interface RetryOptions {
  /** Total attempts, including the first. */
  attempts: number;
  /** Deadline of one attempt in milliseconds. */
  timeoutMs: number;
  /** The caller's cancellation; never retried. */
  signal?: AbortSignal;
  /** Backoff before attempt n+1, in milliseconds. */
  backoffMs?: (attempt: number) => number;
  /** Called before each retry, for logs. */
  onRetry?: (err: unknown, attempt: number) => void;
}

const defaultBackoff = (attempt: number): number => backoffDelay(attempt, { minMs: 200, maxMs: 5_000 });

/** Runs `attempt` with a fresh deadline signal until it succeeds or fails for good. */
export async function withRetries<T>(
  attempt: (signal: AbortSignal) => Promise<T>,
  options: RetryOptions,
): Promise<T> {
  const backoff = options.backoffMs ?? defaultBackoff;
  for (let n = 1; ; n++) {
    const deadline = AbortSignal.timeout(options.timeoutMs);
    const signal = options.signal ? AbortSignal.any([options.signal, deadline]) : deadline;
    try {
      return await attempt(signal);
    } catch (err) {
      if (options.signal?.aborted) throw err;
      if (n >= options.attempts || !(deadline.aborted || isTransient(err))) {
        // An aborted body read surfaces as a bare "aborted" Error; name it for what it was.
        if (deadline.aborted) throw Object.assign(new Error('request deadline exceeded', { cause: err }), { name: 'TimeoutError' });
        throw err;
      }
      options.onRetry?.(err, n);
      await sleepFor(backoff(n), undefined, options.signal ? { signal: options.signal } : {});
    }
  }
}

/** Deadline for one request moving `bytes`: a fixed allowance plus a per-MiB one. */
export function deadlineFor(
  configuredMs: number,
  bytes: number,
  baseMs: number,
  perMiBMs: number,
): number {
  if (configuredMs > 0) return configuredMs;
  return baseMs + Math.ceil(bytes / 1024 ** 2) * perMiBMs;
}
