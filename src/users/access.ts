/**
 * Whether a loaded user can reach their storage, as the Kubernetes controller reports it in the
 * SftpUser's Ready condition. The users side owns the verdict's shape; the S3 side implements the
 * check (storage/s3/client-pool.ts), so nothing here depends on the AWS SDK.
 */
import type { User } from './user.ts';

/**
 * Why a user cannot use their storage, as a Kubernetes condition reason:
 * - AssumeRoleFailed: STS refused the user's spec.s3.roleArn (or the server's s3.credentials.roleArn).
 * - CredentialsUnavailable: the server has no AWS credentials at all.
 * - BucketNotFound, AccessDenied: S3 answered 404 / 403 for the user's bucket and keyPrefix.
 * - StorageUnreachable: no answer from the endpoint.
 * - StorageError: any other S3 error.
 */
export type AccessFailureReason =
  | 'AssumeRoleFailed'
  | 'CredentialsUnavailable'
  | 'BucketNotFound'
  | 'AccessDenied'
  | 'StorageUnreachable'
  | 'StorageError';

/** The result of an access check: `message` is one sentence for an operator (status, logs). */
export type AccessCheck = { ok: true } | { ok: false; reason: AccessFailureReason; message: string };

/** What an access check needs to know about a user: name (for messages) and s3 (bucket, keyPrefix, role, region, endpoint). */
export type AccessUser = Pick<User, 'username' | 's3'>;

/** Checks that a user can reach their storage. Never throws. */
export interface UserAccessChecker {
  checkUserAccess(user: AccessUser): Promise<AccessCheck>;
}

/** Each virtual folder of a user as a location of its own (same name, the folder's s3), for access checks and the upload janitor. */
export function folderLocations(user: User): AccessUser[] {
  return (user.folders ?? []).map((f) => ({ username: user.username, s3: f.s3 }));
}

/**
 * A user's access check that covers their virtual folders too: the home first, then each folder,
 * so the first failure is reported, naming the folder ("folder /inbound: ...").
 */
export async function checkUserAndFolders(checker: UserAccessChecker, user: User): Promise<AccessCheck> {
  const home = await checker.checkUserAccess(user);
  if (!home.ok) return home;
  for (const folder of user.folders ?? []) {
    const result = await checker.checkUserAccess({ username: user.username, s3: folder.s3 });
    if (!result.ok) return { ...result, message: `folder ${folder.path}: ${result.message}` };
  }
  return home;
}
