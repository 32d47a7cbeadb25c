/**
 * The one place where AWS SDK errors become storage errors. SDK messages and
 * request ids can name buckets, endpoints and internal hosts, so they travel
 * only in `cause` (for the logs); the message is short, generic and safe to
 * send to an SFTP client.
 */
import {
  BackendError,
  NotFoundError,
  PermissionDeniedError,
  StorageError,
} from '../errors.ts';
import { CredentialsError } from './credentials.ts';

interface SdkErrorShape {
  name?: unknown;
  Code?: unknown;
  code?: unknown;
  $metadata?: { httpStatusCode?: unknown; requestId?: unknown };
}

// 403s that are the server's misconfiguration, not the user's permissions.
const CREDENTIAL_ERRORS = new Set([
  'InvalidAccessKeyId',
  'SignatureDoesNotMatch',
  'ExpiredToken',
  'InvalidToken',
  'TokenRefreshRequired',
  'RequestTimeTooSkewed',
  'CredentialsProviderError',
]);

/** The HTTP status of an SDK error, when the store answered at all. */
export function httpStatusOf(err: unknown): number | undefined {
  const status = (err as SdkErrorShape | null)?.$metadata?.httpStatusCode;
  return typeof status === 'number' ? status : undefined;
}

/** A conditional request (If-Match, If-None-Match) the store refused: the object is not the one named. */
export function isPreconditionFailed(err: unknown): boolean {
  return httpStatusOf(err) === 412 || errorCodeOf(err) === 'PreconditionFailed';
}

/** A request the store does not implement (some S3 servers: conditional writes and copies). */
export function isNotImplemented(err: unknown): boolean {
  return httpStatusOf(err) === 501 || errorCodeOf(err) === 'NotImplemented';
}

/** The S3 error code ("NoSuchKey", "SlowDown", ...) or the error's name. */
export function errorCodeOf(err: unknown): string {
  const e = err as SdkErrorShape | null;
  for (const candidate of [e?.Code, e?.name, e?.code]) {
    if (typeof candidate === 'string' && candidate !== '') return candidate;
  }
  return '';
}

/** True for an abort or timeout raised by an AbortSignal or the HTTP handler. */
export function isAbortOrTimeout(err: unknown): boolean {
  const code = errorCodeOf(err);
  return code === 'AbortError' || code === 'TimeoutError' || code === 'RequestTimeout';
}

/**
 * Translates any failure of an S3 call into a StorageError. `context` is a
 * short client-safe description of the operation ("stat /a/b.txt").
 * StorageErrors pass through unchanged so layered helpers can rethrow freely.
 */
export function toStorageError(err: unknown, context: string): StorageError {
  if (err instanceof StorageError) return err;
  const error = translate(err, context);
  // Logged with the error (pino keeps own properties), so an operator can quote the S3 request id.
  const requestId = (err as SdkErrorShape | null)?.$metadata?.requestId;
  error.backend = {
    code: errorCodeOf(err) || undefined,
    status: httpStatusOf(err),
    requestId: typeof requestId === 'string' ? requestId : undefined,
  };
  return error;
}

function translate(err: unknown, context: string): StorageError {
  const options = { cause: err };
  // A role STS refuses: the cause names the role and why (logged when the session opens); the
  // client learns only that access is denied. No credentials at all is the server's problem.
  if (err instanceof CredentialsError) {
    return err.roleArn
      ? new PermissionDeniedError(`${context}: permission denied (storage credentials unavailable)`, options)
      : new BackendError(`${context}: storage backend refused the server's credentials`, options);
  }
  const code = errorCodeOf(err);
  const status = httpStatusOf(err);

  // A missing bucket is the operator's problem; "no such file" would mislead the user.
  if (code === 'NoSuchBucket') {
    return new BackendError(`${context}: storage bucket unavailable`, options);
  }
  // An upload id that vanished (aborted elsewhere, expired by a lifecycle rule).
  if (code === 'NoSuchUpload') {
    return new BackendError(`${context}: upload no longer exists in storage`, options);
  }
  if (code === 'NoSuchKey' || code === 'NotFound' || status === 404) {
    return new NotFoundError(`${context}: no such file or directory`, options);
  }
  if (CREDENTIAL_ERRORS.has(code)) {
    return new BackendError(`${context}: storage backend refused the server's credentials`, options);
  }
  if (code === 'AccessDenied' || code === 'Forbidden' || status === 403) {
    return new PermissionDeniedError(`${context}: permission denied`, options);
  }
  // We send If-Match only to pin reads and copies to the version opened.
  // (The writer turns a failed If-None-Match into AlreadyExistsError itself.)
  if (code === 'PreconditionFailed' || status === 412) {
    return new BackendError(`${context}: the file changed during the operation`, options);
  }
  if (isAbortOrTimeout(err)) {
    return new BackendError(`${context}: storage backend timed out`, options);
  }
  if (code === 'SlowDown' || status === 503) {
    return new BackendError(`${context}: storage backend busy`, options);
  }
  return new BackendError(`${context}: storage backend error`, options);
}
