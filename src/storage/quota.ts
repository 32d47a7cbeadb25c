/**
 * Quotas (spec.quota): a Storage decorator that refuses what would take a
 * user over maxBytes or maxFiles, over a usage tracker that counts them.
 *
 * Usage is counted from the store (a scan of everything under the storage's
 * root: bytes and files, directory markers excluded) and then kept current by
 * what goes through the decorator: committed uploads (an overwrite counts the
 * difference), removes, and renames that replace a file. A periodic re-scan
 * replaces the count, so changes made outside s3sftp are picked up.
 *
 * Scans are lazy: a user's first session starts one, and writes wait for it
 * (reads and listings do not); scans of different users share a bounded number
 * of slots. A user idle for a whole rescan interval is not re-scanned until
 * their next session, so a server with many users only scans the active ones.
 *
 * Uploads of unknown size reserve their bytes as they arrive: a WRITE that
 * would take the user past maxBytes, counting every upload of that user still
 * in progress, fails with QuotaExceededError and the upload is aborted at once
 * (S3: the multipart upload is aborted), so nothing partial is stored and two
 * parallel uploads cannot both slip under the limit. The decorator wraps any
 * Storage (an S3 home, a virtual folder, a composite of them).
 */
import { NotFoundError, QuotaExceededError } from './errors.ts';
import type { FileInfo, FileReader, FileWriter, OpenWriteOptions, RenameOptions, SetMtimeOptions, Storage } from './storage.ts';

/** Bytes and files stored. */
export interface Usage {
  bytes: number;
  files: number;
}

/** spec.quota; 0 or undefined: no limit. */
export interface QuotaLimits {
  maxBytes?: number;
  maxFiles?: number;
}

/** Counts what is stored now, e.g. by listing a prefix. */
export type UsageScan = () => Promise<Usage>;

