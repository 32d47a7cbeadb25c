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
 *
 * Objects this server stored with one PutObject in the last minute are the
 * exception (docs/adr/0022): it knows what it wrote, so a listing that shows
 * the ETag it got back, dated within the PUT's own seconds, is answered
 * without a HEAD.
 */

import { impliedMtime } from './listing-index.ts';

/** Entries kept by default: a few MB, enough for the directories being synced right now. */
const DEFAULT_MAX_ENTRIES = 50_000;
/** Objects younger than this are not cached (see above). */
const SETTLE_MS = 10_000;
/** How long what this server wrote answers listings (docs/adr/0022). */
const WRITTEN_MS = 60_000;
/** How long it answers STAT, SETSTAT's lookup and the checksum commands, as a held listing does (ADR 0019). */
const JUST_STORED_MS = 5_000;

interface Entry {
  etag: string;
  lastModifiedMs: number;
  mtimeMs: number;
}

/** An object this server just stored with one request (PutObject, CopyObject), as S3 may list it. */
export interface WrittenObject {
  /** The ETag S3 answered. */
  etag: string;
  size: number;
  /** The user metadata it was stored with (the mtime, the content hashes). */
  metadata: Record<string, string>;
  /** The storage class it was stored with, if one was asked for. */
  storageClass?: string;
  /** The `mtime` metadata sent with it (ms); undefined: none, so STAT reports Last-Modified. */
  storedMtimeMs: number | undefined;
  /** The earliest and latest Last-Modified S3 can have given it (ms, S3's clock). */
  lastModifiedFromMs: number;
  lastModifiedToMs: number;
}

/**
 * A WrittenObject as recorded, with the server's change log position (directory-memory.ts) once the
 * store was noted there: the storage that answers from it checks that nothing changed the key since.
 */
export type StoredRecord = WrittenObject & { changeSeq: number };

/** User metadata this server just stored or read, with the change log's position then. */
export interface SeenMetadata {
  metadata: Record<string, string>;
  changeSeq: number;
}

/** Where a listing found the mtime of each file it listed (for the metrics). */
export type ListedMtimeSource = 'memory' | 'written' | 'index' | 'head';

/** A bounded map from object to its mtime, valid for one version of the object. */
export class MtimeCache {
  /** Files listed with stored mtimes looked up, by where the answer came from; read by the metrics. */
  readonly listed: Record<ListedMtimeSource, number> = { memory: 0, written: 0, index: 0, head: 0 };
  #entries = new Map<string, Entry>();
  #written: RecentRecords<StoredRecord>;
  /** The user metadata a download's GET returned, by key, for the checksum commands that follow it. */
  #read: RecentRecords<SeenMetadata>;
  /** Set once a HEAD showed a Last-Modified other than the listing's second (see sawHeadOfListed). */
  #listingSecondsDiffer = false;
  #max: number;
  #now: () => number;

  constructor(options: { maxEntries?: number; now?: () => number } = {}) {
    this.#max = Math.max(1, options.maxEntries ?? DEFAULT_MAX_ENTRIES);
    this.#now = options.now ?? Date.now;
    this.#written = new RecentRecords(this.#max, WRITTEN_MS, this.#now);
    this.#read = new RecentRecords(this.#max, JUST_STORED_MS, this.#now);
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
    this.#written.delete(cacheKey(bucket, key));
    this.#read.delete(cacheKey(bucket, key));
  }

  /**
   * A download opened the object and its GET returned this metadata: rclone runs md5sum on each file
   * it downloaded, right after, and the stored hashes are in it. Kept 5 s, as justStored().
   */
  read(bucket: string, key: string, metadata: Record<string, string>, changeSeq: number): void {
    this.#read.set(cacheKey(bucket, key), { metadata, changeSeq });
  }

  /** The user metadata of the object as this server last stored or read it, within the last 5 s. */
  justSeenMetadata(bucket: string, key: string): SeenMetadata | undefined {
    const stored = this.justStored(bucket, key);
    if (stored) return { metadata: stored.metadata, changeSeq: stored.changeSeq };
    return this.#read.get(cacheKey(bucket, key), JUST_STORED_MS);
  }

  /**
   * Records an object this server has just stored (after forget(), which its change needs anyway),
   * with the change log's position once that change was noted.
   */
  wrote(bucket: string, key: string, object: WrittenObject, changeSeq: number): void {
    this.#written.set(cacheKey(bucket, key), { ...object, changeSeq });
  }

