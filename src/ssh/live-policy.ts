/**
 * How a change to an SftpUser reaches sessions that are already open (docs/security.md, "Live
 * policy").
 *
 * - Permissions are re-read on every operation: a session's user answers `permissions` from the
 *   user source each time it is asked (a map lookup), so a narrowed or widened list applies to the
 *   next request.
 * - Where the files live (bucket, keyPrefix, region, endpoint, roleArn, storageClass) is fixed in
 *   the session's storage when it opens, so a change there ends the connection, as a credential
 *   change does; the client reconnects into the new place.
 * - allowedCIDRs: the connection is ended when its source address is no longer allowed.
 */
import type { Permission, User } from '../users/user.ts';
import { USER_S3_OPTIONAL } from '../users/user.ts';
import { CidrSet } from './cidr.ts';

const NO_PERMISSIONS: ReadonlySet<Permission> = new Set();

/**
 * `user` with `permissions` read from `current()` at each use; a user that is gone has none (its
 * connection is being ended meanwhile).
 */
export function withLivePermissions(user: User, current: () => User | undefined): User {
  return Object.freeze({
    ...user,
    get permissions(): ReadonlySet<Permission> {
      return current()?.permissions ?? NO_PERMISSIONS;
    },
    // A folder's permissions are live too; a change of where folders are ends the connection (below).
    get folders(): User['folders'] {
      const now = current();
      return now ? now.folders : user.folders?.map((f) => ({ ...f, permissions: NO_PERMISSIONS }));
    },
  });
}

/**
 * Why a connection authenticated as `before`, from `ip`, must end now that the user is `after`;
 * undefined when its sessions can go on (only permissions or nothing relevant changed).
 */
export function policyChanged(before: User, after: User, ip: string): string | undefined {
  if (before.s3.bucket !== after.s3.bucket) return 'bucket changed';
  if (before.s3.keyPrefix !== after.s3.keyPrefix) return 'keyPrefix changed';
  for (const k of USER_S3_OPTIONAL) if (before.s3[k] !== after.s3[k]) return `${k} changed`;
  if (folderPlaces(before) !== folderPlaces(after)) return 'folders changed';
  const list = after.allowedCIDRs;
  if (list && list.length > 0 && (before.allowedCIDRs ?? []).join() !== list.join() && !new CidrSet(list).has(ip)) {
    return 'source address no longer in allowedCIDRs';
  }
  return undefined;
}

/** Where each virtual folder is mounted and what it maps to (its permissions are read live instead). */
function folderPlaces(user: User): string {
  return JSON.stringify((user.folders ?? []).map((f) => [f.path, f.s3]));
}
