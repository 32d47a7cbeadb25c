/**
 * Aborts multipart uploads that nobody will complete. A server that crashes
 * (or is killed past its grace period) leaves its open multipart uploads
 * behind, and S3 bills their parts until they are aborted. Every pass lists
 * the uploads under the key prefixes the server manages (the loaded users'
 * prefixes, per bucket) and aborts those initiated longer ago than the
 * configured age. Other prefixes in a shared bucket are never touched.
 *
 * The age must exceed the longest upload: another replica's live upload looks
 * the same as an abandoned one. Uploads live in this process are skipped.
 * A bucket lifecycle rule (AbortIncompleteMultipartUpload) does the same job
 * where the operator can set one; this covers buckets where they cannot.
 */
import { AbortMultipartUploadCommand, ListMultipartUploadsCommand, type S3Client } from '@aws-sdk/client-s3';
import type { Logger } from 'pino';
import { errorCodeOf, httpStatusOf } from './errors.ts';
import { decodeKey } from './lister.ts';
import type { Clock } from './upload-pipeline.ts';

/** Where a user's files live: what the janitor needs to know about users. */
export interface ManagedLocation {
  s3: { bucket: string; keyPrefix: string };
}

export interface UploadJanitorOptions<L extends ManagedLocation = ManagedLocation> {
  client: S3Client;
  /** The locations to clean, read at the start of every pass (users come and go). */
  locations: () => Iterable<L>;
  /**
   * The client that reaches a location (a user's role, region or endpoint);
   * default `client`. Locations are grouped by client, then by bucket.
   */
  clientFor?: (location: L) => S3Client;
  /** Uploads initiated longer ago than this are aborted. */
  maxAgeMs: number;
  /** Time between passes; default min(maxAgeMs / 4, 1 hour). */
  intervalMs?: number;
  /** Time from start() to the first pass; default min(intervalMs, 1 minute). */
  firstPassDelayMs?: number;
  /** Uploads per listing request (S3's maximum, 1000, unless a test lowers it). */
  pageSize?: number;
  /** True for an upload this process is writing right now (never aborted). */
  isLive?: (bucket: string, key: string) => boolean;
  clock?: Clock;
  log: Logger;
}

/** What one pass did. */
export interface JanitorReport {
  /** Multipart uploads seen under the managed prefixes. */
  seen: number;
  aborted: number;
  /** Uploads or buckets that could not be handled (logged). */
  failed: number;
}

const HOUR_MS = 3_600_000;
// Each request is small; a minute covers the SDK's own retries.
const REQUEST_TIMEOUT_MS = 60_000;

/**
 * The key prefixes to clean, per bucket, with prefixes inside another one
 * dropped ("a/" covers "a/b/"; "" covers the whole bucket), so no upload is
 * listed twice.
 */
export function managedPrefixes(locations: Iterable<ManagedLocation>): Map<string, string[]> {
  const byBucket = new Map<string, Set<string>>();
  for (const { s3 } of locations) {
    const set = byBucket.get(s3.bucket) ?? new Set<string>();
    set.add(s3.keyPrefix);
    byBucket.set(s3.bucket, set);
  }
  const out = new Map<string, string[]>();
  for (const [bucket, set] of byBucket) {
    // Sorted, everything between a prefix and a string it covers is covered too,
    // so comparing with the last prefix kept suffices.
    const kept: string[] = [];
    for (const prefix of [...set].sort()) {
      const last = kept.at(-1);
      if (last === undefined || !prefix.startsWith(last)) kept.push(prefix);
    }
    out.set(bucket, kept);
  }
  return out;
}

/** Periodically aborts abandoned multipart uploads. */
export class UploadJanitor<L extends ManagedLocation = ManagedLocation> {
  #o: UploadJanitorOptions<L>;
  #clock: Clock;
  #timer: NodeJS.Timeout | undefined;
  #pass: Promise<JanitorReport> | undefined;
  #stopped = new AbortController();

  constructor(options: UploadJanitorOptions<L>) {
    if (!(options.maxAgeMs > 0)) throw new Error('maxAgeMs must be positive');
    this.#o = options;
    this.#clock = options.clock ?? { now: () => Date.now() };
  }

  get intervalMs(): number {
    return this.#o.intervalMs ?? Math.min(this.#o.maxAgeMs / 4, HOUR_MS);
  }

  /** Schedules passes until stop(). */
  start(): void {
    this.#schedule(this.#o.firstPassDelayMs ?? Math.min(this.intervalMs, 60_000));
  }

  /** Stops scheduling, cancels a pass in progress and waits for it to end. */
  async stop(): Promise<void> {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#stopped.abort();
    await this.#pass?.catch(() => undefined);
  }

