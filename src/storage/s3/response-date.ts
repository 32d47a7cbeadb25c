/**
 * S3's clock, read off a response's `Date` header. What S3 dates (an object's LastModified) is
 * compared with S3's time, not the pod's: a pod clock a few seconds off would otherwise shift
 * every comparison (listing-index.ts, mtime-cache.ts).
 */

interface WithMiddleware {
  middlewareStack: { add: (middleware: never, options: { step: 'deserialize'; name: string }) => void };
}

/** Adds a middleware to one command that keeps its response's Date; read it after `send`. */
export function keepResponseDate(command: WithMiddleware): () => Date | undefined {
  let date: Date | undefined;
  const middleware =
    (next: (args: unknown) => Promise<{ response: unknown }>) =>
    async (args: unknown): Promise<{ response: unknown }> => {
      const result = await next(args);
      const header = (result.response as { headers?: Record<string, string> }).headers?.date;
      const parsed = header ? new Date(header) : undefined;
      if (parsed && !Number.isNaN(parsed.getTime())) date = parsed;
      return result;
    };
  command.middlewareStack.add(middleware as never, { step: 'deserialize', name: 'responseDate' });
  return () => date;
}
