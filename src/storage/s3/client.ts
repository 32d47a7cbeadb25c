/**
 * Builds S3Clients (the server's come from ClientPool in client-pool.ts, one per role, region and
 * endpoint) and checks the bucket at startup.
 */
import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import { HeadBucketCommand, S3Client, type S3ClientConfig } from '@aws-sdk/client-s3';
import type { S3Config } from '../../config/types.ts';
import { baseCredentials, CredentialsError } from './credentials.ts';
import { errorCodeOf, httpStatusOf } from './errors.ts';

// Every SFTP session shares these sockets; they must cover several sessions
// transferring at once, not just one session's parts.
const SESSIONS_PER_SOCKET_POOL = 8;
const MIN_SOCKETS = 64;

/** HTTP agents and timeouts for `requestHandler`; clients given the same object share its sockets. */
export function httpHandlerOptions(cfg: S3Config) {
  const maxSockets = Math.max(
    MIN_SOCKETS,
    (cfg.upload.concurrency + cfg.download.concurrency) * SESSIONS_PER_SOCKET_POOL,
  );
  const agentOptions = { keepAlive: true, maxSockets, maxFreeSockets: Math.min(maxSockets, 256) };
  return {
    httpAgent: new HttpAgent(agentOptions),
    httpsAgent: new HttpsAgent(agentOptions),
    // Connecting should be quick; whole-request deadlines come from each
    // caller's abortSignal, sized to the bytes it moves.
    connectionTimeout: 10_000,
  };
}

/**
 * An S3Client for `cfg`'s region and endpoint. Credentials: `overrides.credentials`, else
 * baseCredentials() (static keys, or the SDK's default chain: env, web identity / IRSA, ECS and
 * Pod Identity, IMDS); roles (s3.credentials.roleArn) are applied by ClientPool, not here.
 * `overrides` is merged last (tests use it to tweak retries).
 */
export function createS3Client(cfg: S3Config, overrides: Partial<S3ClientConfig> = {}): S3Client {
  const checksum = cfg.requestChecksum === 'when_required' ? 'WHEN_REQUIRED' : 'WHEN_SUPPORTED';
  return new S3Client({
    region: cfg.region || 'us-east-1',
    ...(cfg.endpoint ? { endpoint: cfg.endpoint } : {}),
    forcePathStyle: cfg.forcePathStyle,
    credentials: overrides.credentials ?? baseCredentials(cfg.credentials),
    requestChecksumCalculation: checksum,
    responseChecksumValidation: checksum,
    // The SDK's "standard" mode retries throttling, 5xx and dropped connections
    // with backoff; the upload pipeline adds its own per-part attempts on top.
    retryMode: 'standard',
    maxAttempts: 4,
    requestHandler: overrides.requestHandler ?? httpHandlerOptions(cfg),
    ...overrides,
  });
}

/**
 * Verifies that `bucket` exists and that the credentials may use it. Throws an
 * Error whose message is fit for an operator at startup; the SDK error is its cause.
 */
export async function checkBucket(client: S3Client, bucket: string, timeoutMs = 30_000): Promise<void> {
  try {
    await client.send(new HeadBucketCommand({ Bucket: bucket }), {
      abortSignal: AbortSignal.timeout(timeoutMs),
    });
  } catch (err) {
    // "cannot assume role X: AccessDenied: ..." or "no AWS credentials found ...".
    if (err instanceof CredentialsError) throw new Error(err.message, { cause: err });
    const status = httpStatusOf(err);
    const code = errorCodeOf(err);
    if (status === 404 || code === 'NoSuchBucket' || code === 'NotFound') {
      throw new Error(`bucket ${bucket} does not exist`, { cause: err });
    }
    if (status === 403) {
      throw new Error(`access denied to bucket ${bucket} (check the credentials and the bucket policy)`, {
        cause: err,
      });
    }
    if (status === 301 || status === 400) {
      throw new Error(`bucket ${bucket} rejected the request (HTTP ${status}; wrong region or endpoint?)`, {
        cause: err,
      });
    }
    if (status === undefined) {
      throw new Error(`cannot reach endpoint ${await describeEndpoint(client)} for bucket ${bucket}`, {
        cause: err,
      });
    }
    throw new Error(`cannot use bucket ${bucket}: HTTP ${status} ${code}`.trimEnd(), { cause: err });
  }
}

async function describeEndpoint(client: S3Client): Promise<string> {
  try {
    const endpoint = await client.config.endpoint?.();
    if (endpoint) {
      const port = endpoint.port ? `:${endpoint.port}` : '';
      return `${endpoint.protocol}//${endpoint.hostname}${port}${endpoint.path ?? ''}`;
    }
  } catch {
    // Describing the endpoint is best effort; the cause carries the details.
  }
  const region = await client.config.region().catch(() => 'unknown');
  return `(AWS S3, region ${region})`;
}
