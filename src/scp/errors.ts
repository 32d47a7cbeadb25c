/**
 * The one place where errors become SCP error lines. Storage errors carry
 * client-safe messages (storage/errors.ts), which are reused as they are;
 * anything else is an internal failure and the client gets a generic line
 * while the details go to the log.
 */
import { BackendError, NotFoundError, StorageError } from '../storage/errors.ts';

/** The client broke the rcp protocol; the session cannot go on. */
export class ScpProtocolError extends Error {
  override name = 'ScpProtocolError';
}

/** The channel closed (client gone, or the session was ended) while we still needed it. */
export class ChannelClosedError extends Error {
  override name = 'ChannelClosedError';
  constructor() {
    super('the connection was closed');
  }
}

/** The client sent a fatal "\x02" line: it has given up and the session ends. */
export class ClientAbortedError extends Error {
  override name = 'ClientAbortedError';
}

/** An error as one SCP error line. */
export interface ScpErrorLine {
  /** Text after the `\x01`/`\x02` byte, without the trailing newline. */
  message: string;
  /** True when the error is unexpected and worth logging at error level. */
  internal: boolean;
}

const GLOB = /[*?[]/;

/**
 * The error line for a failed operation on `path` (a user-visible path), in
 * OpenSSH's form "scp: PATH: REASON". Storage messages that already start
 * with the path are not prefixed twice.
 */
export function toScpError(err: unknown, path?: string): ScpErrorLine {
  if (err instanceof ScpProtocolError) return { message: `scp: protocol error: ${oneLine(err.message)}`, internal: false };
  if (err instanceof StorageError) {
    let text = oneLine(err.message || err.name);
    if (err instanceof NotFoundError && path !== undefined && GLOB.test(path)) {
      text += ' (wildcards are not expanded by this server: name each file, or copy the directory with -r)';
    }
    const withPath = path === undefined || text.startsWith(`${path}:`) || text.startsWith(`${path} `) ? text : `${path}: ${text}`;
    return { message: `scp: ${withPath}`, internal: err instanceof BackendError };
  }
  return { message: `scp: ${path === undefined ? '' : `${path}: `}internal server error`, internal: true };
}

/** An error line must stay one line: a newline would end it early and desynchronise the client. */
function oneLine(text: string): string {
  return text.replace(/[\r\n]+/g, ' ');
}