  /**
   * The mtime STAT reports for a listed version, if it is what this server stored in the last
   * minute: same ETag, and a Last-Modified within the seconds of that PutObject. Another writer
   * storing the same bytes under the same name in those seconds is the one case it can miss.
   * `current` tells whether the server changed the key after the record's change log position
   * (another user of the bucket, through another role, is another scope here).
   */
  written(bucket: string, key: string, etag: string, lastModified: Date, current: (changeSeq: number) => boolean): number | undefined {
    const record = this.#written.get(cacheKey(bucket, key), WRITTEN_MS);
    if (!record || !current(record.changeSeq)) return undefined;
    const listedMs = lastModified.getTime();
    if (unquoted(record.etag) !== unquoted(etag)) return undefined;
    if (listedMs < record.lastModifiedFromMs || listedMs > record.lastModifiedToMs) return undefined;
    if (record.storedMtimeMs !== undefined) return record.storedMtimeMs;
    return this.#listingSecondsDiffer ? undefined : impliedMtime(listedMs);
  }

  /**
   * What this server stored at the key in the last 5 s, unless it changed the key since. Another
   * replica's change in those seconds is not seen, as with a held listing (docs/adr/0019, 0022).
   */
  justStored(bucket: string, key: string): StoredRecord | undefined {
    return this.#written.get(cacheKey(bucket, key), JUST_STORED_MS);
  }

  /** The memory's answer for a listed version: a HEAD it read, or what this server wrote (see written()). */
  known(bucket: string, key: string, etag: string, lastModified: Date, current: (changeSeq: number) => boolean): number | undefined {
    return this.get(bucket, key, etag, lastModified) ?? this.written(bucket, key, etag, lastModified, current);
  }

  /**
   * Told what a HEAD of a listed object without stored mtime answered. A file written here
   * without a time is answered with its listed second, which is what HEAD reports on AWS, Swift,
   * MinIO and Ceph; a store where HEAD says otherwise turns that off for the server's lifetime.
   */
  sawHeadOfListed(listedLastModified: Date, headLastModified: Date): void {
    const listedMs = listedLastModified.getTime();
    const headMs = headLastModified.getTime();
    if (headMs !== impliedMtime(listedMs) && Math.abs(headMs - listedMs) < 1000) this.#listingSecondsDiffer = true;
  }
}

/** Records kept for a while after they were made, at most `max`; insertion order is age order. */
class RecentRecords<T> {
  #records = new Map<string, { value: T; recordedAt: number }>();
  #max: number;
  #keepMs: number;
  #now: () => number;

  constructor(max: number, keepMs: number, now: () => number) {
    this.#max = max;
    this.#keepMs = keepMs;
    this.#now = now;
  }

  set(id: string, value: T): void {
    this.#records.delete(id);
    this.#records.set(id, { value, recordedAt: this.#now() });
    for (const [oldest, record] of this.#records) {
      if (this.#records.size <= this.#max && this.#now() - record.recordedAt < this.#keepMs) break;
      this.#records.delete(oldest);
    }
  }

  /** The record, if made less than `maxAgeMs` ago. */
  get(id: string, maxAgeMs: number): T | undefined {
    const record = this.#records.get(id);
    return record && this.#now() - record.recordedAt < maxAgeMs ? record.value : undefined;
  }

  delete(id: string): void {
    this.#records.delete(id);
  }
}

function unquoted(etag: string): string {
  return etag.replaceAll('"', '');
}

function cacheKey(bucket: string, key: string): string {
  return `${bucket}\u0000${key}`;
}

/**
 * An object one request stored (a PutObject or a CopyObject), as a listing may show it. S3 dates it
 * between the request's arrival and its answer; the answer's Date header is S3's clock at that end, to the second.
 * Two seconds of slack either side cover rounding and a store that dates it by a ceiled second.
 */
export function writtenObject(
  etag: string,
  answeredAt: Date,
  tookMs: number,
  stored: { size: number; metadata: Record<string, string>; storageClass?: string | undefined },
): WrittenObject {
  const SLACK_MS = 2_000;
  const { size, metadata, storageClass } = stored;
  return {
    etag,
    size,
    metadata,
    ...(storageClass ? { storageClass } : {}),
    storedMtimeMs: parseMtime(metadata.mtime)?.getTime(),
    lastModifiedFromMs: answeredAt.getTime() - tookMs - SLACK_MS,
    lastModifiedToMs: answeredAt.getTime() + SLACK_MS,
  };
}

/** The `mtime` metadata: Unix seconds, possibly fractional (rclone, s3fs and we write it). */
export function parseMtime(value: string | undefined): Date | undefined {
  if (value === undefined || value.trim() === '') return undefined;
  const seconds = Number(value);
  return Number.isFinite(seconds) ? new Date(seconds * 1000) : undefined;
}

/** The `mtime` metadata value: Unix seconds with milliseconds, as rclone writes it. */
export function mtimeMetadata(mtime: Date): string {
  return (mtime.getTime() / 1000).toString();
}
