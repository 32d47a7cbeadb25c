/**
 * Counts and times every HTTP request the S3 client makes, as an AWS SDK
 * middleware: storage code stays free of metrics calls, and requests from
 * anywhere (uploads, listings, the janitor, the start-up bucket check) are seen.
 */
import type { S3Client } from '@aws-sdk/client-s3';
import type { Outcome } from './metrics.ts';

/** Receives one finished request; outcome undefined: cancelled by us, not S3's doing. */
export type S3RequestRecorder = (operation: string, outcome: Outcome | undefined, seconds: number) => void;

const MIDDLEWARE_NAME = 's3sftpRequestMetrics';

/**
 * Adds the metrics middleware to `client`. It sits after the SDK's retry
 * middleware, so each attempt is one request, as S3 sees (and bills) it.
 */
export function instrumentS3Client(client: S3Client, record: S3RequestRecorder): void {
  client.middlewareStack.add(
    (next, context) => async (args) => {
      // Command names come from the SDK ("PutObjectCommand"): a bounded set.
      const operation = (context.commandName ?? 'unknown').replace(/Command$/, '');
      const started = performance.now();
      const seconds = () => (performance.now() - started) / 1000;
      try {
        const out = await next(args);
        record(operation, 'success', seconds());
        return out;
      } catch (err) {
        record(operation, requestOutcome(err), seconds());
        throw err;
      }
    },
    { step: 'finalizeRequest', priority: 'low', name: MIDDLEWARE_NAME, override: true },
  );
}

/**
 * The outcome of a request that threw. S3 answering "no such key" (404),
 * "precondition failed" (412, an exclusive create losing), "not modified" or
 * "range not satisfiable" (416, the first ranged GET of an empty object) is
 * S3 working as asked: a success. A request we cancelled (the client went
 * away, the upload was aborted) is nobody's failure: undefined. Our own
 * deadline running out is a failure, like any other error status or a
 * dropped connection.
 */
export function requestOutcome(err: unknown): Outcome | undefined {
  const e = err as { name?: unknown; cause?: { name?: unknown }; $metadata?: { httpStatusCode?: unknown } } | null;
  const status = e?.$metadata?.httpStatusCode;
  if (status === 404 || status === 412 || status === 304 || status === 416) return 'success';
  if (typeof status !== 'number' && e?.name === 'AbortError' && e.cause?.name !== 'TimeoutError') return undefined;
  return 'failure';
}
