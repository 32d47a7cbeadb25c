/**
 * The Storage interface over an in-memory object store, for tests and demos
 * that should run without S3.
 *
 * It models S3, not a filesystem, so that what passes here behaves the same
 * on S3Storage: a flat map of keys; a directory is a zero-byte marker key
 * ending in "/" (what mkdir creates) or any common prefix; when a name is both
 * a file and a prefix, the file wins (docs/adr/0005); nothing is visible until
 * commit(); uploads in progress show in stat() with the bytes received;
 * listings report the stored mtime, as stat does; renames copy
 * then delete. Several MemoryStorage instances (one per user, each with its
 * own key prefix) can share one MemoryBucket, as sessions share a bucket.
 */
import {
  AlreadyExistsError,
  InvalidRequestError,
  NotEmptyError,
  NotFoundError,
  PermissionDeniedError,
  UnsupportedError,
  WrongTypeError,
} from '../errors.ts';
import { basename, dirname, isWithin, keyUnder, MAX_KEY_BYTES } from '../paths.ts';
import { createHash } from 'node:crypto';
import type { FileInfo, FileReader, FileWriter, HashAlgorithm, OpenWriteOptions, RenameOptions, SetMtimeOptions, Storage } from '../storage.ts';

/** Out-of-order write window per upload, as S3Writer's default. */
const DEFAULT_WINDOW_BYTES = 16 * 1024 ** 2;
/** Entries per list page, as ListObjectsV2's maximum. */
const DEFAULT_PAGE_SIZE = 1000;

/** One stored object. */
interface StoredObject {
  data: Buffer;
  /** The store's own time: set by every write and copy. */
  lastModified: Date;
  /** The client's modification time (S3: `mtime` metadata), when one was set. */
  mtime?: Date;
}

/** An upload in progress, as stat() and exclusive create see it. */
interface LiveUpload {
  readonly bytesReceived: number;
}

/** The shared object store: keys, objects and the uploads in progress. */
export class MemoryBucket {
  readonly #objects = new Map<string, StoredObject>();
  readonly #uploads = new Map<string, LiveUpload[]>();
  readonly #now: () => Date;

  constructor(options: { clock?: () => Date } = {}) {
    this.#now = options.clock ?? (() => new Date());
  }

  now(): Date {
    return this.#now();
  }

  get(key: string): StoredObject | undefined {
    return this.#objects.get(key);
  }

  put(key: string, data: Buffer, mtime?: Date): void {
    this.#objects.set(key, { data, lastModified: this.#now(), ...(mtime ? { mtime } : {}) });
  }

  delete(key: string): void {
    this.#objects.delete(key);
  }

