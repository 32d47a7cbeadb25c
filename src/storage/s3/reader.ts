/**
 * Reading an S3 object at arbitrary offsets. SFTP clients read in small
 * requests (32-256 KiB); one GET per request would be slow and costly, so a
 * sequential reader is served from chunks of download.partSize fetched ahead,
 * up to download.concurrency of them in parallel. A random reader gets exactly
 * the bytes it asks for. Memory per reader is bounded by partSize × concurrency.
 */
import { Readable } from 'node:stream';
import { GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import type { TransferConfig } from '../../config/types.ts';
import { BackendError, InvalidRequestError, NotFoundError } from '../errors.ts';
import type { FileReader } from '../storage.ts';
import { errorCodeOf, httpStatusOf, toStorageError } from './errors.ts';
import { deadlineFor, withRetries } from './retry.ts';

/** What an S3Reader needs; size, etag and mtime come from the first GET (or a HEAD) at open. */
export interface S3ReaderOptions {
  client: S3Client;
  bucket: string;
  key: string;
  /** The user-visible path, for error messages. */
  path: string;
  size: number;
  /** Pins every ranged GET to the version opened, so a concurrent overwrite fails the read instead of mixing versions. */
  etag?: string;
  mtime: Date;
  download: TransferConfig;
  /** The first chunk, already requested at open (see getFirstChunk). */
  first?: FirstChunk;
  /** Aborts the first chunk's body when the reader is closed early. */
  closer?: AbortController;
}

/** What the first ranged GET of an object answered: enough to open it without a HEAD. */
export interface FirstChunk {
  /** The whole object's size, from Content-Range (or Content-Length when the store sent it whole). */
  size: number;
  etag: string | undefined;
  lastModified: Date | undefined;
  metadata: Record<string, string> | undefined;
  /** Bytes [0, end) of the object, still arriving when the open returns. */
  end: number;
  data: Promise<Received>;
}

/**
 * Opens an object with its first ranged GET (bytes 0 to partSize-1, or to `maxBytes`-1 when
 * smaller): the response headers carry the size, ETag, Last-Modified and metadata that a HEAD
 * would, so the open costs one request and the first READs are served from its body. Undefined
 * when there is no such object; "empty" when the store refuses the range, which is how AWS answers
 * (416) for an object of 0 bytes.
 */
export async function getFirstChunk(
  options: Pick<S3ReaderOptions, 'client' | 'bucket' | 'key' | 'path' | 'download'>,
  closer: AbortController,
  maxBytes = Infinity,
): Promise<FirstChunk | 'empty' | undefined> {
  const { client, bucket, key, path, download } = options;
  const partSize = Math.max(1, Math.min(download.partSize, maxBytes));
  try {
    return await withRetries(
      async (signal) => {
        const response = await client.send(
          new GetObjectCommand({ Bucket: bucket, Key: key, Range: `bytes=0-${partSize - 1}` }),
          { abortSignal: signal },
        );
        const size = wholeSize(response.ContentRange, response.ContentLength);
        const end = Math.min(size, partSize);
        const body = response.Body;
        let data: Promise<Received>;
        if (!body) data = Promise.reject(new BackendError(`read ${path}: empty response from storage`));
        else if (response.ContentRange === undefined && size > partSize) {
          // A store that ignored the range: the body is the whole object, too much to hold.
          (body as { destroy?: () => void }).destroy?.();
          data = Promise.reject(new BackendError(`read ${path}: storage ignored the range`));
        } else data = readExactly(body, end, path);
        data.catch(() => {});
        return { size, etag: response.ETag, lastModified: response.LastModified, metadata: response.Metadata, end, data };
      },
      {
        attempts: GET_ATTEMPTS,
        timeoutMs: deadlineFor(download.partMaxTimeMs, partSize, 30_000, 1_000),
        signal: closer.signal,
      },
    );
  } catch (err) {
    if (httpStatusOf(err) === 416 || errorCodeOf(err) === 'InvalidRange') return 'empty';
    const failure = toStorageError(err, `open ${path}`);
    if (failure instanceof NotFoundError) return undefined;
    throw failure;
  }
}

/** "bytes 0-99/12345" → 12345; without a Content-Range the body is the whole object. */
function wholeSize(contentRange: string | undefined, contentLength: number | undefined): number {
  const total = contentRange === undefined ? undefined : /\/(\d+)\s*$/.exec(contentRange)?.[1];
  return total !== undefined ? Number(total) : (contentLength ?? 0);
}

/**
 * Bytes of one ranged GET as the socket delivered them: the body's own buffers, kept as they are.
 * Collecting them into one buffer (the SDK's transformToByteArray) and copying each READ's bytes
 * out again cost two copies of every byte and two fresh allocations of its size, which on a big
 * download was a good part of the server's CPU (GC and page faults included). A READ is answered
 * with a view of one piece when it lies within one (most do), otherwise with a copy of its bytes;
 * a view pins only its piece (a socket read, at most 64 KiB), not the whole chunk.
 */
export class Received {
  /** Offset of each piece from the start of the range, ascending. */
  #starts: number[];
  #pieces: Buffer[];
  readonly length: number;

  constructor(pieces: Buffer[]) {
    this.#pieces = pieces;
    this.#starts = [];
    let at = 0;
    for (const piece of pieces) {
      this.#starts.push(at);
      at += piece.length;
    }
    this.length = at;
  }

  /** Bytes [from, to) of the range (0 <= from < to <= length). */
  slice(from: number, to: number): Buffer {
    let i = this.#pieceAt(from);
    const first = this.#pieces[i]!;
    const offset = from - this.#starts[i]!;
    if (to - from <= first.length - offset) return first.subarray(offset, offset + to - from);
    const out = Buffer.allocUnsafe(to - from);
    let filled = first.copy(out, 0, offset);
    while (filled < out.length) filled += this.#pieces[++i]!.copy(out, filled, 0, out.length - filled);
    return out;
  }

  #pieceAt(offset: number): number {
    let lo = 0;
    let hi = this.#starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (this.#starts[mid]! <= offset) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }
}

type Body = { transformToByteArray(): Promise<Uint8Array> };

async function readExactly(body: Body, bytes: number, path: string): Promise<Received> {
  const pieces: Buffer[] = [];
  let received = 0;
  if (body instanceof Readable) {
    // Iterating ends with an error when the body is cut short or the request is aborted.
    for await (const chunk of body as AsyncIterable<Buffer | string>) {
      const piece = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
      received += piece.length;
      if (received > bytes) break;
      pieces.push(piece);
    }
  } else {
    const data = await body.transformToByteArray();
    received = data.byteLength;
    pieces.push(Buffer.from(data.buffer, data.byteOffset, data.byteLength));
  }
  if (received !== bytes) {
    throw new BackendError(`read ${path}: storage returned ${received > bytes ? 'more than' : received} bytes, expected ${bytes}`);
  }
  return new Received(pieces);
}

// Our attempts per GET, on top of the SDK's retries of each attempt.
const GET_ATTEMPTS = 3;

interface Chunk {
  start: number;
  end: number;
  data: Promise<Received>;
}

/** A FileReader over one S3 object. */
export class S3Reader implements FileReader {
  readonly size: number;
  readonly mtime: Date;
  #options: S3ReaderOptions;
  #partSize: number;
  #concurrency: number;
  #chunks = new Map<number, Chunk>();
  /** End offset of the previous read; -1 before the first. */
  #lastEnd = -1;
  #closed: AbortController;

  constructor(options: S3ReaderOptions) {
    this.#options = options;
    this.size = options.size;
    this.mtime = options.mtime;
    this.#closed = options.closer ?? new AbortController();
    this.#partSize = Math.max(1, options.download.partSize);
    this.#concurrency = Math.max(1, options.download.concurrency);
    const first = options.first;
    if (first && first.end > 0) {
      // Its body failing is no read error yet: the chunk is fetched again, with retries.
      const data = first.data.catch(() => this.#fetch(0, first.end));
      const chunk = { start: 0, end: first.end, data };
      this.#chunks.set(0, chunk);
      data.catch(() => {
        if (this.#chunks.get(0) === chunk) this.#chunks.delete(0);
      });
    }
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
      if (!chunk) return (await this.#fetch(offset, end)).slice(0, end - offset);
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
    if (chunks.length === 1) {
      const chunk = chunks[0]!;
      return (await chunk.data).slice(offset - chunk.start, end - chunk.start);
    }
    const pieces: Buffer[] = [];
    for (const chunk of chunks) {
      const data = await chunk.data;
      pieces.push(data.slice(Math.max(offset, chunk.start) - chunk.start, Math.min(end, chunk.end) - chunk.start));
    }
    return Buffer.concat(pieces);
  }

  /** One ranged GET of [start, end), with retries and a deadline per attempt. */
  async #fetch(start: number, end: number): Promise<Received> {
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
          return readExactly(response.Body, bytes, path);
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
