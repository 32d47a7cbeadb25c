/**
 * The multipart half of an upload: parts go out `concurrency` at a time, each
 * with its own retries and deadline, and the writer is held back (submit()
 * stays pending) while every slot is busy. The pipeline never throws into the
 * void: a failed part is recorded, later submit()/complete() calls reject with
 * it, and abort() cleans up the multipart upload.
 */
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  type CompletedPart,
  CreateMultipartUploadCommand,
  type CreateMultipartUploadCommandInput,
  type S3Client,
  UploadPartCommand,
  UploadPartCopyCommand,
} from '@aws-sdk/client-s3';
import type { Logger } from 'pino';
import { BackendError, type StorageError } from '../errors.ts';
import { toStorageError } from './errors.ts';
import { deadlineFor, withRetries } from './retry.ts';
import { LATER_ABORT, retryLater, type RetryLaterOptions } from './retry-later.ts';

/**
 * Counters for the metrics layer; every callback is optional, and one that
 * throws is ignored. A single-PUT upload reports as one part.
 *
 * Bytes held in memory balance out: every byte reported by onBuffered is
 * later reported exactly once by onStored or onDiscarded, whether the upload
 * completes, fails or is aborted.
 */
export interface UploadEvents {
  /** Bytes from a client were accepted into memory. */
  onBuffered?(bytes: number): void;
  /** Buffered bytes were stored in S3 (a part or a single PUT succeeded). */
  onStored?(bytes: number): void;
  /** Buffered bytes were dropped (failure, abort, or data a client sent twice). */
  onDiscarded?(bytes: number): void;
  /** A part starts uploading (once per part, before its first attempt). */
  onPartStart?(bytes: number): void;
  /** A part finished after all attempts; seconds is the wall time. */
  onPartDone?(bytes: number, seconds: number, ok: boolean): void;
  /** An object became visible; lag is the time from commit() to completion. */
  onCommit?(lagSeconds: number): void;
}

/** Time source, injected so tests control it. */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
}

/** Headers of the object being created (storage class, ACL, metadata). */
export type ObjectHeaders = Omit<CreateMultipartUploadCommandInput, 'Bucket' | 'Key'>;

export interface UploadPipelineOptions {
  client: S3Client;
  bucket: string;
  key: string;
  /** User-visible path, for error messages. */
  path: string;
  /** Evaluated when the multipart upload is created, so it sees the latest mtime. */
  headers: () => ObjectHeaders;
  /** Ask S3 for per-part CRC32 checksums (requestChecksum "when_supported"). */
  checksums: boolean;
  concurrency: number;
  /** Deadline of one part attempt; 0 derives it from the part size. */
  partMaxTimeMs: number;
  /** Our attempts per part, each of which the SDK may retry internally. */
  partAttempts?: number;
  events?: UploadEvents;
  /**
   * A submitted part's buffer is no longer read, once per part: `stored` when the part is in S3
   * (the writer may fill the buffer again), false when it was dropped (failure, abort).
   */
  onBufferFree?: (body: Buffer, stored: boolean) => void;
  clock: Clock;
  log: Logger;
  /** Background attempts at an abort that failed; LATER_ABORT unless a test shortens it. */
  laterAbort?: Pick<RetryLaterOptions, 'attempts' | 'delayMs'>;
}

/** A byte range of an existing object to copy server-side as one part (UploadPartCopy). */
export interface CopyRange {
  /** x-amz-copy-source of the object: "bucket/key", URL-encoded. */
  source: string;
  /** First and last byte, inclusive. */
  start: number;
  end: number;
}

interface QueuedPart {
  partNumber: number;
  /** The bytes to upload; empty for a copied part. */
  body: Buffer;
  copy?: CopyRange;
  started: { resolve(): void; reject(err: unknown): void };
}

const DEFAULT_PART_ATTEMPTS = 4;

