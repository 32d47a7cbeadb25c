/**
 * Server-side copies, the building block of rename and of setMtime (S3 can
 * change metadata only by copying an object onto itself). CopyObject handles
 * up to 5 GiB; larger objects are copied as a multipart upload of
 * UploadPartCopy ranges, which also has to carry the metadata over by hand.
 */
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  type CompletedPart,
  CopyObjectCommand,
  type CopyObjectCommandInput,
  CreateMultipartUploadCommand,
  HeadObjectCommand,
  type HeadObjectCommandOutput,
  type S3Client,
  UploadPartCopyCommand,
} from '@aws-sdk/client-s3';
import type { Logger } from 'pino';
import type { S3Config } from '../../config/types.ts';
import { BackendError } from '../errors.ts';
import { forEachBounded } from './bounded.ts';
import { toStorageError } from './errors.ts';
import { MAX_PART_SIZE, MAX_PARTS } from './part-size.ts';
import { deadlineFor, withRetries } from './retry.ts';
import { writtenObject, type WrittenObject } from './mtime-cache.ts';
import { keepResponseDate } from './response-date.ts';

const MiB = 1024 ** 2;

export interface CopierOptions {
  client: S3Client;
  bucket: string;
  config: S3Config;
  log: Logger;
  /** Objects above this size use a multipart copy; S3's CopyObject limit unless a test lowers it. */
  multipartThreshold?: number;
  /** Part size of a multipart copy (raised when 10,000 parts would not cover the object). */
  partSize?: number;
  /** UploadPartCopy requests in flight for one object. */
  partConcurrency?: number;
}

/** The object to copy; `head` saves a HeadObject when the caller already has one. */
export interface CopySource {
  key: string;
  size: number;
  head?: HeadObjectCommandOutput;
  /** From a listing; S3 would otherwise reset copies to STANDARD. */
  storageClass?: string;
  /** Copy only this version (a single-part ETag; S3 answers 412 otherwise). */
  ifMatch?: string;
}

/** Copies objects within one bucket. */
export class Copier {
  #o: CopierOptions;

  constructor(options: CopierOptions) {
    this.#o = options;
  }

