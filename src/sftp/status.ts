/**
 * The one place where storage errors become SFTP status codes. Anything that
 * is not a StorageError is an internal bug or an unexpected failure: the client
 * gets a generic FAILURE and the details go to the log only.
 */
import {
  AlreadyExistsError,
  BackendError,
  InvalidRequestError,
  NotEmptyError,
  NotFoundError,
  PermissionDeniedError,
  QuotaExceededError,
  StorageError,
  UnsupportedError,
  WrongTypeError,
} from '../storage/errors.ts';

/** SSH_FX_* codes from draft-ietf-secsh-filexfer-02 (protocol version 3). */
export const STATUS = {
  OK: 0,
  EOF: 1,
  NO_SUCH_FILE: 2,
  PERMISSION_DENIED: 3,
  FAILURE: 4,
  BAD_MESSAGE: 5,
  OP_UNSUPPORTED: 8,
} as const;

export type StatusCode = (typeof STATUS)[keyof typeof STATUS];

export interface StatusReply {
  code: StatusCode;
  message: string;
  /** True when the error is unexpected and worth logging at error level. */
  internal: boolean;
}

export function toStatus(err: unknown): StatusReply {
  if (err instanceof NotFoundError) return reply(STATUS.NO_SUCH_FILE, err.message || 'No such file');
  if (err instanceof PermissionDeniedError) return reply(STATUS.PERMISSION_DENIED, err.message || 'Permission denied');
  if (err instanceof UnsupportedError) return reply(STATUS.OP_UNSUPPORTED, err.message);
  if (err instanceof InvalidRequestError) return reply(STATUS.BAD_MESSAGE, err.message);
  if (err instanceof AlreadyExistsError || err instanceof NotEmptyError || err instanceof WrongTypeError) {
    return reply(STATUS.FAILURE, err.message);
  }
  // SFTP v3 has no quota status (SSH_FX_QUOTA_EXCEEDED came with v5); OpenSSH's sftp-server answers EDQUOT with FAILURE too.
  if (err instanceof QuotaExceededError) return reply(STATUS.FAILURE, err.message);
  if (err instanceof BackendError) return { code: STATUS.FAILURE, message: err.message || 'Storage failure', internal: true };
  if (err instanceof StorageError) return reply(STATUS.FAILURE, err.message);
  return { code: STATUS.FAILURE, message: 'Internal server error', internal: true };
}

function reply(code: StatusCode, message: string): StatusReply {
  return { code, message, internal: false };
}
