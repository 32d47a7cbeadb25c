/**
 * Streaming upload of one file. Bytes arrive as SFTP WRITE requests (offset +
 * data, usually in order, sometimes a little out of order when a client
 * pipelines), are gathered into parts and handed to the UploadPipeline. No
 * disk spool: memory per upload is bounded by partSize × (concurrency + 2)
 * plus the out-of-order window, and write() waits while parts are in flight.
 * Every part buffer (and the spare) is reserved from the server's UploadBudget
 * before it is filled, so all uploads together stay within it; a write that
 * needs a reservation waits for it, and the writes after it wait in turn.
 * Nothing is visible in S3 until commit() succeeds.
 */
import { GetObjectCommand, HeadObjectCommand, type HeadObjectCommandOutput, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import type { Logger } from 'pino';
import type { S3Config } from '../../config/types.ts';
import { ContentHashes } from '../content-hashes.ts';
import { UploadBudget } from '../upload-budget.ts';
import { AlreadyExistsError, BackendError, InvalidRequestError, NotFoundError, UnsupportedError } from '../errors.ts';
import type { FileWriter } from '../storage.ts';
import { copySource } from './copier.ts';
import { isNotImplemented, isPreconditionFailed, toStorageError } from './errors.ts';
import { MAX_OBJECT_SIZE, MAX_PARTS, MIN_PART_SIZE, partSizeFor } from './part-size.ts';
import { deadlineFor, withRetries } from './retry.ts';
import { type Clock, type ObjectHeaders, safely, UploadPipeline, type UploadEvents } from './upload-pipeline.ts';
import type { UploadRegistry } from './upload-registry.ts';
import { mtimeMetadata, writtenObject, type WrittenObject } from './mtime-cache.ts';
import { keepResponseDate } from './response-date.ts';
import type { ParkedUpload } from './temp-uploads.ts';

/** How far ahead of the contiguous data a client may write (bytes held out of order). */
export const DEFAULT_WINDOW_BYTES = 16 * 1024 ** 2;
// The first part's buffer grows from here as data arrives, so a 1 KiB file
// neither allocates nor reserves a whole part; past it the whole part is reserved.
const INITIAL_PART_CAPACITY = 256 * 1024;
/** Largest range of a resumed prefix copied as one part (S3 allows 5 GiB; smaller ranges copy in parallel). */
const COPY_PART_BYTES = 1024 ** 3;

/**
 * Whether the store honours If-None-Match: * on PutObject and on
 * CompleteMultipartUpload (AWS since 2024, recent MinIO and Ceph). Swift's
 * s3api answers 501 on PutObject but honours it on completion, so each is
 * learnt separately, once, and shared by all sessions.
 */
export class ConditionalWrites {
  put: boolean | undefined = undefined;
  complete: boolean | undefined = undefined;
}

export interface S3WriterOptions {
  client: S3Client;
  bucket: string;
  key: string;
  /** User-visible path, for error messages. */
  path: string;
  config: S3Config;
  exclusive: boolean;
  uploads: UploadRegistry;
  conditionalWrites: ConditionalWrites;
  /**
   * Adds metadata to the committed object (S3 changes metadata only by
   * copying the object onto itself): an mtime that arrived after the
   * multipart upload was created. Does nothing when the object's ETag is no longer `etag` (replaced
   * meanwhile).
   */
  applyMetadata: (metadata: Record<string, string>, etag: string | undefined, key: string) => Promise<void>;
  /** Compute MD5/SHA-1/SHA-256 while the data streams through and store them with a single-PUT object. */
  storeChecksums?: boolean;
  /** Allow continueExisting() (SFTP resume); false refuses it. */
  resume?: boolean;
  /**
   * Called once the object is stored (caches of the key's old version drop it); `written` when one
   * PutObject stored it at the opened key, as it was sent (docs/adr/0022).
   */
  onCommitted?: (written?: WrittenObject) => void;
  events?: UploadEvents;
  /** The server's part memory; absent: unlimited. */
  budget?: UploadBudget;
  clock: Clock;
  log: Logger;
  /** Out-of-order window; DEFAULT_WINDOW_BYTES unless a test shrinks it. */
  windowBytes?: number;
  /**
   * An upload to a temporary name (temp-uploads.ts): the multipart upload is created at
   * `finalKey`, and commit() parks the closed upload instead of completing it.
   */
  deferred?: DeferredUpload;
}

/** What a writer needs to park an upload to a temporary name and finish it later. */
export interface DeferredUpload {
  finalKey: string;
  park(upload: ParkedUpload): void;
  /** Copies a completed object to another key with this metadata merged in, then deletes the source. */
  /** `etag`: what the completion at `fromKey` answered; another object found there is not moved. */
  move(fromKey: string, toKey: string, metadata: Record<string, string>, etag: string | undefined): Promise<void>;
  /** Deletes a key (the resumed temporary object, once its content lives at the final key). */
  remove(key: string): Promise<void>;
}

type State = 'open' | 'committing' | 'parked' | 'committed' | 'aborted';

/** A FileWriter that uploads to S3 with PutObject or a multipart upload. */
export class S3Writer implements FileWriter {
  #o: S3WriterOptions;
  #state: State = 'open';
  #pipeline: UploadPipeline;
  #deregister: () => void;
  /** Contiguous bytes accepted. */
  #next = 0;
  /** The part being filled and its fill level. */
  #part: Buffer | undefined;
  #partFill = 0;
  /** Bytes reserved from the budget for the part being filled (INITIAL_PART_CAPACITY or the whole part). */
  #reserved = 0;
  /**
   * Stored parts' buffers, kept to be filled again: a fresh 16 MiB buffer per part costs page
   * faults and GC. Up to upload.concurrency of them, so an upload whose parts overlap in flight stops
   * allocating once it reaches its peak; no more buffers exist than that peak needed.
   */
  #spares: { buffer: Buffer; reserved: number }[] = [];
  /** The spares' registration with the budget, to be dropped when another upload waits. */
  #unholdSpare: (() => void) | undefined;
  /** Reservations of submitted parts, by their memory, until the pipeline frees them. */
  #reservedOf = new WeakMap<ArrayBufferLike, number>();
  #budget: UploadBudget;
  /** Writes run one after another: a write waiting for a reservation holds back the later ones. */
  #gate: Promise<void> = Promise.resolve();
  /** Aborted when the upload is aborted: a reservation still waiting gives up. */
  #ended = new AbortController();
  #partNumber = 1;
  /** Out-of-order pieces by offset. */
  #pending = new Map<number, Buffer>();
  #pendingBytes = 0;
  /** Bytes of a single PutObject in flight (taken out of the part buffer). */
  #singleBytes = 0;
  /** Resolves when the latest submitted part has started: the backpressure signal. */
  #room: Promise<void> = Promise.resolve();
  #mtime: Date | undefined;
  #mtimeSentAtCreate: Date | undefined;
  #commit: Promise<void> | undefined;
  #abort: Promise<void> | undefined;
  /** Hashes of every byte so far; undefined when not wanted or when a resumed prefix was copied unseen. */
  #hashes: ContentHashes | undefined;
  /** The object a resumed upload continues: its ETag, checked again before completing. */
  #continued: { etag: string | undefined } | undefined;

  constructor(options: S3WriterOptions) {
    this.#o = options;
    this.#budget = options.budget ?? UploadBudget.unlimited();
    const { config } = options;
    this.#pipeline = new UploadPipeline({
      client: options.client,
      bucket: options.bucket,
      // A temporary name's parts go to the final key from the start: a multipart upload's key is fixed at creation.
      key: options.deferred?.finalKey ?? options.key,
      path: options.path,
      headers: () => {
        this.#mtimeSentAtCreate = this.#mtime;
        return this.#headers();
      },
      checksums: config.requestChecksum === 'when_supported',
      concurrency: Math.max(1, config.upload.concurrency),
      partMaxTimeMs: config.upload.partMaxTimeMs,
      ...(options.events ? { events: options.events } : {}),
      onBufferFree: (body, stored) => this.#partFree(body, stored),
      clock: options.clock,
      log: options.log,
    });
    if (options.storeChecksums) this.#hashes = new ContentHashes();
    const startedAtMs = options.clock.now();
    const self = this;
    this.#deregister = options.uploads.add(options.bucket, options.key, {
      get bytesReceived() {
        return self.bytesReceived;
      },
      startedAtMs,
    });
  }

  get bytesReceived(): number {
    return this.#next;
  }

  /** Bytes held in memory: the part being filled, queued and in-flight parts, out-of-order pieces. */
  get bufferedBytes(): number {
    return this.#partFill + this.#pipeline.bufferedBytes + this.#pendingBytes + this.#singleBytes;
  }

  async write(offset: number, data: Buffer): Promise<void> {
    if (this.#state !== 'open') throw new InvalidRequestError(`write ${this.#o.path}: file is closed`);
    if (this.#pipeline.failure) throw this.#pipeline.failure;
    if (!Number.isSafeInteger(offset) || offset < 0) {
      throw new InvalidRequestError(`write ${this.#o.path}: invalid offset ${offset}`);
    }
    if (data.length === 0) return this.#room;
    if (offset + data.length > MAX_OBJECT_SIZE) {
      throw new InvalidRequestError(`write ${this.#o.path}: file larger than the 5 TiB S3 allows`);
    }
    const accepted = this.#gate.then(() => this.#accept(offset, data));
    this.#gate = accepted.then(
      () => {},
      () => {},
    );
    // Wrapped: the gate waits for the bytes to be taken in, not for the part to start uploading.
    const { room } = await accepted;
    return room;
  }

  /** One write, in its turn: the offset is checked against what the writes before it left. */
  async #accept(offset: number, data: Buffer): Promise<{ room: Promise<void> }> {
    if (this.#abort) throw new InvalidRequestError(`write ${this.#o.path}: upload was aborted`);
    if (this.#pipeline.failure) throw this.#pipeline.failure;
    if (offset < this.#next) {
      // Parts already sent cannot be changed (S3 has no partial update), and
      // re-sending bytes is not something SFTP clients do.
      throw new InvalidRequestError(
        `write ${this.#o.path}: cannot rewrite data already sent (offset ${offset} < ${this.#next})`,
      );
    }
    if (offset > this.#next) {
      this.#hold(offset, data);
      return { room: Promise.resolve() };
    }
    await this.#appendCounted(data);
    await this.#drainPending();
    return { room: this.#room };
  }

  setMtime(mtime: Date): void {
    this.#mtime = mtime;
  }

  async continueExisting(size: number): Promise<void> {
    const { path } = this.#o;
    if (!this.#o.resume) {
      throw new UnsupportedError(`resuming an upload into an existing file is turned off on this server (uploads.resume); upload it again from the start`);
    }
    if (this.#state !== 'open' || this.#next !== 0 || this.#pipeline.started || this.#continued) {
      throw new InvalidRequestError(`write ${path}: can only resume before the first write`);
    }
    if (this.#o.exclusive) throw new InvalidRequestError(`write ${path}: an exclusive create cannot resume`);
    const head = await this.#headExisting();
    const current = head?.ContentLength;
    if (current === undefined || current !== size) {
      throw new UnsupportedError(
        `resuming an upload at offset ${size} is not supported: ${path} holds ${current ?? 0} bytes, and an upload can only continue from its end`,
      );
    }
    this.#continued = { etag: head?.ETag };
    if (size < MIN_PART_SIZE) {
      // Too small for a part of its own: read it back and send it as the start of the first part.
      await this.#appendCounted(await this.#readExisting(size, head?.ETag));
      return;
    }
    // Equal ranges of at most COPY_PART_BYTES: every one is >= 5 MiB since the object is.
    const count = Math.ceil(size / COPY_PART_BYTES);
    const rangeSize = Math.ceil(size / count);
    const source = copySource(this.#o.bucket, this.#o.key);
    for (let start = 0; start < size; start += rangeSize) {
      const started = this.#pipeline.submitCopy(this.#partNumber++, { source, start, end: Math.min(start + rangeSize, size) - 1 });
      started.catch(() => {});
      this.#room = started;
    }
    // The copied bytes never pass through here, so no hash can cover the whole object.
    this.#hashes = undefined;
    this.#next = size;
  }

  commit(): Promise<void> {
    if (this.#o.deferred && !this.#finishing) {
      this.#commit ??= this.#park();
      return this.#commit;
    }
    if (this.#state === 'aborted') {
      return Promise.reject(new InvalidRequestError(`write ${this.#o.path}: upload was aborted`));
    }
    this.#commit ??= this.#doCommit();
    return this.#commit;
  }

  /** Set once a parked upload is being finished: commit() then really completes. */
  #finishing: { key: string } | undefined;

  /**
   * CLOSE of an upload to a temporary name: every byte is stored (as parts, or held for one
   * PUT), nothing is visible yet; the upload waits in TempUploads for its rename.
   */
  async #park(): Promise<void> {
    const { path } = this.#o;
    this.#state = 'committing';
    try {
      await this.#gate;
      this.#dropSpare();
      if (this.#pending.size > 0) throw new InvalidRequestError(`write ${path}: data missing at offset ${this.#next}`);
      if (this.#pipeline.failure) throw this.#pipeline.failure;
      if (this.#pipeline.started) {
        if (this.#partFill > 0) this.#submitPart();
        await this.#room;
        await this.#pipeline.drain();
      }
    } catch (err) {
      await this.abort();
      throw toStorageError(err, `write ${path}`);
    }
    this.#state = 'parked';
    const deferred = this.#o.deferred!;
    let finished: Promise<void> | undefined;
    deferred.park({
      finalKey: deferred.finalKey,
      finish: (target) => (finished ??= this.#finish(target)),
      abort: () => this.#forceAbort(),
      setMtime: (mtime) => this.setMtime(mtime),
    });
  }

  /** Stores a parked upload at the final key (the expected rename) or at its temporary key. */
  async #finish(target: 'final' | 'temporary'): Promise<void> {
    const deferred = this.#o.deferred!;
    const { key: tempKey } = this.#o;
    const multipart = this.#pipeline.started;
    // A single PUT can go straight to either key; a multipart upload can only complete at the key it was created with.
    this.#finishing = { key: target === 'final' || multipart ? deferred.finalKey : tempKey };
    this.#state = 'open';
    this.#commit = undefined;
    const resumed = this.#continued !== undefined;
    if (target === 'final' || !multipart) {
      await this.commit();
      if (resumed && target === 'final') await deferred.remove(tempKey);
      return;
    }
    // The rare path: no rename came. Complete at the final key only if nothing is there (If-None-Match),
    // then move the object to the temporary name in one copy, with its metadata.
    this.#exclusiveFinish = true;
    const metadata = await this.#commitCollectingMetadata();
    await deferred.move(deferred.finalKey, tempKey, metadata, this.#completedEtag);
  }

  /** The rare path completes exclusively and leaves the metadata to the move. */
  #exclusiveFinish = false;
  #heldMetadata: Record<string, string> | undefined;

  async #commitCollectingMetadata(): Promise<Record<string, string>> {
    this.#heldMetadata = {};
    await this.commit();
    return this.#heldMetadata;
  }

  abort(): Promise<void> {
    // A parked upload belongs to TempUploads now: the session ending must not drop it.
    if (this.#state === 'committed' || this.#state === 'parked') return Promise.resolve();
    return this.#forceAbort();
  }

  #forceAbort(): Promise<void> {
    this.#abort ??= this.#doAbort();
    return this.#abort;
  }

  /**
   * Keeps a piece that arrived ahead of the contiguous data. Held pieces never overlap: where this
   * one covers bytes of pieces held before, it replaces them (the later WRITE wins, as on a disk).
   */
  #hold(offset: number, data: Buffer): void {
    const end = offset + data.length;
    const overlapped = [...this.#pending].filter(([at, piece]) => at < end && at + piece.length > offset);
    const replaced = overlapped.reduce((sum, [at, piece]) => sum + Math.min(at + piece.length, end) - Math.max(at, offset), 0);
    const window = this.#o.windowBytes ?? DEFAULT_WINDOW_BYTES;
    if (end - this.#next > window || this.#pendingBytes - replaced + data.length > window) {
      throw new InvalidRequestError(`write ${this.#o.path}: write too far ahead of the data received`);
    }
    for (const [at, piece] of overlapped) {
      this.#pending.delete(at);
      if (at < offset) this.#pending.set(at, piece.subarray(0, offset - at));
      if (at + piece.length > end) this.#pending.set(end, piece.subarray(end - at));
    }
    // Copied: the caller may reuse its buffer once write() resolves.
    this.#pending.set(offset, Buffer.from(data));
    this.#pendingBytes += data.length - replaced;
    if (replaced > 0) this.#event('onDiscarded', replaced);
    this.#event('onBuffered', data.length);
  }

  /** Appends pieces that have become contiguous. */
  async #drainPending(): Promise<void> {
    while (this.#pending.size > 0) {
      let progressed = false;
      for (const [offset, piece] of this.#pending) {
        if (offset > this.#next) continue;
        this.#pending.delete(offset);
        this.#pendingBytes -= piece.length;
        const before = this.#next;
        try {
          // An overlapping piece contributes only its bytes beyond what is already here.
          if (offset + piece.length > this.#next) await this.#append(piece.subarray(this.#next - offset));
        } finally {
          const dropped = piece.length - (this.#next - before);
          if (dropped > 0) this.#event('onDiscarded', dropped);
        }
        progressed = true;
      }
      if (!progressed) return;
    }
  }

  /** #append for bytes new to this writer: reports what was taken into memory. */
  async #appendCounted(data: Buffer): Promise<void> {
    const before = this.#next;
    try {
      await this.#append(data);
    } finally {
      if (this.#next > before) this.#event('onBuffered', this.#next - before);
    }
  }

  #event(name: 'onBuffered' | 'onStored' | 'onDiscarded', bytes: number): void {
    safely(() => this.#o.events?.[name]?.(bytes));
  }

  /** Copies contiguous data into parts, submitting each part once full. */
  async #append(data: Buffer): Promise<void> {
    this.#hashes?.update(data);
    let rest = data;
    while (rest.length > 0) {
      const size = partSizeFor(this.#partNumber, this.#o.config.upload.partSize);
      const take = Math.min(size - this.#partFill, rest.length);
      await this.#cover(size, this.#partFill + take);
      this.#ensureCapacity(size, rest.length);
      rest.copy(this.#part!, this.#partFill, 0, take);
      this.#partFill += take;
      this.#next += take;
      rest = rest.subarray(take);
      if (this.#partFill === size) this.#submitPart();
    }
  }

  /**
   * Makes sure `needed` bytes of the current part are reserved before they are filled: a spare
   * buffer comes with its reservation, anything else waits for the budget.
   */
  async #cover(partSize: number, needed: number): Promise<void> {
    if (this.#reserved >= needed) return;
    while (this.#partNumber > 1 && !this.#part && this.#spares.length > 0) {
      const { buffer, reserved } = this.#spares.pop()!;
      if (this.#spares.length === 0) this.#forgetSpares();
      if (buffer.length >= partSize) {
        this.#part = buffer;
        this.#reserved = reserved;
        return;
      }
      // Part sizes only grow: a smaller spare will not fit a later part either.
      this.#budget.release(this, reserved);
    }
    const target = this.#partNumber === 1 && needed <= INITIAL_PART_CAPACITY ? Math.min(INITIAL_PART_CAPACITY, partSize) : partSize;
    await this.#budget.reserve(this, target - this.#reserved, this.#ended.signal);
    if (this.#ended.signal.aborted) {
      // Granted just as the upload was aborted: #doAbort has already given back what it knew of.
      this.#budget.release(this, target - this.#reserved);
      throw new InvalidRequestError(`write ${this.#o.path}: upload was aborted`);
    }
    this.#reserved = target;
  }

  #ensureCapacity(partSize: number, incoming: number): void {
    const needed = this.#partFill + Math.min(incoming, partSize - this.#partFill);
    if (this.#part && this.#part.length >= needed) return;
    if (this.#partNumber > 1 && !this.#part) {
      // A multipart upload fills whole parts (a spare buffer was taken in #cover).
      this.#part = Buffer.allocUnsafe(partSize);
      return;
    }
    let capacity = Math.max(INITIAL_PART_CAPACITY, (this.#part?.length ?? 0) * 2);
    while (capacity < needed) capacity *= 2;
    const grown = Buffer.allocUnsafe(Math.min(capacity, partSize));
    this.#part?.copy(grown, 0, 0, this.#partFill);
    this.#part = grown;
  }

  /**
   * A submitted part's buffer is free: its reservation is released, or kept with the buffer as
   * the spare when the part was stored, the upload goes on and no other upload waits for memory.
   */
  #partFree(body: Buffer, stored: boolean): void {
    const reserved = this.#reservedOf.get(body.buffer) ?? 0;
    this.#reservedOf.delete(body.buffer);
    const keep =
      stored &&
      this.#state === 'open' &&
      !this.#abort &&
      this.#spares.length < Math.max(1, this.#o.config.upload.concurrency) &&
      body.byteOffset === 0 &&
      this.#budget.waiting === 0;
    if (!keep) {
      this.#budget.landed(reserved);
      return;
    }
    this.#spares.push({ buffer: Buffer.from(body.buffer, 0, body.buffer.byteLength), reserved });
    this.#unholdSpare ??= this.#budget.holdSpare(() => this.#dropSpare());
    this.#budget.landed(reserved, this);
  }

  /** Lets the spare buffers go and gives their reservations back. */
  #dropSpare(): void {
    const reserved = this.#spares.reduce((sum, spare) => sum + spare.reserved, 0);
    this.#spares = [];
    this.#forgetSpares();
    this.#budget.release(this, reserved);
  }

  #forgetSpares(): void {
    this.#unholdSpare?.();
    this.#unholdSpare = undefined;
  }

  #submitPart(): void {
    if (this.#partNumber > MAX_PARTS) {
      // partSizeFor() makes 10,000 parts exceed 5 TiB, so only the size check above can lead here.
      throw new InvalidRequestError(`write ${this.#o.path}: file larger than S3 allows`);
    }
    const body = this.#part!.subarray(0, this.#partFill);
    this.#part = undefined;
    this.#partFill = 0;
    // The reservation goes with the buffer; #partFree gives it back.
    this.#reservedOf.set(body.buffer, this.#reserved);
    this.#budget.submitted(this, this.#reserved);
    this.#reserved = 0;
    // Past one part the object is a multipart upload, whose metadata was fixed at its creation:
    // storing hashes would take a copy of the whole object onto itself while the client waits for
    // CLOSE (GUI clients time out after 15-20 s), so hashing stops here and they are read on demand.
    this.#hashes = undefined;
    const started = this.#pipeline.submit(this.#partNumber++, body);
    // Awaited by write(); the no-op only keeps an unawaited failure from being "unhandled".
    started.catch(() => {});
    this.#room = started;
  }

  async #doCommit(): Promise<void> {
    this.#state = 'committing';
    const { path } = this.#o;
    const commitStartedAt = this.#o.clock.now();
    try {
      await this.#gate;
      this.#dropSpare();
      if (this.#pending.size > 0) {
        throw new InvalidRequestError(`write ${path}: data missing at offset ${this.#next}`);
      }
      if (this.#pipeline.failure) throw this.#pipeline.failure;
      if (this.#continued) await this.#checkContinuedUnchanged();
      if (!this.#pipeline.started) {
        await this.#putSingle();
      } else {
        await this.#completeMultipart();
      }
    } catch (err) {
      await this.abort();
      throw toStorageError(err, `write ${path}`);
    }
    this.#state = 'committed';
    this.#deregister();
    safely(() => this.#o.onCommitted?.(this.#written));
    safely(() => this.#o.events?.onCommit?.((this.#o.clock.now() - commitStartedAt) / 1000));
  }

  /** The key the object is stored at: the temporary upload's decided key, else the opened one. */
  get #targetKey(): string {
    return this.#finishing?.key ?? this.#o.key;
  }

  async #putSingle(): Promise<void> {
    const { client, bucket, path, config, events, clock } = this.#o;
    const key = this.#targetKey;
    const body = this.#part ? this.#part.subarray(0, this.#partFill) : Buffer.alloc(0);
    // The PUT owns these bytes now: an abort() meanwhile must not count them discarded twice.
    this.#part = undefined;
    this.#partFill = 0;
    this.#singleBytes = body.length;
    const reserved = this.#reserved;
    this.#reserved = 0;
    this.#budget.submitted(this, reserved);
    const headers = this.#headers(this.#digests());
    let answer: { etag: string | undefined; date: Date | undefined } | undefined;
    const put = (ifNoneMatch: boolean) =>
      withRetries(
        async (signal) => {
          const command = new PutObjectCommand({
            ...headers,
            Bucket: bucket,
            Key: key,
            Body: body,
            ContentLength: body.length,
            ...(ifNoneMatch ? { IfNoneMatch: '*' } : {}),
          });
          const date = keepResponseDate(command);
          const output = await client.send(command, { abortSignal: signal });
          answer = { etag: output.ETag, date: date() };
          return output;
        },
        {
          attempts: 3,
          timeoutMs: deadlineFor(config.upload.partMaxTimeMs, body.length, 60_000, 2_000),
        },
      );
    const startedAt = clock.now();
    // A single PUT is a one-part upload as far as the part metrics go.
    safely(() => events?.onPartStart?.(body.length));
    try {
      await this.#conditionally(put, 'put', path);
    } catch (err) {
      safely(() => events?.onPartDone?.(body.length, (clock.now() - startedAt) / 1000, false));
      this.#event('onDiscarded', body.length);
      throw err;
    } finally {
      this.#singleBytes = 0;
      this.#budget.landed(reserved);
    }
    safely(() => events?.onPartDone?.(body.length, (clock.now() - startedAt) / 1000, true));
    this.#event('onStored', body.length);
    // Uploads through a temporary name are copied or given metadata afterwards: not as sent.
    if (answer?.etag && answer.date && !this.#o.deferred) {
      const stored = { size: body.length, metadata: headers.Metadata ?? {}, storageClass: headers.StorageClass };
      this.#written = writtenObject(answer.etag, answer.date, clock.now() - startedAt, stored);
    }
  }

  /** What the single PutObject stored (docs/adr/0022), for the server's mtime memory. */
  #written: WrittenObject | undefined;
  /** The ETag CompleteMultipartUpload answered. */
  #completedEtag: string | undefined;

  async #completeMultipart(): Promise<void> {
    if (this.#partFill > 0) this.#submitPart();
    await this.#room;
    let etag: string | undefined;
    const complete = async (ifNoneMatch: boolean) => {
      etag = (await this.#pipeline.complete({ ifNoneMatch })).etag;
    };
    await this.#conditionally(complete, 'complete', this.#o.path);
    this.#completedEtag = etag;
    if (!this.#mtime || this.#mtime === this.#mtimeSentAtCreate) return;
    const metadata: Record<string, string> = { mtime: mtimeMetadata(this.#mtime) };
    if (this.#heldMetadata) {
      Object.assign(this.#heldMetadata, metadata);
      return;
    }
    try {
      await this.#o.applyMetadata(metadata, etag, this.#targetKey);
    } catch (err) {
      // The data is safely stored; failing the upload over its timestamp
      // would make the client retry a transfer that succeeded.
      this.#o.log.warn({ err, key: this.#o.key }, 'uploaded, but could not store the modification time');
    }
  }

  /** The final hashes, once; undefined when they do not cover the whole object. */
  #digests(): Record<string, string> | undefined {
    const hashes = this.#hashes;
    this.#hashes = undefined;
    return hashes?.digests();
  }

  async #headExisting(): Promise<HeadObjectCommandOutput | undefined> {
    const { client, bucket, key, path } = this.#o;
    try {
      return await client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }), {
        abortSignal: AbortSignal.timeout(30_000),
      });
    } catch (err) {
      const failure = toStorageError(err, `write ${path}`);
      if (failure instanceof NotFoundError) return undefined;
      throw failure;
    }
  }

  /** The whole (small) existing object, pinned to the version that was measured. */
  async #readExisting(size: number, etag: string | undefined): Promise<Buffer> {
    const { client, bucket, key, path } = this.#o;
    if (size === 0) return Buffer.alloc(0);
    try {
      const out = await withRetries(
        async (signal) => {
          const got = await client.send(
            new GetObjectCommand({ Bucket: bucket, Key: key, ...(etag ? { IfMatch: etag } : {}) }),
            { abortSignal: signal },
          );
          return Buffer.from(await got.Body!.transformToByteArray());
        },
        { attempts: 3, timeoutMs: deadlineFor(0, size, 60_000, 2_000) },
      );
      if (out.length !== size) throw new BackendError(`write ${path}: the file changed while resuming`);
      return out;
    } catch (err) {
      throw toStorageError(err, `write ${path}`);
    }
  }

  /** A resumed upload must not splice a prefix of one version onto another. */
  async #checkContinuedUnchanged(): Promise<void> {
    const head = await this.#headExisting();
    if (head?.ETag !== this.#continued?.etag) {
      throw new BackendError(`write ${this.#o.path}: the file changed while the upload resumed; upload it again`);
    }
  }

  /**
   * Runs the final write, exclusive if asked: a HEAD first (a clear early
   * answer on every store), then If-None-Match: * where the store supports it,
   * which closes the race atomically. Where it does not (Swift's PutObject),
   * a creator that slips in between the HEAD and the write wins silently.
   */
  async #conditionally(
    write: (ifNoneMatch: boolean) => Promise<unknown>,
    kind: 'put' | 'complete',
    path: string,
  ): Promise<void> {
    if (this.#exclusiveFinish) return this.#exclusively(write, kind, path);
    if (!this.#o.exclusive) {
      await write(false);
      return;
    }
    await this.#refuseIfExists(path);
    const support = this.#o.conditionalWrites;
    try {
      await write(support[kind] !== false);
      return;
    } catch (err) {
      if (isPreconditionFailed(err)) {
        throw new AlreadyExistsError(`${path}: file already exists`, { cause: err });
      }
      if (support[kind] === false || !isNotImplemented(err)) throw err;
      support[kind] = false;
      this.#o.log.info({ kind }, 'storage does not support If-None-Match here; exclusive create relies on a HEAD check');
    }
    await write(false);
  }

  /**
   * A parked upload that was not renamed completes at its final key only if nothing is there,
   * so an object another client put there meanwhile is never replaced.
   */
  async #exclusively(write: (ifNoneMatch: boolean) => Promise<unknown>, kind: 'put' | 'complete', path: string): Promise<void> {
    const support = this.#o.conditionalWrites;
    try {
      await write(support[kind] !== false);
    } catch (err) {
      if (isPreconditionFailed(err)) {
        throw new AlreadyExistsError(`${path}: another client created the final name while this upload waited for its rename`, { cause: err });
      }
      if (support[kind] === false || !isNotImplemented(err)) throw err;
      support[kind] = false;
      // Without conditional completion the HEAD at open (the final name was free) is all there is.
      await write(false);
    }
  }

  async #refuseIfExists(path: string): Promise<void> {
    const { client, bucket, key } = this.#o;
    try {
      await client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }), {
        abortSignal: AbortSignal.timeout(30_000),
      });
    } catch (err) {
      const failure = toStorageError(err, `create ${path}`);
      if (failure instanceof NotFoundError) return;
      throw failure;
    }
    throw new AlreadyExistsError(`${path}: file already exists`);
  }

  async #doAbort(): Promise<void> {
    if (this.#state !== 'committing') this.#state = 'aborted';
    this.#ended.abort();
    this.#dropSpare();
    this.#budget.release(this, this.#reserved);
    this.#reserved = 0;
    if (this.#partFill + this.#pendingBytes > 0) this.#event('onDiscarded', this.#partFill + this.#pendingBytes);
    this.#part = undefined;
    this.#partFill = 0;
    this.#pending.clear();
    this.#pendingBytes = 0;
    await this.#pipeline.abort();
    this.#state = 'aborted';
    this.#deregister();
  }

  /** Headers of the new object; `digests` only when they are final (a single PUT). */
  #headers(digests?: Record<string, string>): ObjectHeaders {
    const { storageClass, acl } = this.#o.config;
    const metadata = { ...(this.#mtime ? { mtime: mtimeMetadata(this.#mtime) } : {}), ...digests };
    return {
      ...(storageClass ? { StorageClass: storageClass as ObjectHeaders['StorageClass'] } : {}),
      ...(acl ? { ACL: acl as ObjectHeaders['ACL'] } : {}),
      ...(Object.keys(metadata).length > 0 ? { Metadata: metadata } : {}),
    };
  }
}