  /**
   * Copies `source` to `toKey`. With `metadata`, the user metadata is replaced
   * (the other headers are kept); without, everything is copied as is. Returns
   * what a single CopyObject stored where it knows the stored mtime (docs/adr/0022).
   */
  async copy(source: CopySource, toKey: string, context: string, metadata?: Record<string, string>): Promise<WrittenObject | undefined> {
    try {
      if (source.size > (this.#o.multipartThreshold ?? MAX_PART_SIZE)) {
        await this.#copyMultipart(source, toKey, context, metadata);
        return undefined;
      }
      return await this.#copySingle(source, toKey, metadata);
    } catch (err) {
      throw toStorageError(err, context);
    }
  }

  async #copySingle(source: CopySource, toKey: string, metadata?: Record<string, string>): Promise<WrittenObject | undefined> {
    const { client, bucket } = this.#o;
    let input: CopyObjectCommandInput = {
      Bucket: bucket,
      Key: toKey,
      CopySource: copySource(bucket, source.key),
      ...this.#targetHeaders(source),
      ...(source.ifMatch ? { CopySourceIfMatch: source.ifMatch } : {}),
      MetadataDirective: 'COPY',
    };
    if (metadata) {
      const head = source.head ?? (await this.#head(source.key));
      input = { ...input, ...keptHeaders(head), Metadata: metadata, MetadataDirective: 'REPLACE' };
    }
    const startedAt = performance.now();
    let answer: { etag: string | undefined; date: Date | undefined } | undefined;
    const send = async (signal: AbortSignal) => {
      const command = new CopyObjectCommand(input);
      const date = keepResponseDate(command);
      const output = await client.send(command, { abortSignal: signal });
      answer = { etag: output.CopyObjectResult?.ETag, date: date() };
    };
    // Server-side copies run at S3's internal speed; allow for a slow one.
    await withRetries(send, { attempts: 3, timeoutMs: deadlineFor(0, source.size, 60_000, 200) });
    const stored = metadata ?? source.head?.Metadata;
    if (!answer?.etag || !answer.date || !stored) return undefined;
    return writtenObject(answer.etag, answer.date, performance.now() - startedAt, { size: source.size, metadata: stored, storageClass: input.StorageClass });
  }

  async #copyMultipart(
    source: CopySource,
    toKey: string,
    context: string,
    metadata?: Record<string, string>,
  ): Promise<void> {
    const { client, bucket, log } = this.#o;
    const head = source.head ?? (await this.#head(source.key));
    const created = await client.send(
      new CreateMultipartUploadCommand({
        Bucket: bucket,
        Key: toKey,
        ...keptHeaders(head),
        ...this.#targetHeaders({ ...source, head }),
        Metadata: metadata ?? head.Metadata ?? {},
      }),
      { abortSignal: AbortSignal.timeout(30_000) },
    );
    const uploadId = created.UploadId;
    if (!uploadId) throw new BackendError(`${context}: storage returned no upload id`);
    try {
      const partSize = Math.max(
        this.#o.partSize ?? 512 * MiB,
        Math.ceil(source.size / MAX_PARTS / MiB) * MiB,
      );
      const ranges: { partNumber: number; start: number; end: number }[] = [];
      for (let start = 0, n = 1; start < source.size; start += partSize, n++) {
        ranges.push({ partNumber: n, start, end: Math.min(start + partSize, source.size) - 1 });
      }
      const parts: CompletedPart[] = [];
      await forEachBounded(ranges, this.#o.partConcurrency ?? 4, async ({ partNumber, start, end }) => {
        const out = await withRetries(
          (signal) =>
            client.send(
              new UploadPartCopyCommand({
                Bucket: bucket,
                Key: toKey,
                UploadId: uploadId,
                PartNumber: partNumber,
                CopySource: copySource(bucket, source.key),
                CopySourceRange: `bytes=${start}-${end}`,
              }),
              { abortSignal: signal },
            ),
          { attempts: 4, timeoutMs: deadlineFor(0, end - start + 1, 60_000, 200) },
        );
        parts.push({ PartNumber: partNumber, ETag: out.CopyPartResult?.ETag });
      });
      // A source replaced mid-copy would yield a mix of two versions. Checked
      // after the fact because CopySourceIfMatch fails on Swift for objects
      // that were themselves uploaded in parts (their "-N" ETags).
      const after = await this.#head(source.key);
      if (after.ETag !== head.ETag) throw new BackendError(`${context}: the file changed during the operation`);
      parts.sort((a, b) => a.PartNumber! - b.PartNumber!);
      await client.send(
        new CompleteMultipartUploadCommand({
          Bucket: bucket,
          Key: toKey,
          UploadId: uploadId,
          MultipartUpload: { Parts: parts },
        }),
      );
    } catch (err) {
      await client
        .send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: toKey, UploadId: uploadId }))
        .catch((abortErr: unknown) =>
          log.warn({ err: abortErr, key: toKey, uploadId }, 'could not abort multipart copy'),
        );
      throw err;
    }
  }

  async #head(key: string): Promise<HeadObjectCommandOutput> {
    return this.#o.client.send(new HeadObjectCommand({ Bucket: this.#o.bucket, Key: key }), {
      abortSignal: AbortSignal.timeout(30_000),
    });
  }

  /**
   * Storage class and ACL: the configured ones, else the source's storage
   * class, since a copy without one silently becomes STANDARD.
   */
  #targetHeaders(source: CopySource): Pick<CopyObjectCommandInput, 'StorageClass' | 'ACL'> {
    const { acl } = this.#o.config;
    const storageClass = this.#o.config.storageClass || source.storageClass || source.head?.StorageClass;
    return {
      ...(storageClass ? { StorageClass: storageClass as CopyObjectCommandInput['StorageClass'] } : {}),
      ...(acl ? { ACL: acl as CopyObjectCommandInput['ACL'] } : {}),
    };
  }
}

/** Standard headers a REPLACE copy would otherwise drop. */
function keptHeaders(head: HeadObjectCommandOutput) {
  return {
    ...(head.ContentType ? { ContentType: head.ContentType } : {}),
    ...(head.CacheControl ? { CacheControl: head.CacheControl } : {}),
    ...(head.ContentDisposition ? { ContentDisposition: head.ContentDisposition } : {}),
    ...(head.ContentEncoding ? { ContentEncoding: head.ContentEncoding } : {}),
    ...(head.ContentLanguage ? { ContentLanguage: head.ContentLanguage } : {}),
  };
}

/** x-amz-copy-source is "bucket/key", URL-encoded; "/" between segments stays literal. */
export function copySource(bucket: string, key: string): string {
  return `${bucket}/${key.split('/').map(encodeURIComponent).join('/')}`;
}
