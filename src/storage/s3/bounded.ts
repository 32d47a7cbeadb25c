/** Bounded parallelism for per-object S3 work (copies and deletes in directory renames). */

/**
 * Runs `task` for every item with at most `limit` running at once. On the first
 * failure no new task starts; running ones finish, then the first error is thrown.
 */
export async function forEachBounded<T>(
  items: Iterable<T>,
  limit: number,
  task: (item: T) => Promise<void>,
): Promise<void> {
  const iterator = items[Symbol.iterator]();
  let failure: { err: unknown } | undefined;
  const worker = async (): Promise<void> => {
    while (!failure) {
      const next = iterator.next();
      if (next.done) return;
      try {
        await task(next.value);
      } catch (err) {
        failure ??= { err };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, limit) }, worker));
  if (failure) throw failure.err;
}
