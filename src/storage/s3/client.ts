/**
 * Builds S3Clients (the server's come from ClientPool in client-pool.ts, one per role, region and
 * endpoint) and checks the bucket at startup.
 */
import { httpAgent, httpsAgent } from './connect-timeout.ts';
import { HeadBucketCommand, S3Client, type S3ClientConfig } from '@aws-sdk/client-s3';
import type { S3Config } from '../../config/types.ts';
import { baseCredentials, CredentialsError } from './credentials.ts';
import { errorCodeOf, httpStatusOf } from './errors.ts';
import { unsignedPayloadOverTls } from './unsigned-payload.ts';

// Every SFTP session shares these sockets; they must cover several sessions
// transferring at once, not just one session's parts.
const SESSIONS_PER_SOCKET_POOL = 8;
const MIN_SOCKETS = 64;
/** A new socket must connect within this; time queued for a socket does not count (connect-timeout.ts). */
const CONNECT_TIMEOUT_MS = 10_000;

/** HTTP agents and timeouts for `requestHandler`; clients given the same object share its sockets. */
export function httpHandlerOptions(cfg: S3Config) {
  const maxSockets = Math.max(
    MIN_SOCKETS,
    (cfg.upload.concurrency + cfg.download.concurrency) * SESSIONS_PER_SOCKET_POOL,
  );
  const agentOptions = { keepAlive: true, maxSockets, maxFreeSockets: Math.min(maxSockets, 256) };
  return {
    httpAgent: httpAgent(agentOptions, CONNECT_TIMEOUT_MS),
    httpsAgent: httpsAgent(agentOptions, CONNECT_TIMEOUT_MS),
    // Not the SDK's connectionTimeout: its timer runs while a request waits for a free socket, so
    // a busy pool turned into "timed out". The agents time connecting only; whole-request
    // deadlines come from each caller's abortSignal, sized to the bytes it moves.
    connectionTimeout: 0,
    // The SDK's warning that requests queue for sockets, once the wait passes this (logged to the
    // SDK's logger at most every 15 s); per-session caps (request-limiter.ts) keep it rare.
    socketAcquisitionWarningTimeout: 5_000,
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
  const client = new S3Client({
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
  // With CRC32 on every body, TLS makes the signature's SHA-256 of the body redundant (unsigned-payload.ts).
  if (checksum === 'WHEN_SUPPORTED') unsignedPayloadOverTls(client);
  return client;
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
