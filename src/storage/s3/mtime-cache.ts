/**
 * The modification times of listed objects. ListObjectsV2 does not return
 * user metadata, so a listing that reports the same mtime as STAT needs one
 * HeadObject per file; this cache makes listing an unchanged directory again
 * free. An entry is used only while the object's ETag and LastModified are
 * those it was read with: an overwrite changes the ETag, a metadata-only copy
 * (SETSTAT) changes LastModified. Listings give LastModified to the second on
 * some stores, so a change within the same second could go unseen: changes
 * made through this server drop the entry (forget()), and objects modified in
 * the last few seconds, which another replica may still be changing, are not
 * cached at all.
 */

/** Entries kept by default: a few MB, enough for the directories being synced right now. */
const DEFAULT_MAX_ENTRIES = 50_000;
/** Objects younger than this are not cached (see above). */
const SETTLE_MS = 10_000;

interface Entry {
  etag: string;
  lastModifiedMs: number;
  mtimeMs: number;
}

/** A bounded map from object to its mtime, valid for one version of the object. */
export class MtimeCache {
  #entries = new Map<string, Entry>();
  #max: number;
  #now: () => number;

  constructor(options: { maxEntries?: number; now?: () => number } = {}) {
    this.#max = Math.max(1, options.maxEntries ?? DEFAULT_MAX_ENTRIES);
    this.#now = options.now ?? Date.now;
  }

  /** The mtime (ms) of this version of the object, if known. */
  get(bucket: string, key: string, etag: string, lastModified: Date): number | undefined {
    const id = cacheKey(bucket, key);
    const hit = this.#entries.get(id);
    if (!hit || hit.etag !== etag || hit.lastModifiedMs !== lastModified.getTime()) return undefined;
    // Re-inserted so the Map's insertion order is recency order.
    this.#entries.delete(id);
    this.#entries.set(id, hit);
    return hit.mtimeMs;
  }

  set(bucket: string, key: string, etag: string, lastModified: Date, mtimeMs: number): void {
    if (Math.abs(this.#now() - lastModified.getTime()) < SETTLE_MS) return;
    const id = cacheKey(bucket, key);
    this.#entries.delete(id);
    this.#entries.set(id, { etag, lastModifiedMs: lastModified.getTime(), mtimeMs });
    while (this.#entries.size > this.#max) this.#entries.delete(this.#entries.keys().next().value as string);
  }

  /** Drops what is known about an object this server just changed. */
  forget(bucket: string, key: string): void {
    this.#entries.delete(cacheKey(bucket, key));
  }
}

function cacheKey(bucket: string, key: string): string {
  return `${bucket}\u0000${key}`;
}
