/**
 * A reverse proxy in front of the test S3 server that records, for every request, the SigV4 access
 * key id and the session token it carries. Swift still verifies each signature with the key's secret
 * (the Host header is passed through unchanged, so signatures stay valid); the record shows which
 * identity made which request, and the session token, which Swift's s3api ignores.
 */
import { startHttpProxy } from './proxy-core.ts';

export interface RecordedRequest {
  method: string;
  /** Path and query as sent, e.g. /bucket/users/alice/file.txt?x-id=PutObject. */
  path: string;
  /** From Credential= of the Authorization header; "" when unsigned. */
  accessKeyId: string;
  /** x-amz-security-token, when present. */
  sessionToken?: string;
  /** The upstream's answer (0 until it arrives). */
  status: number;
}

export interface S3Recorder {
  /** Give this to the server as its S3 endpoint. */
  endpoint: string;
  requests: RecordedRequest[];
  close(): Promise<void>;
}

/** Starts the recorder in front of `upstream` (the test S3 endpoint). */
export async function startS3Recorder(upstream: string): Promise<S3Recorder> {
  const requests: RecordedRequest[] = [];
  const proxy = await startHttpProxy({
    upstream,
    async handle(req, res, { forward, relay }) {
      const auth = req.headers.authorization ?? '';
      const token = req.headers['x-amz-security-token'];
      const record: RecordedRequest = {
        method: req.method ?? '',
        path: req.url ?? '',
        accessKeyId: /Credential=([^/]+)\//.exec(auth)?.[1] ?? '',
        ...(typeof token === 'string' ? { sessionToken: token } : {}),
        status: 0,
      };
      requests.push(record);
      const answer = await forward(req);
      record.status = answer.statusCode ?? 0;
      relay(answer, res);
    },
  });
  return { endpoint: proxy.endpoint, requests, close: proxy.close };
}