  /** Every key starting with `prefix`, in S3's order (UTF-8 bytes). */
  keys(prefix: string): string[] {
    const out: string[] = [];
    for (const key of this.#objects.keys()) if (key.startsWith(prefix)) out.push(key);
    return out.sort(compareKeys);
  }

  /** True when any key starts with `prefix` (a directory exists, implicitly or by marker). */
  hasPrefix(prefix: string): boolean {
    for (const key of this.#objects.keys()) if (key.startsWith(prefix)) return true;
    return false;
  }

  /** Registers an upload; the returned function deregisters it (idempotent). */
  addUpload(key: string, upload: LiveUpload): () => void {
    const list = this.#uploads.get(key) ?? [];
    list.push(upload);
    this.#uploads.set(key, list);
    let removed = false;
    return () => {
      if (removed) return;
      removed = true;
      const rest = (this.#uploads.get(key) ?? []).filter((u) => u !== upload);
      if (rest.length === 0) this.#uploads.delete(key);
      else this.#uploads.set(key, rest);
    };
  }

  /** The most recently opened upload of this key, if any. */
  upload(key: string): LiveUpload | undefined {
    return this.#uploads.get(key)?.at(-1);
  }

  /** Keys with uploads in progress under `prefix` (S3: incomplete multipart uploads). */
  uploadKeys(prefix: string): string[] {
    return [...this.#uploads.keys()].filter((key) => key.startsWith(prefix)).sort(compareKeys);
  }
}

export interface MemoryStorageOptions {
  bucket: MemoryBucket;
  /** The user's root: "" or a prefix ending in "/". */
  keyPrefix?: string;
  /** Non-empty directories can be renamed (S3: renameMode 1). */
  renamesDirectories?: boolean;
  /** Refuse renaming directories holding more objects than this. */
  renameMaxObjects?: number;
  /** Out-of-order write window per upload (bytes). */
  writeWindowBytes?: number;
  /** Entries per list page. */
  pageSize?: number;
  /**
   * Test seam: awaited before each read returns, so tests can make storage
   * answers arrive in an order of their choosing (replies must keep request order).
   */
  beforeRead?: (path: string, offset: number, length: number) => Promise<void>;
}

/** Storage in memory, with the semantics of S3Storage. */
export class MemoryStorage implements Storage {
  readonly #bucket: MemoryBucket;
  readonly #prefix: string;
  readonly #o: MemoryStorageOptions;

  constructor(options: MemoryStorageOptions) {
    const prefix = options.keyPrefix ?? '';
    if (prefix !== '' && !prefix.endsWith('/')) {
      throw new Error(`keyPrefix must be empty or end with "/": ${JSON.stringify(prefix)}`);
    }
    this.#bucket = options.bucket;
    this.#prefix = prefix;
    this.#o = options;
  }

  async stat(path: string): Promise<FileInfo> {
    const key = this.#key(path);
    if (path === '/') return this.#directoryInfo('/', undefined);
    const object = this.#bucket.get(key);
    if (object) return fileInfo(basename(path), object);
    const live = this.#bucket.upload(key);
    if (live) {
      return { name: basename(path), isDirectory: false, size: live.bytesReceived, mtime: this.#bucket.now(), uploading: true };
    }
    const directory = this.#directory(path);
    if (directory) return this.#directoryInfo(basename(path), directory.markerMtime);
    throw new NotFoundError(`${path}: no such file or directory`);
  }

  async *list(path: string): AsyncGenerator<FileInfo[]> {
    const key = this.#key(path);
    // A file of this name hides the directory, as it does in the parent's listing.
    if (path !== '/' && this.#bucket.get(key)) throw new WrongTypeError(`${path}: not a directory`);
    const prefix = this.#dirPrefix(path);
    if (path !== '/' && !this.#bucket.hasPrefix(prefix)) throw new NotFoundError(`${path}: no such file or directory`);
    const pageSize = this.#o.pageSize ?? DEFAULT_PAGE_SIZE;
    // Each page is read afresh after the last key seen, as S3's continuation does.
    let after: string | undefined;
    for (;;) {
      const entries = listEntries(this.#bucket, prefix).filter((e) => after === undefined || compareKeys(e.key, after) > 0);
      const page = entries.slice(0, pageSize);
      if (page.length > 0) yield page.map((e) => e.info);
      if (entries.length <= pageSize) return;
      after = page.at(-1)!.key;
    }
  }

  async openRead(path: string): Promise<FileReader> {
    const key = this.#key(path);
    const object = path === '/' ? undefined : this.#bucket.get(key);
    if (!object) {
      if (this.#directory(path)) throw new WrongTypeError(`${path}: is a directory`);
      throw new NotFoundError(`${path}: no such file or directory`);
    }
    return new MemoryReader(path, object.data, object.mtime ?? object.lastModified, this.#o.beforeRead);
  }

  async openWrite(path: string, options: OpenWriteOptions = {}): Promise<FileWriter> {
    const key = this.#key(path);
    if (path === '/') throw new WrongTypeError('/: is a directory');
    const existing = this.#bucket.get(key);
    if (this.#parentIsFile(path)) throw new WrongTypeError(`${dirname(path)}: not a directory`);
    if (options.requireParent && !this.#directory(dirname(path))) throw new NotFoundError(`${dirname(path)}: no such file or directory`);
    if (this.#directory(path) && !existing) throw new WrongTypeError(`${path}: is a directory`);
    const exclusive = options.exclusive === true;
    const live = this.#bucket.upload(key);
    if (exclusive && (existing || live)) throw new AlreadyExistsError(`${path}: file already exists`);
    options.check?.(
      existing
        ? fileInfo(basename(path), existing)
        : live
          ? { name: basename(path), isDirectory: false, size: live.bytesReceived, mtime: this.#bucket.now(), uploading: true }
          : undefined,
    );
    return new MemoryWriter({
      bucket: this.#bucket,
      key,
      path,
      exclusive,
      windowBytes: this.#o.writeWindowBytes ?? DEFAULT_WINDOW_BYTES,
    });
  }

  async mkdir(path: string): Promise<void> {
    const key = this.#key(path);
    if (path === '/') throw new AlreadyExistsError('/: already exists');
    if (this.#parentIsFile(path)) throw new WrongTypeError(`${dirname(path)}: not a directory`);
    if (this.#exists(path)) throw new AlreadyExistsError(`${path}: already exists`);
    if (!this.#directory(dirname(path))) throw new NotFoundError(`${dirname(path)}: no such file or directory`);
    this.#bucket.put(`${key}/`, Buffer.alloc(0));
  }

  async remove(path: string): Promise<void> {
    const key = this.#key(path);
    if (path === '/') throw new WrongTypeError('/: is a directory');
    if (!this.#bucket.get(key)) {
      if (this.#directory(path)) throw new WrongTypeError(`${path}: is a directory`);
      throw new NotFoundError(`${path}: no such file or directory`);
    }
    this.#bucket.delete(key);
    this.#keepParent(path);
  }

  async rmdir(path: string): Promise<void> {
    const key = this.#key(path);
    if (path === '/') throw new PermissionDeniedError('/: cannot remove the root directory');
    const marker = `${key}/`;
    const under = this.#bucket.keys(marker);
    if (under.length === 0) {
      if (this.#bucket.get(key)) throw new WrongTypeError(`${path}: not a directory`);
      throw new NotFoundError(`${path}: no such file or directory`);
    }
    if (under.some((k) => k !== marker)) throw new NotEmptyError('directory not empty');
    this.#bucket.delete(marker);
    this.#keepParent(path);
  }

  async rename(from: string, to: string, options: RenameOptions = {}): Promise<void> {
    const fromKey = this.#key(from);
    const toKey = this.#key(to);
    if (from === '/') throw new PermissionDeniedError('/: cannot rename the root directory');
    if (to === '/') throw new AlreadyExistsError('/: already exists');
    if (this.#parentIsFile(to)) throw new WrongTypeError(`${dirname(to)}: not a directory`);
    const source = this.#bucket.get(fromKey);
    if (!source && !this.#directory(from)) throw new NotFoundError(`${from}: no such file or directory`);
    if (!this.#directory(dirname(to))) throw new NotFoundError(`${dirname(to)}: no such file or directory`);
    if (from === to) return;
    const target = this.#bucket.get(toKey);
    const directory = target ? undefined : this.#directory(to);
    options.check?.(target ? fileInfo(basename(to), target) : directory ? this.#directoryInfo(basename(to), directory.markerMtime) : undefined);
    if (source) return this.#renameFile(from, to, fromKey, toKey, source, options);
    return this.#renameDirectory(from, to);
  }

  async setMtime(path: string, mtime: Date, options?: SetMtimeOptions): Promise<void> {
    const key = this.#key(path);
    const object = path === '/' ? undefined : this.#bucket.get(key);
    if (!object) {
      if (path !== '/' && this.#bucket.upload(key)) {
        if (options?.check?.({ isDirectory: false, uploading: true }) === false) return;
        throw new NotFoundError(`${path}: no such file or directory (still being uploaded)`);
      }
      if (this.#directory(path)) {
        if (options?.check?.({ isDirectory: true }) === false) return;
        throw new UnsupportedError(`${path}: directories have no stored modification time`);
      }
      throw new NotFoundError(`${path}: no such file or directory`);
    }
    if (options?.check?.({ isDirectory: false }) === false) return;
    // As on S3, a metadata change is a copy of the object onto itself.
    this.#bucket.put(key, object.data, mtime);
  }

  /** Uploads still open under this storage's prefix, as user paths' keys. */
  async checksum(path: string, algorithm: HashAlgorithm): Promise<string> {
    const key = this.#key(path);
    const object = path === '/' ? undefined : this.#bucket.get(key);
    if (!object) {
      if (this.#directory(path)) throw new WrongTypeError(`${path}: is a directory`);
      throw new NotFoundError(`${path}: no such file or directory`);
    }
    return createHash(algorithm).update(object.data).digest('hex');
  }

  leftoverUploads(): string[] {
    return this.#bucket.uploadKeys(this.#prefix);
  }

  #renameFile(from: string, to: string, fromKey: string, toKey: string, source: StoredObject, options: RenameOptions): void {
    const target = this.#bucket.get(toKey);
    if (target && !options.overwrite) throw new AlreadyExistsError(`${to}: file already exists`);
    if (!target && this.#directory(to)) {
      throw options.overwrite ? new WrongTypeError(`${to}: is a directory`) : new AlreadyExistsError(`${to}: already exists`);
    }
    this.#bucket.put(toKey, source.data, source.mtime);
    this.#bucket.delete(fromKey);
    this.#keepParent(from);
  }

  /** Copies every object, then deletes the sources, as S3Storage does (with the same refusals). */
  #renameDirectory(from: string, to: string): void {
    if (isWithin(to, from)) throw new InvalidRequestError(`${to}: cannot move a directory into itself`);
    if (this.#exists(to)) throw new AlreadyExistsError(`${to}: already exists`);
    const fromPrefix = `${this.#key(from)}/`;
    const toPrefix = `${this.#key(to)}/`;
    const keys = this.#bucket.keys(fromPrefix);
    if (keys.every((k) => k === fromPrefix)) {
      this.#bucket.put(toPrefix, Buffer.alloc(0));
      this.#bucket.delete(fromPrefix);
      this.#keepParent(from);
      return;
    }
    if (!this.#o.renamesDirectories) {
      throw new UnsupportedError('renaming a non-empty directory is disabled (renameMode 0)');
    }
    const limit = this.#o.renameMaxObjects ?? 1000;
    if (keys.length > limit) {
      throw new UnsupportedError(`${from}: directory holds more than ${limit} objects, too many to rename (renameMaxObjects)`);
    }
    for (const key of keys) {
      if (Buffer.byteLength(toPrefix + key.slice(fromPrefix.length)) > MAX_KEY_BYTES + 1) {
        throw new InvalidRequestError(`${to}: a path inside would be too long`);
      }
    }
    for (const key of keys) {
      const object = this.#bucket.get(key)!;
      this.#bucket.put(toPrefix + key.slice(fromPrefix.length), object.data, object.mtime);
    }
    for (const key of keys) this.#bucket.delete(key);
    this.#keepParent(from);
  }

  /** Validates a path and maps it to its key. */
  #key(path: string): string {
    return keyUnder(this.#prefix, path);
  }

  #dirPrefix(path: string): string {
    return path === '/' ? this.#prefix : `${this.#key(path)}/`;
  }

  /** Whether `path` is a directory (marker or children); with the marker's time when there is one. */
  #directory(path: string): { markerMtime: Date | undefined } | undefined {
    if (path === '/') return { markerMtime: undefined };
    const prefix = this.#dirPrefix(path);
    if (!this.#bucket.hasPrefix(prefix)) return undefined;
    return { markerMtime: this.#bucket.get(prefix)?.lastModified };
  }

  #exists(path: string): boolean {
    const key = this.#key(path);
    if (path === '/') return true;
    return this.#bucket.upload(key) !== undefined || this.#bucket.get(key) !== undefined || this.#directory(path) !== undefined;
  }

  #parentIsFile(path: string): boolean {
    const parent = dirname(path);
    return parent !== '/' && this.#bucket.get(this.#key(parent)) !== undefined;
  }

  /** Keeps the parent of a removed entry alive, as S3Storage does (an implicit directory would vanish). */
  #keepParent(path: string): void {
    const parent = dirname(path);
    if (parent === '/') return;
    if (!this.#directory(parent)) this.#bucket.put(this.#dirPrefix(parent), Buffer.alloc(0));
  }

  #directoryInfo(name: string, markerMtime: Date | undefined): FileInfo {
    return { name, isDirectory: true, size: 0, mtime: markerMtime ?? this.#bucket.now() };
  }
}

function fileInfo(name: string, object: StoredObject): FileInfo {
  return { name, isDirectory: false, size: object.data.length, mtime: object.mtime ?? object.lastModified };
}

/**
 * A directory's entries in key order, each name once: a name that is both a
 * file and a prefix is shown as the file; names S3 can hold but SFTP cannot
 * ("", ".", "..") are hidden. Listings carry the store's time, as on S3.
 */
function listEntries(bucket: MemoryBucket, prefix: string): { key: string; info: FileInfo }[] {
  const files = new Map<string, { key: string; info: FileInfo }>();
  const dirs = new Map<string, { key: string; info: FileInfo }>();
  for (const key of bucket.keys(prefix)) {
    const rest = key.slice(prefix.length);
    const slash = rest.indexOf('/');
    const name = slash < 0 ? rest : rest.slice(0, slash);
    if (name === '' || name === '.' || name === '..') continue;
    if (slash < 0) {
      const object = bucket.get(key)!;
      files.set(name, { key, info: { name, isDirectory: false, size: object.data.length, mtime: object.mtime ?? object.lastModified } });
    } else if (!dirs.has(name)) {
      dirs.set(name, { key: `${prefix}${name}/`, info: { name, isDirectory: true, size: 0, mtime: bucket.now() } });
    }
  }
  const visible = [...files.values(), ...[...dirs.entries()].filter(([name]) => !files.has(name)).map(([, e]) => e)];
  return visible.sort((a, b) => compareKeys(a.key, b.key));
}

/** S3 orders keys by their UTF-8 bytes, which differs from UTF-16 order above U+FFFF. */
function compareKeys(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

class MemoryReader implements FileReader {
  readonly path: string;
  readonly data: Buffer;
  readonly mtime: Date;
  readonly beforeRead: MemoryStorageOptions['beforeRead'];
  #closed = false;

  constructor(path: string, data: Buffer, mtime: Date, beforeRead: MemoryStorageOptions['beforeRead']) {
    this.path = path;
    this.data = data;
    this.mtime = mtime;
    this.beforeRead = beforeRead;
  }

  get size(): number {
    return this.data.length;
  }

  async read(offset: number, length: number): Promise<Buffer> {
    if (this.#closed) throw new InvalidRequestError(`read ${this.path}: file is closed`);
    if (!Number.isSafeInteger(offset) || offset < 0) throw new InvalidRequestError(`read ${this.path}: invalid offset ${offset}`);
    await this.beforeRead?.(this.path, offset, length);
    // A copy: the stored object must not change if the caller writes into the buffer.
    return Buffer.from(this.data.subarray(offset, offset + Math.max(0, length)));
  }

  async close(): Promise<void> {
    this.#closed = true;
  }
}

type WriterState = 'open' | 'committing' | 'committed' | 'aborted';

interface MemoryWriterOptions {
  bucket: MemoryBucket;
  key: string;
  path: string;
  exclusive: boolean;
  windowBytes: number;
}

/** A FileWriter collecting the data in memory; it becomes an object at commit(). */
class MemoryWriter implements FileWriter {
  readonly #o: MemoryWriterOptions;
  #state: WriterState = 'open';
  #chunks: Buffer[] = [];
  /** Contiguous bytes accepted. */
  #next = 0;
  /** Out-of-order pieces by offset. */
  #pending = new Map<number, Buffer>();
  #pendingBytes = 0;
  #mtime: Date | undefined;
  #deregister: () => void;
  #commit: Promise<void> | undefined;

  constructor(options: MemoryWriterOptions) {
    this.#o = options;
    const self = this;
    this.#deregister = options.bucket.addUpload(options.key, {
      get bytesReceived() {
        return self.bytesReceived;
      },
    });
  }

  get bytesReceived(): number {
    return this.#next;
  }

  async write(offset: number, data: Buffer): Promise<void> {
    const { path } = this.#o;
    if (this.#state !== 'open') throw new InvalidRequestError(`write ${path}: file is closed`);
    if (!Number.isSafeInteger(offset) || offset < 0) throw new InvalidRequestError(`write ${path}: invalid offset ${offset}`);
    if (data.length === 0) return;
    if (offset < this.#next) {
      throw new InvalidRequestError(`write ${path}: cannot rewrite data already sent (offset ${offset} < ${this.#next})`);
    }
    if (offset > this.#next) return this.#hold(offset, data);
    this.#append(data);
    this.#drainPending();
  }

  setMtime(mtime: Date): void {
    this.#mtime = mtime;
  }

  async continueExisting(size: number): Promise<void> {
    const { path } = this.#o;
    if (this.#state !== 'open' || this.#next !== 0 || this.#o.exclusive) {
      throw new InvalidRequestError(`write ${path}: can only resume before the first write`);
    }
    const existing = this.#o.bucket.get(this.#o.key);
    if (!existing || existing.data.length !== size) {
      throw new UnsupportedError(
        `resuming an upload at offset ${size} is not supported: ${path} holds ${existing?.data.length ?? 0} bytes, and an upload can only continue from its end`,
      );
    }
    // S3Storage copies the prefix inside the store; here it is the same bytes, kept by reference.
    this.#append(existing.data);
  }

  commit(): Promise<void> {
    if (this.#state === 'aborted') {
      return Promise.reject(new InvalidRequestError(`write ${this.#o.path}: upload was aborted`));
    }
    this.#commit ??= this.#doCommit();
    return this.#commit;
  }

  async abort(): Promise<void> {
    if (this.#state === 'committed') return;
    this.#state = 'aborted';
    this.#chunks = [];
    this.#pending.clear();
    this.#pendingBytes = 0;
    this.#deregister();
  }

  #hold(offset: number, data: Buffer): void {
    const window = this.#o.windowBytes;
    const replaced = this.#pending.get(offset)?.length ?? 0;
    if (offset + data.length - this.#next > window || this.#pendingBytes - replaced + data.length > window) {
      throw new InvalidRequestError(`write ${this.#o.path}: write too far ahead of the data received`);
    }
    // Copied: the caller may reuse its buffer once write() resolves.
    this.#pending.set(offset, Buffer.from(data));
    this.#pendingBytes += data.length - replaced;
  }

  #drainPending(): void {
    let progressed = true;
    while (progressed && this.#pending.size > 0) {
      progressed = false;
      for (const [offset, piece] of this.#pending) {
        if (offset > this.#next) continue;
        this.#pending.delete(offset);
        this.#pendingBytes -= piece.length;
        // An overlapping piece contributes only its bytes beyond what is already here.
        if (offset + piece.length > this.#next) this.#append(piece.subarray(this.#next - offset));
        progressed = true;
      }
    }
  }

  #append(data: Buffer): void {
    this.#chunks.push(Buffer.from(data));
    this.#next += data.length;
  }

  async #doCommit(): Promise<void> {
    this.#state = 'committing';
    const { bucket, key, path } = this.#o;
    try {
      if (this.#pending.size > 0) throw new InvalidRequestError(`write ${path}: data missing at offset ${this.#next}`);
      // Checked at the last moment, as If-None-Match does: a file created meanwhile wins.
      if (this.#o.exclusive && bucket.get(key)) throw new AlreadyExistsError(`${path}: file already exists`);
    } catch (err) {
      await this.abort();
      throw err;
    }
    bucket.put(key, Buffer.concat(this.#chunks), this.#mtime);
    this.#chunks = [];
    this.#state = 'committed';
    this.#deregister();
  }
}
