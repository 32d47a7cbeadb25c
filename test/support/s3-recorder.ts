/**
 * A reverse proxy in front of the test S3 server that records, for every request, the SigV4 access
 * key id and the session token it carries. Swift still verifies each signature with the key's secret
 * (the Host header is passed through unchanged, so signatures stay valid); the record shows which
 * identity made which request, and the session token, which Swift's s3api ignores.
 */
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

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

export async function startS3Recorder(upstream: string): Promise<S3Recorder> {
  const target = new URL(upstream);
  const requests: RecordedRequest[] = [];
  const server: Server = createServer((req, res) => {
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
    const forward = request(
      { host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers },
      (answer) => {
        record.status = answer.statusCode ?? 0;
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    forward.on('error', () => res.destroy());
    req.on('error', () => forward.destroy());
    req.pipe(forward);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  return {
    endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests,
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
