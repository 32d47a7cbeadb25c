/**
 * The audit log: one line per finished transfer and per change to the tree
 * (mkdir, rmdir, remove, rename, setstat), marked `audit: true` so a log
 * pipeline can route them apart. The logger passed in is the session's, which
 * already carries the connection id, the remote address and the user.
 */
import type { Logger } from 'pino';
import type { SessionEvents } from './types.ts';

/** SessionEvents that write audit lines to `log`. */
export function auditEvents(log: Logger): SessionEvents {
  return {
    transferDone: ({ direction, path, bytes, seconds, ok }) =>
      log.info(
        { audit: true, event: 'transfer', direction, path, bytes, durationSeconds: seconds, outcome: ok ? 'success' : 'failure' },
        'transfer',
      ),
    operation: ({ op, path, target, ok }) =>
      log.info(
        { audit: true, event: op, path, ...(target !== undefined ? { target } : {}), outcome: ok ? 'success' : 'failure' },
        op,
      ),
  };
}

/** One SessionEvents that calls each of `list` in turn; a listener that throws does not stop the others. */
export function combineEvents(...list: (SessionEvents | undefined)[]): SessionEvents {
  const all = list.filter((e): e is SessionEvents => e !== undefined);
  const each = (call: (e: SessionEvents) => void) => {
    for (const e of all) {
      try {
        call(e);
      } catch {
        // Metrics and logs must never break a transfer.
      }
    }
  };
  return {
    transferDone: (t) => each((e) => e.transferDone?.(t)),
    operation: (o) => each((e) => e.operation?.(o)),
  };
}
