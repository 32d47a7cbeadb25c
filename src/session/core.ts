/**
 * What the SFTP and SCP front ends share, so that both check permissions,
 * resolve paths, treat a missing file and report transfers the same way.
 * Each helper takes exactly the pieces of SessionDeps it needs.
 */
import { NotFoundError, PermissionDeniedError } from '../storage/errors.ts';
import { normalizePath } from '../storage/paths.ts';
import type { FileInfo, Storage } from '../storage/storage.ts';
import { folderAt, permissionsAt, type Permission, type User } from '../users/user.ts';
import type { SessionEvents, TreeOperation } from './types.ts';

/**
 * Throws PermissionDeniedError unless the user holds `permission` at `path` (normalised): inside a
 * virtual folder (spec.folders) the folder's permissions apply, elsewhere the home's.
 */
export function requirePermission(user: User, permission: Permission, path: string): void {
  const folder = folderAt(user, path);
  if (!permissionsAt(user, path).has(permission)) {
    const where = folder ? ` in ${folder.path}` : '';
    throw new PermissionDeniedError(`permission denied: "${permission}" is not granted to this user${where}`);
  }
}

/**
 * A client path inside the user's chroot: made absolute against `cwd` and
 * normalised; ".." stops at "/", so no path can name anything above the root.
 */
export function resolvePath(raw: string, cwd = '/'): string {
  return normalizePath(raw, cwd);
}

/** Stat that answers undefined instead of NotFoundError. */
export async function statOrUndefined(storage: Storage, path: string): Promise<FileInfo | undefined> {
  try {
    return await storage.stat(path);
  } catch (err) {
    if (err instanceof NotFoundError) return undefined;
    throw err;
  }
}

/** One finished transfer, as SessionEvents.transferDone reports it. */
export interface Transfer {
  direction: 'upload' | 'download';
  path: string;
  bytes: number;
  /** When the file was opened: the duration runs from here to `clock()`. */
  started: Date;
  ok: boolean;
}

/** Reports a finished transfer (ok or not) through `events`. */
export function reportTransfer(events: SessionEvents, user: User, clock: () => Date, t: Transfer): void {
  events.transferDone?.({
    user: user.username,
    direction: t.direction,
    path: t.path,
    bytes: t.bytes,
    seconds: (clock().getTime() - t.started.getTime()) / 1000,
    ok: t.ok,
  });
}

/** Runs a change to the tree and reports it, succeeded or failed; the failure is rethrown. */
export async function audited(
  events: SessionEvents,
  user: User,
  operation: { op: TreeOperation; path: string; target?: string },
  work: () => Promise<void>,
): Promise<void> {
  try {
    await work();
  } catch (err) {
    events.operation?.({ user: user.username, ...operation, ok: false });
    throw err;
  }
  events.operation?.({ user: user.username, ...operation, ok: true });
}