/** One multipart upload in progress. */
export class UploadPipeline {
  #o: UploadPipelineOptions;
  #uploadId: Promise<string> | undefined;
  #queue: QueuedPart[] = [];
  #running = new Set<Promise<void>>();
  #parts: CompletedPart[] = [];
  #queuedBytes = 0;
  #inFlightBytes = 0;
  #failure: StorageError | undefined;
  #cancel = new AbortController();
  #aborted: Promise<void> | undefined;

  constructor(options: UploadPipelineOptions) {
    this.#o = options;
  }

  /** True once a part was submitted (a multipart upload exists or is being created). */
  get started(): boolean {
    return this.#uploadId !== undefined;
  }

  /** Bytes held by queued and in-flight parts. */
  get bufferedBytes(): number {
    return this.#queuedBytes + this.#inFlightBytes;
  }

  /** The first failure, if any; the upload cannot succeed after one. */
  get failure(): StorageError | undefined {
    return this.#failure;
  }

  /** Queues a full part. Resolves when it starts uploading (there is room), rejects once the upload failed. */
  submit(partNumber: number, body: Buffer): Promise<void> {
    if (this.#failure || this.#aborted) {
      safely(() => this.#o.events?.onDiscarded?.(body.length));
      safely(() => this.#o.onBufferFree?.(body, false));
      return Promise.reject(this.#failure ?? new BackendError(`write ${this.#o.path}: upload aborted`));
    }
    this.#uploadId ??= this.#create();
    const { promise, resolve, reject } = Promise.withResolvers<void>();
    this.#queue.push({ partNumber, body, started: { resolve, reject } });
    this.#queuedBytes += body.length;
    this.#pump();
    return promise;
  }

  /**
   * Queues a part whose bytes S3 copies from an existing object (a resumed
   * upload's prefix). Copied parts hold no memory and report no byte events.
   */
  submitCopy(partNumber: number, copy: CopyRange): Promise<void> {
    if (this.#failure || this.#aborted) {
      return Promise.reject(this.#failure ?? new BackendError(`write ${this.#o.path}: upload aborted`));
    }
    this.#uploadId ??= this.#create();
    const { promise, resolve, reject } = Promise.withResolvers<void>();
    this.#queue.push({ partNumber, body: Buffer.alloc(0), copy, started: { resolve, reject } });
    this.#pump();
    return promise;
  }

  /**
   * Waits for every part, then completes the upload. Rejects (without
   * aborting) on any failure; a failed CompleteMultipartUpload rejects with the
   * SDK error itself, so the caller can inspect it, and may be retried.
   */
  async complete(options: { ifNoneMatch?: boolean; signal?: AbortSignal } = {}): Promise<{ etag: string | undefined }> {
    while (this.#running.size > 0 || this.#queue.length > 0) {
      await Promise.allSettled([...this.#running]);
    }
    if (this.#failure) throw this.#failure;
    // Aborted while waiting (the session ended during CLOSE): the cancelled
    // parts are missing, and completing with the rest would store a file with holes.
    if (this.#aborted) throw new BackendError(`write ${this.#o.path}: upload aborted`);
    const { client, bucket, key } = this.#o;
    const uploadId = await this.#uploadId!;
    const parts = [...this.#parts].sort((a, b) => a.PartNumber! - b.PartNumber!);
    const out = await client.send(
        new CompleteMultipartUploadCommand({
          Bucket: bucket,
          Key: key,
          UploadId: uploadId,
          MultipartUpload: { Parts: parts },
          ...(options.ifNoneMatch ? { IfNoneMatch: '*' } : {}),
        }),
      // Assembling thousands of parts can take S3 minutes; no deadline of ours.
      options.signal ? { abortSignal: options.signal } : {},
    );
    return { etag: out.ETag };
  }

  /** Waits until every submitted part is stored; rejects with the first failure (a parked upload's CLOSE). */
  async drain(): Promise<void> {
    while (this.#running.size > 0 || this.#queue.length > 0) {
      await Promise.allSettled([...this.#running]);
    }
    if (this.#failure) throw this.#failure;
    if (this.#aborted) throw new BackendError(`write ${this.#o.path}: upload aborted`);
  }

  /** Cancels in-flight parts and aborts the multipart upload. Idempotent; never rejects. */
  abort(): Promise<void> {
    this.#aborted ??= this.#abort();
    return this.#aborted;
  }

  async #abort(): Promise<void> {
    this.#cancel.abort();
    this.#rejectQueued(new BackendError(`write ${this.#o.path}: upload aborted`));
    // S3 may still finish parts that were in flight when AbortMultipartUpload
    // runs, leaving storage billed; wait for them to settle first.
    await Promise.allSettled([...this.#running]);
    if (!this.#uploadId) return;
    let uploadId: string;
    try {
      uploadId = await this.#uploadId;
    } catch {
      return; // never created: nothing to clean up
    }
    const { client, bucket, key, log } = this.#o;
    const abortUpload = () =>
      withRetries(
        (signal) =>
          client.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId: uploadId }), {
            abortSignal: signal,
          }),
        { attempts: 3, timeoutMs: 30_000 },
      );
    try {
      await abortUpload();
    } catch (err) {
      // The caller is tearing down and cannot act on this. S3 may be down for
      // longer than the retries above: try again later in the background, so
      // the parts do not stay billed until the janitor's pass (an hour or more).
      log.warn({ err, bucket, key, uploadId }, 'could not abort multipart upload; retrying in the background');
      retryLater(abortUpload, {
        ...(this.#o.laterAbort ?? LATER_ABORT),
        onSuccess: (attempt) => log.info({ bucket, key, uploadId, attempt }, 'aborted multipart upload on a later attempt'),
        onFailure: (failure, attempt, willRetry) => {
          if (!willRetry) log.warn({ err: failure, bucket, key, uploadId, attempt }, 'gave up aborting multipart upload; the janitor will');
        },
      });
    }
  }

  #create(): Promise<string> {
    const { client, bucket, key, path } = this.#o;
    const created = withRetries(
      async (signal) => {
        const out = await client.send(
          new CreateMultipartUploadCommand({
            ...this.#o.headers(),
            Bucket: bucket,
            Key: key,
            ...(this.#o.checksums ? { ChecksumAlgorithm: 'CRC32' as const } : {}),
          }),
          { abortSignal: signal },
        );
        if (!out.UploadId) throw new BackendError(`write ${path}: storage returned no upload id`);
        return out.UploadId;
      },
      // Not cancelled by abort(): a CreateMultipartUpload cut off in flight may still have created the
      // upload on the store, and only its id lets abort() remove it (a quota refusal aborts just then).
      { attempts: 3, timeoutMs: 30_000 },
    );
    // Parts await this promise and record the failure; keep it from being unhandled meanwhile.
    created.catch(() => {});
    return created;
  }

  #pump(): void {
    while (this.#running.size < this.#o.concurrency && this.#queue.length > 0 && !this.#failure) {
      const part = this.#queue.shift()!;
      this.#queuedBytes -= part.body.length;
      this.#inFlightBytes += part.body.length;
      part.started.resolve();
      const work = part.copy ? this.#copyPart(part.partNumber, part.copy) : this.#upload(part.partNumber, part.body);
      const running: Promise<void> = work.finally(() => {
        this.#inFlightBytes -= part.body.length;
        this.#running.delete(running);
        this.#pump();
      });
      this.#running.add(running);
    }
  }

  /** Uploads one part; records a failure instead of rejecting. */
  async #upload(partNumber: number, body: Buffer): Promise<void> {
    const { client, bucket, key, path, events, clock, log } = this.#o;
    const startedAt = clock.now();
    safely(() => events?.onPartStart?.(body.length));
    try {
      const uploadId = await this.#uploadId!;
      const out = await withRetries(
        (signal) => {
          return client.send(
            new UploadPartCommand({
              Bucket: bucket,
              Key: key,
              UploadId: uploadId,
              PartNumber: partNumber,
              Body: body,
              ContentLength: body.length,
            }),
            { abortSignal: signal },
          );
        },
        {
          attempts: this.#o.partAttempts ?? DEFAULT_PART_ATTEMPTS,
          timeoutMs: deadlineFor(this.#o.partMaxTimeMs, body.length, 60_000, 2_000),
          signal: this.#cancel.signal,
          onRetry: (err, attempt) => log.debug({ err, key, partNumber, attempt }, 'retrying part'),
        },
      );
      this.#parts.push({
        PartNumber: partNumber,
        ETag: out.ETag,
        ...(out.ChecksumCRC32 ? { ChecksumCRC32: out.ChecksumCRC32 } : {}),
      });
      safely(() => events?.onPartDone?.(body.length, (clock.now() - startedAt) / 1000, true));
      safely(() => events?.onStored?.(body.length));
      // Every attempt has ended (a timed-out one was aborted with its socket), so nothing reads it.
      safely(() => this.#o.onBufferFree?.(body, true));
    } catch (err) {
      safely(() => events?.onPartDone?.(body.length, (clock.now() - startedAt) / 1000, false));
      safely(() => events?.onDiscarded?.(body.length));
      safely(() => this.#o.onBufferFree?.(body, false));
      if (!this.#cancel.signal.aborted) this.#fail(err, `write ${path}: part ${partNumber}`);
    }
  }

  /** Copies one range server-side; records a failure instead of rejecting. */
  async #copyPart(partNumber: number, copy: CopyRange): Promise<void> {
    const { client, bucket, key, path, log } = this.#o;
    try {
      const uploadId = await this.#uploadId!;
      const out = await withRetries(
        (signal) =>
          client.send(
            new UploadPartCopyCommand({
              Bucket: bucket,
              Key: key,
              UploadId: uploadId,
              PartNumber: partNumber,
              CopySource: copy.source,
              CopySourceRange: `bytes=${copy.start}-${copy.end}`,
            }),
            { abortSignal: signal },
          ),
        {
          attempts: this.#o.partAttempts ?? DEFAULT_PART_ATTEMPTS,
          // Server-side copies run at S3's internal speed; allow for a slow one.
          timeoutMs: deadlineFor(0, copy.end - copy.start + 1, 60_000, 200),
          signal: this.#cancel.signal,
          onRetry: (err, attempt) => log.debug({ err, key, partNumber, attempt }, 'retrying copied part'),
        },
      );
      const crc = out.CopyPartResult?.ChecksumCRC32;
      this.#parts.push({ PartNumber: partNumber, ETag: out.CopyPartResult?.ETag, ...(crc ? { ChecksumCRC32: crc } : {}) });
    } catch (err) {
      if (!this.#cancel.signal.aborted) this.#fail(err, `write ${path}: part ${partNumber}`);
    }
  }

  /** Records the first failure, stops the other parts and fails waiting writers. */
  #fail(err: unknown, context: string): StorageError {
    const failure = toStorageError(err, context);
    if (!this.#failure) {
      this.#failure = failure;
      this.#cancel.abort();
      this.#rejectQueued(failure);
    }
    return this.#failure;
  }

  #rejectQueued(err: unknown): void {
    for (const part of this.#queue.splice(0)) {
      this.#queuedBytes -= part.body.length;
      safely(() => this.#o.events?.onDiscarded?.(part.body.length));
      if (!part.copy) safely(() => this.#o.onBufferFree?.(part.body, false));
      part.started.reject(err);
    }
  }
}

/** Runs a metrics callback; a throwing callback must never break an upload. */
export function safely(callback: () => void): void {
  try {
    callback();
  } catch {
    // ignored on purpose
  }
}
