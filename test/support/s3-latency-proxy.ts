/**
 * An HTTP proxy in front of the test S3 server that makes it behave like a distant one: every request
 * waits `delayMs` before its first byte goes upstream (a same-region S3 round trip is 20–50 ms, loopback
 * Swift well under 1 ms), and every request is counted by its S3 operation. Host and headers pass
 * through unchanged, so SigV4 signatures stay valid. Tests assert exact request counts per SFTP
 * operation with it; the benchmark measures what sequential requests cost.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { startHttpProxy } from './proxy-core.ts';

export interface CountedRequest {
  kind: S3RequestKind;
  method: string;
  path: string;
  status: number;
  /** When it arrived and when its answer's headers came back (ms, Date.now); answeredAt 0 until then. */
  arrivedAt: number;
  answeredAt: number;
}

export type S3RequestKind =
  | 'HeadBucket'
  | 'HeadObject'
  | 'GetObject'
  | 'ListObjectsV2'
  | 'ListObjects'
  | 'ListMultipartUploads'
  | 'ListParts'
  | 'GetBucketConfig'
  | 'PutObject'
  | 'CopyObject'
  | 'UploadPart'
  | 'UploadPartCopy'
  | 'CreateBucket'
  | 'PutBucketConfig'
  | 'CreateMultipartUpload'
  | 'CompleteMultipartUpload'
  | 'DeleteObjects'
  | 'DeleteObject'
  | 'AbortMultipartUpload'
  | 'DeleteBucket'
  | 'Other';

/** Bucket sub-resources that mean "bucket configuration", not objects (GET/PUT ?acl, ?versioning...). */
const BUCKET_CONFIG = ['acl', 'versioning', 'location', 'policy', 'cors', 'lifecycle', 'tagging', 'encryption', 'object-lock'];

/**
 * The S3 operation of a path-style request, from its method, path, query and the copy-source header.
 * The SDK's ?x-id= hint is not trusted: it is absent on some operations and other clients never send it.
 */
export function classifyS3Request(method: string, target: string, headers: IncomingHttpHeaders = {}): S3RequestKind {
  const url = new URL(target, 'http://s3.invalid');
  const q = url.searchParams;
  const segments = url.pathname.split('/').filter((s) => s !== '');
  const onBucket = segments.length <= 1;
  const copy = headers['x-amz-copy-source'] !== undefined;
  const config = BUCKET_CONFIG.some((k) => q.has(k));
  switch (method.toUpperCase()) {
    case 'HEAD':
      return onBucket ? 'HeadBucket' : 'HeadObject';
    case 'GET':
      if (onBucket) {
        if (q.get('list-type') === '2') return 'ListObjectsV2';
        if (q.has('uploads')) return 'ListMultipartUploads';
        if (config) return 'GetBucketConfig';
        return 'ListObjects';
      }
      if (q.has('uploadId')) return 'ListParts';
      return 'GetObject';
    case 'PUT':
      if (onBucket) return config ? 'PutBucketConfig' : 'CreateBucket';
      if (q.has('partNumber') && q.has('uploadId')) return copy ? 'UploadPartCopy' : 'UploadPart';
      return copy ? 'CopyObject' : 'PutObject';
    case 'POST':
      if (q.has('delete')) return 'DeleteObjects';
      if (q.has('uploads')) return 'CreateMultipartUpload';
      if (q.has('uploadId')) return 'CompleteMultipartUpload';
      return 'Other';
    case 'DELETE':
      if (onBucket) return 'DeleteBucket';
      return q.has('uploadId') ? 'AbortMultipartUpload' : 'DeleteObject';
    default:
      return 'Other';
  }
}

/** Requests by kind, e.g. { HeadObject: 2, PutObject: 1 }; kinds with no request are left out. */
export function countByKind(requests: readonly CountedRequest[]): Partial<Record<S3RequestKind, number>> {
  const counts: Partial<Record<S3RequestKind, number>> = {};
  for (const r of requests) counts[r.kind] = (counts[r.kind] ?? 0) + 1;
  return counts;
}

/** "HeadObject 2, PutObject 1" (sorted by name), or "none". */
export function formatCounts(counts: Partial<Record<S3RequestKind, number>>): string {
  const entries = Object.entries(counts).sort(([a], [b]) => a.localeCompare(b));
  return entries.length === 0 ? 'none' : entries.map(([k, n]) => `${k} ${n}`).join(', ');
}

export interface S3LatencyProxy {
  /** Give this to the server as its S3 endpoint. */
  endpoint: string;
  /** Every request so far, in arrival order. */
  readonly requests: readonly CountedRequest[];
  /** Changes the delay for requests that arrive from now on. */
  setDelay(ms: number): void;
  /** The requests that arrived since `mark` (a length of `requests` taken earlier). */
  since(mark: number): CountedRequest[];
  close(): Promise<void>;
}

/** Starts the proxy in front of `upstream` (the test S3 endpoint); 20 ms per request unless `delayMs` says. */
export async function startS3LatencyProxy(upstream: string, opts: { delayMs?: number } = {}): Promise<S3LatencyProxy> {
  const requests: CountedRequest[] = [];
  let delayMs = opts.delayMs ?? 20;
  const proxy = await startHttpProxy({
    upstream,
    // Clients keep idle sockets for reuse; hold them 30 s rather than Node's 5 s.
    keepAliveTimeoutMs: 30_000,
    async handle(req, res, { forward, relay, signal }) {
      const record: CountedRequest = {
        kind: classifyS3Request(req.method ?? '', req.url ?? '/', req.headers),
        method: req.method ?? '',
        path: req.url ?? '',
        status: 0,
        arrivedAt: Date.now(),
        answeredAt: 0,
      };
      requests.push(record);
      if (delayMs > 0) await sleep(delayMs, undefined, { signal });
      const answer = await forward(req);
      record.status = answer.statusCode ?? 0;
      record.answeredAt = Date.now();
      relay(answer, res);
    },
  });
  return {
    endpoint: proxy.endpoint,
    requests,
    setDelay(ms) {
      delayMs = ms;
    },
    since: (mark) => requests.slice(mark),
    close: proxy.close,
  };
}
