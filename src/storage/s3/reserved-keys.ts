/**
 * Keys the server keeps for itself in a bucket, outside every user's tree: the listing indexes
 * (listing-index.ts, docs/adr/0020) live under `.s3sftp/` at the bucket root. A user whose key
 * prefix is the bucket root would otherwise see and change them; every key a user path maps to is
 * checked here (S3Storage#key), and listings of the bucket root leave the name out (lister.ts).
 */

/** The reserved bucket-root prefix. */
export const RESERVED_PREFIX = '.s3sftp/';

/** True for the reserved directory itself (".s3sftp", ".s3sftp/") and any key inside it. */
export function isReservedKey(key: string): boolean {
  return key === RESERVED_PREFIX.slice(0, -1) || key.startsWith(RESERVED_PREFIX);
}
