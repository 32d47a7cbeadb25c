/**
 * Retries in the background, for clean-up nobody waits on. When S3 is down
 * for longer than a request's own retries last, an AbortMultipartUpload that
 * failed would otherwise wait for the janitor (an hour or more) while its
 * parts stay billed. A bounded schedule with exponential backoff and jitter
 * outlasts a typical outage without hammering a store that is struggling.
 */

export interface RetryLaterOptions {
  /** Background attempts after the first failure. */
  attempts: number;
  /** Delay before background attempt n (1-based), before jitter. */
  delayMs: (attempt: number) => number;
  /** 0..1; tests pass a fixed source. */
  random?: () => number;
  /** Called after each failed attempt, with whether another one is scheduled. */
  onFailure?: (err: unknown, attempt: number, willRetry: boolean) => void;
  onSuccess?: (attempt: number) => void;
}

/** Exponential from 5 s, capped at 5 min: 8 attempts span about 15 minutes. */
export const LATER_ABORT: Pick<RetryLaterOptions, 'attempts' | 'delayMs'> = {
  attempts: 8,
  delayMs: (attempt) => Math.min(5_000 * 2 ** (attempt - 1), 300_000),
};

/**
 * Schedules `task` until it succeeds or the attempts run out. Timers are
 * unref'd: a process shutting down does not wait for them (the janitor is the
 * backstop). Returns a function that cancels the remaining attempts.
 */
export function retryLater(task: () => Promise<unknown>, options: RetryLaterOptions): () => void {
  const random = options.random ?? Math.random;
  let timer: NodeJS.Timeout | undefined;
  let cancelled = false;
  const schedule = (attempt: number): void => {
    // "Equal jitter": half fixed, half random, so replicas that failed together spread out.
    const base = options.delayMs(attempt);
    const delay = base / 2 + random() * (base / 2);
    timer = setTimeout(() => {
      if (cancelled) return;
      task().then(
        () => options.onSuccess?.(attempt),
        (err: unknown) => {
          const willRetry = attempt < options.attempts && !cancelled;
          options.onFailure?.(err, attempt, willRetry);
          if (willRetry) schedule(attempt + 1);
        },
      );
    }, delay);
    timer.unref();
  };
  if (options.attempts > 0) schedule(1);
  return () => {
    cancelled = true;
    if (timer) clearTimeout(timer);
  };
}