/** The logger methods the tracker uses. */
export interface QuotaLogger {
  debug(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

/** Bounded parallelism for scans, shared by every tracker of a server. */
export class ScanSlots {
  readonly #max: number;
  #running = 0;
  readonly #waiting: (() => void)[] = [];

  constructor(max: number) {
    this.#max = Math.max(1, max);
  }

  async run<T>(work: () => Promise<T>): Promise<T> {
    if (this.#running >= this.#max) await new Promise<void>((resolve) => this.#waiting.push(resolve));
    else this.#running++;
    try {
      return await work();
    } finally {
      const next = this.#waiting.shift();
      if (next) next();
      else this.#running--;
    }
  }
}

export interface UsageTrackerOptions {
  scan: UsageScan;
  /** 0: never re-scan on a timer (only when the tracker was idle). */
  rescanIntervalMs: number;
  slots?: ScanSlots;
  log?: QuotaLogger;
  /** Called after every change of the committed usage (metrics). */
  onChange?: (usage: Usage) => void;
  /** Called after every successful scan. */
  onScanned?: (usage: Usage) => void;
}

/** One user's (or one folder's) usage: committed, plus what uploads in progress have reserved. */
export class UsageTracker {
  readonly #opts: UsageTrackerOptions;
  #usage: Usage | undefined;
  #scanning: Promise<void> | undefined;
  #stale = true;
  #usedSinceScan = false;
  #timer: NodeJS.Timeout | undefined;
  /** Bytes reserved by uploads in progress, beyond the size of the file each replaces. */
  #reservedBytes = 0;
  /** New files being uploaded. */
  #reservedFiles = 0;

  constructor(opts: UsageTrackerOptions) {
    this.#opts = opts;
  }

  /** The committed usage, or undefined before the first scan finished. */
  get usage(): Usage | undefined {
    return this.#usage ? { ...this.#usage } : undefined;
  }

  get reserved(): Usage {
    return { bytes: this.#reservedBytes, files: this.#reservedFiles };
  }

  /** Marks the tracker in use and starts a scan if the count is missing or stale. */
  touch(): void {
    this.#usedSinceScan = true;
    if (this.#stale) void this.ready().catch(() => undefined);
  }

  /** Resolves once the count is current (scans when it is missing or stale). */
  ready(): Promise<void> {
    this.#usedSinceScan = true;
    if (!this.#stale && this.#usage) return Promise.resolve();
    return this.rescan();
  }

  /** Replaces the count with a fresh scan; concurrent calls share one scan. */
  rescan(): Promise<void> {
    this.#scanning ??= this.#scan().finally(() => (this.#scanning = undefined));
    return this.#scanning;
  }

  async #scan(): Promise<void> {
    const run = () => this.#opts.scan();
    try {
      const usage = await (this.#opts.slots ? this.#opts.slots.run(run) : run());
      this.#usage = usage;
      this.#stale = false;
      this.#usedSinceScan = false;
      this.#opts.log?.debug({ bytes: usage.bytes, files: usage.files }, 'quota usage scanned');
      this.#opts.onChange?.(usage);
      this.#opts.onScanned?.(usage);
      this.#schedule();
    } catch (err) {
      this.#opts.log?.warn({ err }, 'counting quota usage failed; uploads are refused until a scan succeeds');
      throw err;
    }
  }

  #schedule(): void {
    if (this.#timer || this.#opts.rescanIntervalMs <= 0) return;
    this.#timer = setInterval(() => this.#tick(), this.#opts.rescanIntervalMs);
    this.#timer.unref();
  }

  /** A tracker nobody used since the last scan stops its timer and scans again at the next use. */
  #tick(): void {
    if (!this.#usedSinceScan && this.#reservedBytes === 0 && this.#reservedFiles === 0) {
      this.stop();
      this.#stale = true;
      return;
    }
    void this.rescan().catch(() => undefined);
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** Applies a committed change (an upload stored, a file removed). */
  add(delta: Usage): void {
    if (!this.#usage) return; // the scan in progress will count it
    this.#usage = { bytes: Math.max(0, this.#usage.bytes + delta.bytes), files: Math.max(0, this.#usage.files + delta.files) };
    this.#opts.onChange?.(this.#usage);
  }

  /**
   * Reserves room for one more file, or throws QuotaExceededError. The
   * caller releases it with releaseFile() (abort) or add() (commit).
   */
  reserveFile(limits: QuotaLimits): void {
    const usage = this.#usage ?? { bytes: 0, files: 0 };
    if (limits.maxFiles && usage.files + this.#reservedFiles + 1 > limits.maxFiles) {
      throw new QuotaExceededError(`quota exceeded: at most ${limits.maxFiles} files`);
    }
    this.#reservedFiles++;
  }

  releaseFile(): void {
    this.#reservedFiles = Math.max(0, this.#reservedFiles - 1);
  }

  /** Grows a reservation by `bytes`, or throws QuotaExceededError if the total would pass maxBytes. */
  reserveBytes(limits: QuotaLimits, bytes: number): void {
    if (bytes <= 0) return;
    const usage = this.#usage ?? { bytes: 0, files: 0 };
    if (limits.maxBytes && usage.bytes + this.#reservedBytes + bytes > limits.maxBytes) {
      throw new QuotaExceededError(`quota exceeded: at most ${limits.maxBytes} bytes`);
    }
    this.#reservedBytes += bytes;
  }

  releaseBytes(bytes: number): void {
    this.#reservedBytes = Math.max(0, this.#reservedBytes - bytes);
  }
}

/** `storage` with `limits` enforced and `tracker` kept current. */
export class QuotaStorage implements Storage {
  readonly #inner: Storage;
  readonly #tracker: UsageTracker;
  readonly #limits: QuotaLimits;

  constructor(options: { storage: Storage; tracker: UsageTracker; limits: QuotaLimits }) {
    this.#inner = options.storage;
    this.#tracker = options.tracker;
    this.#limits = options.limits;
    // A session is starting: count the user's usage now, before the first upload needs it.
    this.#tracker.touch();
  }

  stat(path: string): Promise<FileInfo> {
    return this.#inner.stat(path);
  }

  list(path: string): AsyncIterable<FileInfo[]> {
    return this.#inner.list(path);
  }

  openRead(path: string): Promise<FileReader> {
    return this.#inner.openRead(path);
  }

  async openWrite(path: string, options?: OpenWriteOptions): Promise<FileWriter> {
    await this.#tracker.ready();
    // The inner storage's own lookup of the target says whether this adds a file: no stat of ours.
    let existing: number | undefined;
    let reserved = false;
    const check = (found: FileInfo | undefined): void => {
      options?.check?.(found);
      existing = found && !found.uploading ? found.size : undefined;
      if (existing === undefined) {
        this.#tracker.reserveFile(this.#limits);
        reserved = true;
      }
    };
    let writer: FileWriter;
    try {
      writer = await this.#inner.openWrite(path, { ...options, check });
    } catch (err) {
      if (reserved) this.#tracker.releaseFile();
      throw err;
    }
    return new QuotaWriter(writer, this.#tracker, this.#limits, existing);
  }

  mkdir(path: string): Promise<void> {
    return this.#inner.mkdir(path);
  }

  async remove(path: string): Promise<void> {
    const size = await this.#fileSize(path);
    await this.#inner.remove(path);
    if (size !== undefined) this.#tracker.add({ bytes: -size, files: -1 });
  }

  rmdir(path: string): Promise<void> {
    return this.#inner.rmdir(path);
  }

  async rename(from: string, to: string, options?: RenameOptions): Promise<void> {
    // Within one storage a rename keeps the bytes; only a file it replaces is freed. What the
    // target holds comes from the inner storage's own lookup.
    let replaced: number | undefined;
    const check = (found: FileInfo | undefined): void => {
      options?.check?.(found);
      replaced = found && !found.isDirectory && !found.uploading ? found.size : undefined;
    };
    await this.#inner.rename(from, to, { ...options, check });
    if (options?.overwrite && replaced !== undefined) this.#tracker.add({ bytes: -replaced, files: -1 });
  }

  setMtime(path: string, mtime: Date, options?: SetMtimeOptions): Promise<void> {
    return this.#inner.setMtime(path, mtime, options);
  }

  checksum(path: string, algorithm: 'md5' | 'sha1' | 'sha256'): Promise<string> {
    return this.#inner.checksum(path, algorithm);
  }

  /** The size of the stored file at `path`; undefined when there is none (or a directory, or an upload). */
  async #fileSize(path: string): Promise<number | undefined> {
    try {
      const info = await this.#inner.stat(path);
      return info.isDirectory || info.uploading ? undefined : info.size;
    } catch (err) {
      if (err instanceof NotFoundError) return undefined;
      throw err;
    }
  }
}

/**
 * Reserves bytes as they arrive. The reservation is the upload's growth over
 * the file it replaces (`replaces` bytes): overwriting a 10 MiB file with
 * 10 MiB needs no room. A refused write aborts the upload at once.
 */
class QuotaWriter implements FileWriter {
  readonly #inner: FileWriter;
  readonly #tracker: UsageTracker;
  readonly #limits: QuotaLimits;
  /** Size of the stored file this upload replaces; undefined for a new file. */
  readonly #replaces: number | undefined;
  /** Highest end offset written: what the stored file will hold. */
  #end = 0;
  /** Bytes reserved in the tracker now. */
  #reserved = 0;
  #done = false;
  continueExisting?: (size: number) => Promise<void>;

  constructor(inner: FileWriter, tracker: UsageTracker, limits: QuotaLimits, replaces: number | undefined) {
    this.#inner = inner;
    this.#tracker = tracker;
    this.#limits = limits;
    this.#replaces = replaces;
    if (inner.continueExisting) {
      this.continueExisting = async (size) => {
        await inner.continueExisting!(size);
        this.#end = Math.max(this.#end, size);
      };
    }
  }

  get bytesReceived(): number {
    return this.#inner.bytesReceived;
  }

  async write(offset: number, data: Buffer): Promise<void> {
    const end = Math.max(this.#end, offset + data.length);
    const growth = Math.max(0, end - (this.#replaces ?? 0));
    try {
      this.#tracker.reserveBytes(this.#limits, growth - this.#reserved);
    } catch (err) {
      // Refused before the bytes go anywhere; the upload so far is discarded (no partial object, no multipart left).
      await this.abort();
      throw err;
    }
    this.#reserved = Math.max(this.#reserved, growth);
    this.#end = end;
    return this.#inner.write(offset, data);
  }

  setMtime(mtime: Date): void {
    this.#inner.setMtime(mtime);
  }

  async commit(): Promise<void> {
    try {
      await this.#inner.commit();
    } catch (err) {
      this.#release();
      throw err;
    }
    const size = this.#inner.bytesReceived;
    this.#release();
    this.#tracker.add({ bytes: size - (this.#replaces ?? 0), files: this.#replaces === undefined ? 1 : 0 });
  }

  async abort(): Promise<void> {
    this.#release();
    await this.#inner.abort();
  }

  #release(): void {
    if (this.#done) return;
    this.#done = true;
    this.#tracker.releaseBytes(this.#reserved);
    this.#reserved = 0;
    if (this.#replaces === undefined) this.#tracker.releaseFile();
  }
}

/** Counts usage by walking `storage` directory by directory: for stores without a flat listing (MemoryStorage, tests). */
export function walkUsage(storage: Storage): UsageScan {
  return async () => {
    const usage: Usage = { bytes: 0, files: 0 };
    const dirs = ['/'];
    for (let dir = dirs.pop(); dir !== undefined; dir = dirs.pop()) {
      for await (const page of storage.list(dir)) {
        for (const entry of page) {
          const path = dir === '/' ? `/${entry.name}` : `${dir}/${entry.name}`;
          if (entry.isDirectory) dirs.push(path);
          else if (!entry.uploading) {
            usage.bytes += entry.size;
            usage.files++;
          }
        }
      }
    }
    return usage;
  };
}

/** The trackers of one server, one per user and location, created at the user's first session. */
export class UsageTrackers {
  readonly #opts: { rescanIntervalMs: number; slots: ScanSlots; log?: QuotaLogger };
  readonly #trackers = new Map<string, { username: string; tracker: UsageTracker }>();
  readonly #scanned = new Set<() => void>();

  constructor(options: { rescanIntervalMs: number; scanConcurrency: number; log?: QuotaLogger }) {
    this.#opts = { rescanIntervalMs: options.rescanIntervalMs, slots: new ScanSlots(options.scanConcurrency), ...(options.log ? { log: options.log } : {}) };
  }

  /** The tracker for `username` at `location` (bucket and prefix: a moved home is counted afresh). */
  get(username: string, location: string, scan: UsageScan): UsageTracker {
    const key = `${username}\u0000${location}`;
    let entry = this.#trackers.get(key);
    if (!entry) {
      for (const [k, e] of this.#trackers) {
        if (e.username === username) {
          e.tracker.stop();
          this.#trackers.delete(k);
        }
      }
      const tracker = new UsageTracker({
        scan,
        rescanIntervalMs: this.#opts.rescanIntervalMs,
        slots: this.#opts.slots,
        ...(this.#opts.log ? { log: this.#opts.log } : {}),
        onScanned: () => {
          for (const listener of this.#scanned) listener();
        },
      });
      entry = { username, tracker };
      this.#trackers.set(key, entry);
    }
    return entry.tracker;
  }

  /** Calls `listener` after every finished scan (status.usage follows scans, not each upload). */
  onScanned(listener: () => void): void {
    this.#scanned.add(listener);
  }

  /** The counted usage of each user with a tracker (committed; uploads in progress not included). */
  usages(): { username: string; usage: Usage }[] {
    const out: { username: string; usage: Usage }[] = [];
    for (const { username, tracker } of this.#trackers.values()) {
      const usage = tracker.usage;
      if (usage) out.push({ username, usage });
    }
    return out;
  }

  /** One user's counted usage, when a session of theirs has counted it. */
  usageOf(username: string): Usage | undefined {
    for (const e of this.#trackers.values()) if (e.username === username) return e.tracker.usage;
    return undefined;
  }

  stop(): void {
    for (const { tracker } of this.#trackers.values()) tracker.stop();
  }
}
