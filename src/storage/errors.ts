/**
 * The storage error vocabulary. Storage implementations translate their own
 * failures (AWS SDK errors, ...) into these classes, and the protocol layers map
 * these classes to wire status codes in exactly one place each
 * (sftp/status.ts). Messages are safe to show to a client: never put SDK text in
 * `message`; keep it in `cause`, where only the logs see it.
 */

/** Base class: any storage failure with a client-safe message. */
export class StorageError extends Error {
  override name = 'StorageError';
  /** What the store answered (error code, HTTP status, request id): for the logs, never for clients. */
  backend?: { code?: string; status?: number; requestId?: string };
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
  }
}

/** The path does not exist. */
export class NotFoundError extends StorageError {
  override name = 'NotFoundError';
}

/** The store or the user's permissions refuse the operation. */
export class PermissionDeniedError extends StorageError {
  override name = 'PermissionDeniedError';
}

/** The target exists and the operation must not replace it. */
export class AlreadyExistsError extends StorageError {
  override name = 'AlreadyExistsError';
}

/** A directory that must be empty is not. */
export class NotEmptyError extends StorageError {
  override name = 'NotEmptyError';
}

/** The path names a file where a directory is needed, or the reverse. */
export class WrongTypeError extends StorageError {
  override name = 'WrongTypeError';
}

/** S3 cannot do this honestly (symlinks, truncate, read+write...). */
export class UnsupportedError extends StorageError {
  override name = 'UnsupportedError';
}

/** The request itself is malformed (bad offset, name too long, ...). */
export class InvalidRequestError extends StorageError {
  override name = 'InvalidRequestError';
}

/** The store could not be reached or answered with an unexpected error. */
export class BackendError extends StorageError {
  override name = 'BackendError';
}

/** The user's quota (spec.quota) has no room for this file or these bytes. */
export class QuotaExceededError extends StorageError {
  override name = 'QuotaExceededError';
  constructor(message = 'quota exceeded', options?: ErrorOptions) {
    super(message, options);
  }
}
