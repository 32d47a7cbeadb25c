/**
 * The listing index (docs/adr/0020): one small object per listed directory that tells a later
 * listing, on any replica and after any restart, the mtime STAT reports for each file version it
 * has seen, so those files need no HeadObject.
 *
 * It records object versions, by name + ETag + the listing's LastModified, never bare names: a
 * version it holds is either an entry with its stored mtime, or a fingerprint (8 bytes of SHA-256
 * of name, ETag and LastModified) for "carries no stored mtime: STAT reports LastModified to the
 * second". A file whose listed version is in neither is HEADed, as without the index. An
 * overwrite changes the ETag or LastModified, and a metadata change is a copy that changes
 * LastModified, so a stale index costs HEADs, never a wrong time. Only versions whose LastModified
 * is at least a second older than the listing that wrote the index (`coveredAt`, S3's own clock)
 * are recorded: a copy in that same second could keep both the ETag and the second-granular
 * LastModified. Upload start times are no hazard: LastModified can be when an upload started
 * (always for multipart), before a listing that missed it, and such a version is simply not held.
 *
 * The pure part (ListingIndex, ListingIndexBuilder) decides; ListingIndexStore reads and writes.
 */
import { createHash } from 'node:crypto';
import { GetObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import type { Logger } from 'pino';
import { PermissionDeniedError } from '../errors.ts';
import { toStorageError } from './errors.ts';
import { RESERVED_PREFIX } from './reserved-keys.ts';

/** A listing that HEADed fewer files than this writes no index: small directories never pay a PUT. */
export const LISTING_INDEX_MIN_HEADS = 32;
/** Versions one index holds at most (about 1.6 MB of fingerprints, or less than 20 MB of entries); a bigger directory gets none. */
export const LISTING_INDEX_MAX_FILES = 200_000;
/** A stored index larger than this is not read (written by something else, or a future format). */
const MAX_INDEX_BYTES = 32 * 1024 * 1024;
/** Index requests are small; a failure only costs the HEADs. */
const INDEX_TIMEOUT_MS = 30_000;
const FORMAT_VERSION = 1;
const FINGERPRINT_BYTES = 8;

/** One file version as a listing shows it. */
export interface ListedVersion {
  name: string;
  etag: string;
  /** The listing's LastModified (ms). */
  lastModifiedMs: number;
}

/** What STAT reports for a version with no stored mtime: HEAD's Last-Modified, an HTTP date, whole seconds. */
export function impliedMtime(lastModifiedMs: number): number {
  return Math.floor(lastModifiedMs / 1000) * 1000;
}

/**
 * The newest LastModified an index written by a listing may record, from the `Date` header of its
 * first page (S3's clock, whole seconds): a second before it.
 */
export function coveredAtFrom(date: Date): number {
  return date.getTime() - 1000;
}

/** The stored form (JSON). */
interface StoredIndex {
  v: number;
  /** The directory's key prefix, to refuse an index read under another directory's name. */
  prefix: string;
  coveredAt: number;
  /** Versions with a stored mtime other than the implied one: name → [etag, lastModifiedMs, mtimeMs]. */
  entries: Record<string, [string, number, number]>;
  /** Sorted big-endian 8-byte fingerprints of versions whose mtime is the implied one, base64. */
  plain: string;
}

function fingerprint(version: ListedVersion): bigint {
  const digest = createHash('sha256').update(`${version.name}\0${version.etag}\0${version.lastModifiedMs}`).digest();
  return digest.readBigUInt64BE(0);
}

/** A directory's index as read: answers "what does STAT report for this version", or nothing. */
export class ListingIndex {
  readonly coveredAt: number;
  #entries: Map<string, [string, number, number]>;
  #plain: BigUint64Array;

  private constructor(coveredAt: number, entries: Map<string, [string, number, number]>, plain: BigUint64Array) {
    this.coveredAt = coveredAt;
    this.#entries = entries;
    this.#plain = plain;
  }

  /** Parses a stored index of `prefix`; undefined when it is malformed or of another directory. */
  static parse(text: string, prefix: string): ListingIndex | undefined {
    let stored: StoredIndex;
    try {
      stored = JSON.parse(text) as StoredIndex;
    } catch {
      return undefined;
    }
    if (stored === null || typeof stored !== 'object' || stored.v !== FORMAT_VERSION || stored.prefix !== prefix) return undefined;
    if (!Number.isFinite(stored.coveredAt) || typeof stored.plain !== 'string' || stored.entries === null || typeof stored.entries !== 'object') return undefined;
    const entries = new Map<string, [string, number, number]>();
    for (const [name, value] of Object.entries(stored.entries)) {
      if (!Array.isArray(value) || value.length !== 3) return undefined;
      const [etag, lastModifiedMs, mtimeMs] = value;
      if (typeof etag !== 'string' || !Number.isFinite(lastModifiedMs) || !Number.isFinite(mtimeMs)) return undefined;
      entries.set(name, [etag, lastModifiedMs, mtimeMs]);
    }
    const bytes = Buffer.from(stored.plain, 'base64');
    if (bytes.length % FINGERPRINT_BYTES !== 0) return undefined;
    const plain = new BigUint64Array(bytes.length / FINGERPRINT_BYTES);
    for (let i = 0; i < plain.length; i++) plain[i] = bytes.readBigUInt64BE(i * FINGERPRINT_BYTES);
    plain.sort();
    return new ListingIndex(stored.coveredAt, entries, plain);
  }

  /** Versions held. */
  get size(): number {
    return this.#entries.size + this.#plain.length;
  }

  /** The mtime (ms) STAT reports for this version, when the index holds it; undefined: HEAD it. */
  mtime(version: ListedVersion): number | undefined {
    if (version.lastModifiedMs > this.coveredAt) return undefined;
    const entry = this.#entries.get(version.name);
    if (entry) return entry[0] === version.etag && entry[1] === version.lastModifiedMs ? entry[2] : undefined;
    return hasSorted(this.#plain, fingerprint(version)) ? impliedMtime(version.lastModifiedMs) : undefined;
  }
}

function hasSorted(values: BigUint64Array, value: bigint): boolean {
  let lo = 0;
  let hi = values.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const at = values[mid]!;
    if (at === value) return true;
    if (at < value) lo = mid + 1;
    else hi = mid - 1;
  }
  return false;
}

/** Collects the versions one listing learned the STAT mtime of, for the index it writes. */
export class ListingIndexBuilder {
  readonly coveredAt: number;
  #max: number;
  #entries = new Map<string, [string, number, number]>();
  #plain = new BigUint64Array(1024);
  #plainCount = 0;
  #overflowed = false;

  constructor(coveredAt: number, maxFiles = LISTING_INDEX_MAX_FILES) {
    this.coveredAt = coveredAt;
    this.#max = maxFiles;
  }

  /** Versions recorded so far. */
  get size(): number {
    return this.#entries.size + this.#plainCount;
  }

  /** More versions than an index holds were offered: this listing writes none, and memory stays bounded. */
  get overflowed(): boolean {
    return this.#overflowed;
  }

  /**
   * Records that STAT reports `mtimeMs` for this version. Versions newer than coveredAt are left
   * out (a later listing HEADs them).
   */
  add(version: ListedVersion, mtimeMs: number): void {
    if (this.#overflowed || version.lastModifiedMs > this.coveredAt) return;
    if (this.size >= this.#max) {
      this.#overflowed = true;
      this.#entries.clear();
      this.#plain = new BigUint64Array(0);
      this.#plainCount = 0;
      return;
    }
    if (mtimeMs !== impliedMtime(version.lastModifiedMs)) {
      this.#entries.set(version.name, [version.etag, version.lastModifiedMs, mtimeMs]);
      return;
    }
    if (this.#plainCount === this.#plain.length) {
      const grown = new BigUint64Array(this.#plain.length * 2);
      grown.set(this.#plain);
      this.#plain = grown;
    }
    this.#plain[this.#plainCount++] = fingerprint(version);
  }

  /** The stored form for `prefix`. */
  serialize(prefix: string): string {
    const plain = this.#plain.subarray(0, this.#plainCount).sort();
    const bytes = Buffer.alloc(plain.length * FINGERPRINT_BYTES);
    for (let i = 0; i < plain.length; i++) bytes.writeBigUInt64BE(plain[i]!, i * FINGERPRINT_BYTES);
    const stored: StoredIndex = {
      v: FORMAT_VERSION,
      prefix,
      coveredAt: this.coveredAt,
      entries: Object.fromEntries(this.#entries),
      plain: bytes.toString('base64'),
    };
    return JSON.stringify(stored);
  }
}

/**
 * Whether a listing reads its directory's index, given the files so far the memory cache did not
 * answer. Fewer than LISTING_INDEX_MIN_HEADS are HEADed in one parallel round, no longer than the
 * GET of the index would take, and a directory that small never had an index written for it
 * unless it shrank; so, like the write, the read is left to directories where it saves requests.
 */
export function shouldReadIndex(unanswered: number): boolean {
  return unanswered >= LISTING_INDEX_MIN_HEADS;
}

/** Whether a finished listing writes its index: it was complete, HEADed enough files, and fits. */
export function shouldWriteIndex(listing: { complete: boolean; heads: number; builder: ListingIndexBuilder | undefined }): boolean {
  return listing.complete && listing.heads >= LISTING_INDEX_MIN_HEADS && listing.builder !== undefined && !listing.builder.overflowed && listing.builder.size > 0;
}

/** The key of a directory's index: under the reserved prefix, named by a hash of the directory's prefix. */
export function indexKey(prefix: string): string {
  return `${RESERVED_PREFIX}listing-index/${createHash('sha256').update(prefix).digest('hex')}.json`;
}

/**
 * Reads and writes indexes; shared by the server's sessions. A failure never fails a listing: it is
 * logged at debug, and a bucket that refuses a write (AccessDenied) is warned about once and not
 * read or written again until a restart.
 */
export class ListingIndexStore {
  /** Index objects read (`found`: usable, `none`: missing, malformed or unreadable) and written; read by the metrics. */
  readonly counts = { found: 0, none: 0, written: 0, failed: 0 };
  #log: Logger;
  /** Buckets whose index is not read or written any more (AccessDenied). */
  #refused = new Set<string>();

  constructor(options: { log: Logger }) {
    this.#log = options.log;
  }

  /** The index of the directory `prefix`, if there is a usable one. */
  async read(client: S3Client, bucket: string, prefix: string): Promise<ListingIndex | undefined> {
    if (this.#refused.has(bucket)) return undefined;
    const key = indexKey(prefix);
    try {
      const out = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }), { abortSignal: AbortSignal.timeout(INDEX_TIMEOUT_MS) });
      if ((out.ContentLength ?? 0) > MAX_INDEX_BYTES) {
        (out.Body as { destroy?: () => void } | undefined)?.destroy?.();
        this.counts.none++;
        return undefined;
      }
      const text = (await out.Body?.transformToString('utf8')) ?? '';
      const index = ListingIndex.parse(text, prefix);
      if (!index) this.#log.debug({ bucket, key }, 'ignored a malformed listing index');
      this.counts[index ? 'found' : 'none']++;
      return index;
    } catch (err) {
      // A missing key without s3:ListBucket on it is a 403 too, so a refused read only counts as "none".
      this.#log.debug({ err, bucket, key }, 'no listing index read');
      this.counts.none++;
      return undefined;
    }
  }

  /** Stores the index a listing built; never throws. */
  async write(client: S3Client, bucket: string, prefix: string, builder: ListingIndexBuilder): Promise<void> {
    if (this.#refused.has(bucket)) return;
    const key = indexKey(prefix);
    try {
      await client.send(
        new PutObjectCommand({ Bucket: bucket, Key: key, Body: builder.serialize(prefix), ContentType: 'application/json' }),
        { abortSignal: AbortSignal.timeout(INDEX_TIMEOUT_MS) },
      );
      this.counts.written++;
    } catch (err) {
      this.counts.failed++;
      this.#failed(err, bucket, key);
    }
  }

  #failed(err: unknown, bucket: string, key: string): void {
    if (toStorageError(err, 'listing index write') instanceof PermissionDeniedError) {
      if (this.#refused.has(bucket)) return;
      this.#refused.add(bucket);
      this.#log.warn({ err, bucket, key }, `the listing index cannot be written (access denied): listings of this bucket HEAD every file not cached in memory; allow s3:GetObject and s3:PutObject on ${RESERVED_PREFIX}* or set listing.index false`);
      return;
    }
    this.#log.debug({ err, bucket, key }, 'could not write a listing index');
  }
}