  /** One pass over every managed prefix. Never rejects; problems are logged and counted. */
  runOnce(): Promise<JanitorReport> {
    this.#pass ??= this.#runPass().finally(() => {
      this.#pass = undefined;
    });
    return this.#pass;
  }

  #schedule(delayMs: number): void {
    if (this.#stopped.signal.aborted) return;
    this.#timer = setTimeout(() => {
      void this.runOnce().then(() => this.#schedule(this.intervalMs));
    }, delayMs);
    this.#timer.unref();
  }

  async #runPass(): Promise<JanitorReport> {
    const report: JanitorReport = { seen: 0, aborted: 0, failed: 0 };
    const { log } = this.#o;
    // The same bucket name behind two endpoints is two buckets: group by client first.
    const byClient = new Map<S3Client, L[]>();
    for (const location of this.#o.locations()) {
      let client: S3Client;
      try {
        client = this.#o.clientFor?.(location) ?? this.#o.client;
      } catch (err) {
        report.failed++;
        log.warn({ err, bucket: location.s3.bucket, prefix: location.s3.keyPrefix }, 'no S3 client for a user; skipped');
        continue;
      }
      byClient.set(client, [...(byClient.get(client) ?? []), location]);
    }
    for (const [client, locations] of byClient) {
      for (const [bucket, prefixes] of managedPrefixes(locations)) {
        for (const prefix of prefixes) {
          if (this.#stopped.signal.aborted) return report;
          try {
            await this.#cleanPrefix(client, bucket, prefix, report);
          } catch (err) {
            if (this.#stopped.signal.aborted) return report;
            report.failed++;
            log.warn({ err, bucket, prefix }, 'could not list multipart uploads to clean up abandoned ones');
          }
        }
      }
    }
    if (report.aborted > 0 || report.failed > 0) log.info({ ...report }, 'abandoned multipart uploads cleaned up');
    return report;
  }

  async #cleanPrefix(client: S3Client, bucket: string, prefix: string, report: JanitorReport): Promise<void> {
    const { log } = this.#o;
    let keyMarker: string | undefined;
    let uploadIdMarker: string | undefined;
    do {
      const page = await client.send(
        new ListMultipartUploadsCommand({
          Bucket: bucket,
          Prefix: prefix,
          EncodingType: 'url',
          ...(this.#o.pageSize !== undefined ? { MaxUploads: this.#o.pageSize } : {}),
          ...(keyMarker !== undefined ? { KeyMarker: keyMarker } : {}),
          ...(uploadIdMarker !== undefined ? { UploadIdMarker: uploadIdMarker } : {}),
        }),
        { abortSignal: this.#signal() },
      );
      const cutoff = this.#clock.now() - this.#o.maxAgeMs;
      let last: { key: string; uploadId: string } | undefined;
      for (const upload of page.Uploads ?? []) {
        if (upload.Key === undefined || upload.UploadId === undefined) continue;
        const key = decodeKey(upload.Key);
        last = { key, uploadId: upload.UploadId };
        if (upload.Initiated === undefined) continue;
        // S3 filters by prefix already; checked again because a store that ignored it must not lead us astray.
        if (!key.startsWith(prefix)) continue;
        report.seen++;
        if (upload.Initiated.getTime() >= cutoff || this.#o.isLive?.(bucket, key)) continue;
        const fields = { bucket, key, uploadId: upload.UploadId, initiated: upload.Initiated.toISOString() };
        try {
          await client.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId: upload.UploadId }), {
            abortSignal: this.#signal(),
          });
          report.aborted++;
          log.info(fields, 'aborted an abandoned multipart upload');
        } catch (err) {
          if (httpStatusOf(err) === 404 || errorCodeOf(err) === 'NoSuchUpload') continue; // gone meanwhile
          if (this.#stopped.signal.aborted) throw err;
          report.failed++;
          log.warn({ ...fields, err }, 'could not abort an abandoned multipart upload');
        }
      }
      // The next page starts after the last upload listed. NextKeyMarker says the
      // same on AWS, but Swift leaves it empty on one-upload pages and does not
      // URL-encode it, so the listed upload itself is the safer marker.
      if (page.IsTruncated !== true || last === undefined) return;
      if (last.key === keyMarker && last.uploadId === uploadIdMarker) return; // no progress: stop, never loop
      keyMarker = last.key;
      uploadIdMarker = last.uploadId;
    } while (true);
  }

  #signal(): AbortSignal {
    return AbortSignal.any([this.#stopped.signal, AbortSignal.timeout(REQUEST_TIMEOUT_MS)]);
  }
}
