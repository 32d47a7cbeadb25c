/**
 * Reading an S3 object at arbitrary offsets. SFTP clients read in small
 * requests (32-256 KiB); one GET per request would be slow and costly, so a
 * sequential reader is served from chunks of download.partSize fetched ahead,
 * up to download.concurrency of them in parallel. A random reader gets exactly
 * the bytes it asks for. Memory per reader is bounded by partSize × concurrency.
 */
import { GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import type { TransferConfig } from '../../config/types.ts';
import { BackendError, InvalidRequestError } from '../errors.ts';
import type { FileReader } from '../storage.ts';
import { toStorageError } from './errors.ts';
import { deadlineFor, withRetries } from './retry.ts';

/** What an S3Reader needs; size and etag come from the HeadObject done at open. */
export interface S3ReaderOptions {
  client: S3Client;
  bucket: string;
  key: string;
  /** The user-visible path, for error messages. */
  path: string;
  size: number;
  /** Pins every ranged GET to the version opened, so a concurrent overwrite fails the read instead of mixing versions. */
  etag?: string;
  download: TransferConfig;
}

// Our attempts per GET, on top of the SDK's retries of each attempt.
const GET_ATTEMPTS = 3;

interface Chunk {
  start: number;
  end: number;
  data: Promise<Buffer>;
}

/** A FileReader over one S3 object. */
export class S3Reader implements FileReader {
  readonly size: number;
  #options: S3ReaderOptions;
  #partSize: number;
  #concurrency: number;
  #chunks = new Map<number, Chunk>();
  /** End offset of the previous read; -1 before the first. */
  #lastEnd = -1;
  #closed = new AbortController();

  constructor(options: S3ReaderOptions) {
    this.#options = options;
    this.size = options.size;
    this.#partSize = Math.max(1, options.download.partSize);
    this.#concurrency = Math.max(1, options.download.concurrency);
  }

  async read(offset: number, length: number): Promise<Buffer> {
    if (this.#closed.signal.aborted) throw new InvalidRequestError('file is closed');
    if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length < 0) {
      throw new InvalidRequestError(`invalid read range (offset ${offset}, length ${length})`);
    }
    if (offset >= this.size || length === 0) return Buffer.alloc(0);
    const end = Math.min(offset + length, this.size);
    // The first read of a file does not start read-ahead: `file`, thumbnailers
    // and resume logic often read one small block and close.
    const sequential = offset === this.#lastEnd;
    this.#lastEnd = end;

    const first = Math.floor(offset / this.#partSize);
    const last = Math.floor((end - 1) / this.#partSize);
    if (sequential && last - first < this.#concurrency) {
      this.#advanceWindow(first);
    }
    const held: Chunk[] = [];
    for (let index = first; index <= last; index++) {
      const chunk = this.#chunks.get(index);
      if (!chunk) return this.#fetch(offset, end);
      held.push(chunk);
    }
    return this.#fromChunks(offset, end, held);
  }

  async close(): Promise<void> {
    this.#closed.abort();
    this.#chunks.clear();
  }

  /** Keeps chunks first..first+concurrency-1 fetching and forgets the ones behind. */
  #advanceWindow(first: number): void {
    for (const index of this.#chunks.keys()) {
      // Not aborted: a read issued just before may still be waiting on it.
      if (index < first) this.#chunks.delete(index);
    }
    const chunkCount = Math.ceil(this.size / this.#partSize);
    const stop = Math.min(first + this.#concurrency, chunkCount);
    for (let index = first; index < stop; index++) {
      if (this.#chunks.has(index)) continue;
      const start = index * this.#partSize;
      const end = Math.min(start + this.#partSize, this.size);
      const data = this.#fetch(start, end);
      const chunk = { start, end, data };
      this.#chunks.set(index, chunk);
      // A failed chunk is dropped so a later read retries it; the no-op keeps a
      // prefetch nobody awaited from becoming an unhandled rejection.
      data.catch(() => {
        if (this.#chunks.get(index) === chunk) this.#chunks.delete(index);
      });
    }
  }

  /** Serves [offset, end) from chunks captured up front, so window moves meanwhile cannot drop them. */
  async #fromChunks(offset: number, end: number, chunks: Chunk[]): Promise<Buffer> {
    const pieces: Buffer[] = [];
    for (const chunk of chunks) {
      const data = await chunk.data;
      const from = Math.max(offset, chunk.start) - chunk.start;
      const to = Math.min(end, chunk.end) - chunk.start;
      pieces.push(data.subarray(from, to));
    }
    // Copy out of the chunk so a slow consumer does not pin the whole chunk.
    return pieces.length === 1 ? Buffer.from(pieces[0]!) : Buffer.concat(pieces);
  }

  /** One ranged GET of [start, end), with retries and a deadline per attempt. */
  async #fetch(start: number, end: number): Promise<Buffer> {
    const { client, bucket, key, path, etag, download } = this.#options;
    const bytes = end - start;
    try {
      return await withRetries(
        async (signal) => {
          const response = await client.send(
            new GetObjectCommand({
              Bucket: bucket,
              Key: key,
              Range: `bytes=${start}-${end - 1}`,
              ...(etag ? { IfMatch: etag } : {}),
            }),
            { abortSignal: signal },
          );
          if (!response.Body) throw new BackendError(`read ${path}: empty response from storage`);
          const body = await response.Body.transformToByteArray();
          if (body.byteLength !== bytes) {
            throw new BackendError(`read ${path}: storage returned ${body.byteLength} bytes, expected ${bytes}`);
          }
          return Buffer.from(body.buffer, body.byteOffset, body.byteLength);
        },
        {
          attempts: GET_ATTEMPTS,
          timeoutMs: deadlineFor(download.partMaxTimeMs, bytes, 30_000, 1_000),
          signal: this.#closed.signal,
        },
      );
    } catch (err) {
      throw toStorageError(err, `read ${path}`);
    }
  }
}
