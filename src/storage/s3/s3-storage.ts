/**
 * The Storage interface over one S3 bucket and key prefix.
 *
 * Namespace: user path "/a/b" is key `keyPrefix + "a/b"`. S3 has no
 * directories; a directory is either a zero-byte marker key ending in "/"
 * (what mkdir creates) or any common prefix, and "/" always exists. When a
 * name is both a file and a prefix, the file wins everywhere (stat, list,
 * open). Every path is re-validated here so a bug upstream cannot escape the
 * key prefix.
 */
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  type HeadObjectCommandOutput,
  ListObjectsV2Command,
  type ListObjectsV2CommandOutput,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import type { Logger } from 'pino';
import type { RenameMode, S3Config } from '../../config/types.ts';
import {
  AlreadyExistsError,
  InvalidRequestError,
  NotEmptyError,
  NotFoundError,
  PermissionDeniedError,
  UnsupportedError,
  WrongTypeError,
} from '../errors.ts';
import { createHash } from 'node:crypto';
import { isHexDigest } from '../content-hashes.ts';
import { basename, dirname, isWithin, keyUnder, MAX_KEY_BYTES } from '../paths.ts';
import type { UploadBudget } from '../upload-budget.ts';
import type {
  FileInfo,
  FileReader,
  FileWriter,
  HashAlgorithm,
  OpenWriteOptions,
  RenameOptions,
  SetMtimeOptions,
  Storage,
} from '../storage.ts';
import { forEachBounded } from './bounded.ts';
import { Copier, type CopierOptions } from './copier.ts';
import { isNotImplemented, isPreconditionFailed, toStorageError } from './errors.ts';
import { DirectoryHints } from './directory-hints.ts';
import { type ChangeLog, DirectoryMemory, type KnownName, type ListedNames } from './directory-memory.ts';
import { decodeKey, listPages, type ListedEntry } from './lister.ts';
import {
  coveredAtFrom,
  type ListingIndex,
  ListingIndexBuilder,
  type ListingIndexStore,
  shouldReadIndex,
  shouldWriteIndex,
} from './listing-index.ts';
import { MtimeCache, mtimeMetadata, parseMtime, type StoredRecord, type WrittenObject } from './mtime-cache.ts';
import { READ_AHEAD_BYTES, ReadAhead, ReadAheadBudget, type ListedFile } from './read-ahead.ts';
import { isReservedKey } from './reserved-keys.ts';
import { deadlineFor, withRetries } from './retry.ts';
import { getFirstChunk, S3Reader, type FirstChunk } from './reader.ts';
import type { Clock, UploadEvents } from './upload-pipeline.ts';
import type { UploadRegistry } from './upload-registry.ts';
import { ConditionalWrites, type DeferredUpload, S3Writer } from './writer.ts';
import type { ParkedUpload, TempUploads } from './temp-uploads.ts';

/** Hands what a change stored to #changing, which records it once the change is noted (#wrote). */
type RecordWrite = (key: string, written: WrittenObject) => void;

export interface S3StorageOptions {
  client: S3Client;
  bucket: string;
  /** The user's root: "" or a prefix ending in "/". */
  keyPrefix: string;
  config: S3Config;
  /** 0: non-empty directories cannot be renamed; 1: renamed object by object. */
  renameMode: RenameMode;
  /** Mode 1 refuses directories holding more objects than this. */
  renameMaxObjects: number;
  uploads: UploadRegistry;
  log: Logger;
  clock?: Clock;
  events?: UploadEvents;
  /** Shared across sessions so If-None-Match support is probed once. */
  conditionalWrites?: ConditionalWrites;
  /** Tests lower the multipart-copy threshold to exercise it on small objects. */
  copy?: Pick<CopierOptions, 'multipartThreshold' | 'partSize' | 'partConcurrency'>;
  /** Out-of-order write window per upload (bytes). */
  writeWindowBytes?: number;
  /**
   * What a listing reports as a file's mtime: "metadata" (default) the stored
   * mtime, as stat does, at the cost of a HeadObject per file not in
   * `mtimeCache`; "lastModified" S3's own time, with no extra requests.
   */
  listingMtime?: 'metadata' | 'lastModified';
  /** Shared across sessions so a directory listed again costs no HEADs. */
  mtimeCache?: MtimeCache;
  /**
   * Which store and credentials this storage reaches its bucket through (endpoint, region, role):
   * what the shared mtime cache knows is shared only between storages of the same one. Default: the bucket.
   */
  storeScope?: string;
  /** The S3 endpoint ("" for AWS's own), so locate() tells objects of same-named buckets of two stores apart. */
  endpoint?: string;
  /** Shared across sessions so each sees the others' changes at once (docs/adr/0019). */
  changeLog?: ChangeLog;
  /** The directory memories of the same user's other sessions through this store, whose held listings answer here too (DirectoryPeers). */
  directoryPeers?: Set<WeakRef<DirectoryMemory>>;
  /** Per-directory indexes of stored mtimes kept in the bucket (docs/adr/0020); absent: off. */
  listingIndex?: ListingIndexStore;
  /** Names lately found to be directories, shared across sessions: a STAT of one asks its two questions at once. */
  directoryHints?: DirectoryHints;
  /** Store MD5/SHA-1/SHA-256 with uploaded objects (default true). */
  storeChecksums?: boolean;
  /** Allow resumed uploads, FileWriter.continueExisting (default true). */
  resume?: boolean;
  /** Uploads through a temporary name (uploads.tempSuffixes), shared across sessions; absent: off. */
  tempUploads?: TempUploads;
  /** Part memory shared by every upload of the server (sftp.uploadMemoryBudget); absent: unlimited. */
  uploadBudget?: UploadBudget;
  /** Bytes of small files read ahead, shared by every session (docs/adr/0021); absent: this storage's own. */
  readAheadBudget?: ReadAheadBudget;
}

// Metadata requests are small; a minute covers the SDK's own retries.
const METADATA_TIMEOUT_MS = 60_000;
// Copies and deletes in flight while renaming a directory.
const RENAME_PARALLELISM = 8;
// HeadObject requests in flight per listing page when listing reports stored mtimes.
const LISTING_HEAD_PARALLELISM = 32;
// Entries handed out at once while their lookups finish: one SFTP NAME reply's worth.
const LISTING_SLICE = 100;
// How long a directory this session has just seen (listed, created, looked up) is taken to still
// exist without asking S3 again: long enough for `put *` of a batch, short enough that another
// session removing it is noticed soon (docs/adr/0018).
const SEEN_DIRECTORY_MS = 5_000;
// Files of at most this size are read ahead when a session reads a directory in name order (docs/adr/0021).
const READ_AHEAD_FILE_BYTES = 1024 * 1024;
// Names the target lookup reads at once; names sorting before "x/" ("x-1", "x.txt") share its page.
const LOOKUP_PAGE = 1000;

/** What a name holds, from one listing (see S3Storage.#lookup). */
interface NameLookup {
  /** The object of exactly that name, if any; it wins over a directory of the same name. */
  file?: { size: number; lastModified: Date | undefined };
  /** Keys under "name/" exist (a marker or children). */
  directory: boolean;
  /** Answered from a directory listing held in memory, which counts until then (ms). */
  until?: number;
}

/** One listing's use of the listing index (docs/adr/0020). */
interface IndexRun {
  prefix: string;
  /** The stored index, read once, at the first file the memory cache does not answer. */
  index?: Promise<ListingIndex | undefined>;
  /** What this listing learned, for the index it writes when complete; from the first page's Date. */
  builder?: ListingIndexBuilder;
  /** Files HEADed. */
  heads: number;
  /** Files so far that the memory cache did not answer. */
  unanswered: number;
}

const systemClock: Clock = { now: () => Date.now() };

/** Storage backed by S3 (or an S3-compatible store). */
export class S3Storage implements Storage {
  #client: S3Client;
  #bucket: string;
  #prefix: string;
  #o: S3StorageOptions;
  #clock: Clock;
  #copier: Copier;
  #conditionalWrites: ConditionalWrites;
  #mtimeCache: MtimeCache;
  #hints: DirectoryHints;
  /** The bucket as the shared mtime cache names it (see storeScope). */
  #mtimeScope: string;
  /** Complete listings of directories this session fetched lately (docs/adr/0019). */
  #memory: DirectoryMemory;
  /** Listings of a parent started by an upload and not answered yet, by prefix. */
  #learning = new Map<string, Promise<void>>();
  /** Small files fetched before the session opens them (docs/adr/0021). */
  #readAhead: ReadAhead;

  constructor(options: S3StorageOptions) {
    if (options.keyPrefix !== '' && !options.keyPrefix.endsWith('/')) {
      throw new Error(`keyPrefix must be empty or end with "/": ${JSON.stringify(options.keyPrefix)}`);
    }
    this.#o = options;
    this.#client = options.client;
    this.#bucket = options.bucket;
    this.#prefix = options.keyPrefix;
    this.#clock = options.clock ?? systemClock;
    this.#conditionalWrites = options.conditionalWrites ?? new ConditionalWrites();
    this.#mtimeCache = options.mtimeCache ?? new MtimeCache();
    this.#hints = options.directoryHints ?? new DirectoryHints();
    this.#mtimeScope = options.storeScope ? `${options.storeScope}\u0000${options.bucket}` : options.bucket;
    this.#memory = new DirectoryMemory({
      now: () => this.#clock.now(),
      ttlMs: SEEN_DIRECTORY_MS,
      bucket: options.bucket,
      ...(options.changeLog ? { log: options.changeLog } : {}),
      ...(options.directoryPeers ? { peers: options.directoryPeers } : {}),
    });
    this.#copier = new Copier({
      client: options.client,
      bucket: options.bucket,
      config: options.config,
      log: options.log,
      ...options.copy,
    });
    this.#readAhead = new ReadAhead(
      {
        heldFiles: (prefix) => this.#memory.files(prefix),
        filesAfter: (prefix, startAfter, max) => this.#filesAfter(prefix, startAfter, max),
        firstChunk: (key, closer, maxBytes) => getFirstChunk(this.#readerOptions(key), closer, maxBytes),
        seq: () => this.#memory.seq,
        changedAfter: (key, seq) => this.#memory.changedAfter(key, seq),
        now: () => this.#clock.now(),
      },
      { maxFiles: options.config.download.readAheadFiles, maxFileBytes: READ_AHEAD_FILE_BYTES, ttlMs: SEEN_DIRECTORY_MS },
      options.readAheadBudget ?? new ReadAheadBudget(READ_AHEAD_BYTES),
    );
  }

  locate(path: string): string {
    return [this.#o.endpoint ?? '', this.#bucket, this.#key(path)].join('\u0000');
  }

  async stat(path: string): Promise<FileInfo> {
    const key = this.#key(path);
    const context = `stat ${path}`;
    if (path === '/') return this.#directoryInfo('/', undefined);
    // What S3 answers is remembered as of now, before it is asked (a change meanwhile counts against it).
    const seq = this.#memory.seq;
    // An upload in progress wins over the object it will replace: an overwrite reports the bytes
    // received so far, as a new file does (and as a disk would after O_TRUNC).
    // Being stored at this temporary name in the background (the window passed): STAT waits for it.
    const storing = this.#o.tempUploads?.storing(this.#bucket, key);
    if (storing) await storing;
    const live = this.#o.uploads.get(this.#bucket, key);
    // A directory listed within the last 5 s answers without asking S3 (docs/adr/0019); "no such
    // file" is always S3's answer.
    const [prefix, name] = splitKey(key);
    const held = live ? undefined : this.#memory.name(prefix, name);
    const known = held?.state === 'absent' ? undefined : (held as { state: KnownName } | undefined);
    // A directory this session stat'ed in the last 5 s (rclone stats the parent before each upload, docs/adr/0018).
    const seenDirectory = live || known?.state.file ? undefined : this.#memory.seenDirectoryMarker(key);
    if (seenDirectory) return this.#directoryInfo(basename(path), seenDirectory.mtime);
    // A file this server stored in the last 5 s with a time (SETSTAT's copy, `put -p`): what a HEAD would tell (docs/adr/0022).
    const stored = live ? undefined : this.#justStored(key);
    if (stored?.storedMtimeMs !== undefined) return { name: basename(path), isDirectory: false, size: stored.size, mtime: new Date(stored.storedMtimeMs) };
    // A file read ahead (docs/adr/0021) carries what a HEAD would tell.
    const ahead = live || known?.state.file?.statMtime ? undefined : await this.#readAhead.peek(key);
    if (ahead) return { name: basename(path), isDirectory: false, size: ahead.size, mtime: this.#firstChunkMtime(ahead) };
    // A listing that expired lately is fetched again beside this stat's own lookup: its mtimes need
    // HEADs that this stat would wait for, the next names in the directory do not (docs/adr/0019).
    const relisting = !live && !known && this.#memory.stale(prefix) ? this.#learnDirectory(prefix, context) : undefined;
    const knownFile = known?.state.file;
    if (knownFile?.statMtime) return { name: basename(path), isDirectory: false, size: knownFile.size, mtime: knownFile.statMtime };
    // Known to be a directory: the listing of it alone tells its marker's time.
    const knownDirectory = known !== undefined && !knownFile && known.state.directory;
    // A name lately seen as a directory (directory-hints.ts): its listing goes out beside the HEAD.
    const directoryAlongside = !live && !knownDirectory && this.#hints.has(this.#mtimeScope, key) ? this.#directory(path, context) : undefined;
    directoryAlongside?.catch(() => {});
    const [head] = await Promise.all([live || knownDirectory ? undefined : this.#head(key, context), relisting]);
    if (head) {
      this.#hints.forget(this.#mtimeScope, key);
      return this.#fileInfo(basename(path), head);
    }
    if (live) {
      // A closed upload waiting for its rename (temp-uploads.ts) is a whole file to the client: SETSTAT applies to it.
      const parked = this.#o.tempUploads?.peek(this.#bucket, key) !== undefined;
      return {
        name: basename(path),
        isDirectory: false,
        size: live.bytesReceived,
        mtime: new Date(this.#clock.now()),
        ...(parked ? {} : { uploading: true }),
      };
    }
    const directory = await (directoryAlongside ?? this.#directory(path, context));
    if (directory) {
      this.#sawDirectory(path, seq, { mtime: directory.markerMtime });
      return this.#directoryInfo(basename(path), directory.markerMtime);
    }
    this.#hints.forget(this.#mtimeScope, key);
    throw new NotFoundError(`${path}: no such file or directory`);
  }

  async *list(path: string): AsyncGenerator<FileInfo[]> {
    const key = this.#key(path);
    const context = `list ${path}`;
    // A file of this name hides the directory, as it does in the parent's listing. A directory
    // this session has just seen as one is not asked about again.
    const known = path === '/' ? undefined : this.#memory.name(...splitKey(key));
    const seq = this.#memory.seq;
    const seen = this.#recentlySeen(path) || (known !== undefined && known.state !== 'absent' && !known.state.file && known.state.directory);
    const shadowingFile = seen ? Promise.resolve(undefined) : this.#head(key, context);
    shadowingFile.catch(() => {});
    const listed = new Set<string>();
    let first = true;
    const listedAt = this.#clock.now();
    // Everything the listing said, kept while it fits one page (docs/adr/0019).
    const names: ListedNames = new Map();
    let pages = 0;
    const index: IndexRun | undefined =
      this.#o.listingIndex && (this.#o.listingMtime ?? 'metadata') === 'metadata' ? { prefix: this.#dirPrefix(path), heads: 0, unanswered: 0 } : undefined;
    for await (const page of listPages({
      client: this.#client,
      bucket: this.#bucket,
      prefix: this.#dirPrefix(path),
      context,
      prefetch: true,
    })) {
      if (first) {
        first = false;
        if (await shadowingFile) throw new WrongTypeError(`${path}: not a directory`);
        if (!page.sawAnything && path !== '/') throw new NotFoundError(`${path}: no such file or directory`);
        this.#sawDirectory(path, seq);
        if (index && page.date) index.builder = new ListingIndexBuilder(coveredAtFrom(page.date));
      }
      pages++;
      // A whole directory in one page is held from now, not from when the client has read it all:
      // psftp and FileZilla get or remove each file of a wildcard before asking for the rest of
      // the listing. The mtimes STAT would report join it as the lookups find them.
      const whole = pages === 1 && page.last;
      for (const entry of page.entries) {
        listed.add(entry.name);
        if (entry.isDirectory) this.#hints.note(this.#mtimeScope, this.#dirPrefix(path) + entry.name);
        if (whole) names.set(entry.name, entry.isDirectory ? { directory: true } : { file: { size: entry.size, lastModified: entry.lastModified }, directory: false });
      }
      if (whole) this.#remember(this.#dirPrefix(path), listedAt, seq, names);
      const statMtime = whole ? (name: string, mtime: Date) => {
        const held = names.get(name);
        if (held !== undefined && held !== 'unknown' && held.file) held.file.statMtime = mtime;
      } : undefined;
      if (page.entries.length > 0) yield* this.#listedInfos(page.entries, context, statMtime, index);
    }
    // Complete: every page was read, so the index written now loses nothing the old one held.
    if (index && shouldWriteIndex({ complete: true, heads: index.heads, builder: index.builder })) {
      void this.#o.listingIndex!.write(this.#client, this.#bucket, index.prefix, index.builder!);
    }
    if (pages > 1) this.#remember(this.#dirPrefix(path), listedAt, seq, undefined);
    const uploading = this.#temporaryUploads(this.#dirPrefix(path), listed);
    if (uploading.length > 0) yield uploading;
  }

  /**
   * Uploads to temporary names (temp-uploads.ts) in this directory that S3 cannot list yet: a
   * client watching for its `.filepart` sees it while it uploads and while it waits for its rename.
   */
  #temporaryUploads(prefix: string, listed: ReadonlySet<string>): FileInfo[] {
    const temp = this.#o.tempUploads;
    if (!temp) return [];
    const infos: FileInfo[] = [];
    for (const [key, live] of this.#o.uploads.under(this.#bucket, prefix)) {
      const name = key.slice(prefix.length);
      if (name === '' || name.includes('/') || listed.has(name) || temp.finalName(`/${name}`) === undefined) continue;
      infos.push({ name, isDirectory: false, size: live.bytesReceived, mtime: new Date(this.#clock.now()) });
    }
    return infos;
  }

  async openRead(path: string): Promise<FileReader> {
    const key = this.#key(path);
    const context = `open ${path}`;
    await this.#settleParked(key);
    if (path === '/') throw new WrongTypeError('/: is a directory');
    const readSeq = this.#memory.seq;
    const object = this.#readerOptions(key, path);
    // The first ranged GET is the open: no HEAD before it (docs/adr/0018), and none at all for a
    // file read ahead (docs/adr/0021).
    // An upload to the key, here or in another session, is in the change log: it is not taken then.
    const ahead = await this.#readAhead.take(key);
    const closer = ahead?.closer ?? new AbortController();
    const first = ahead?.first ?? (await getFirstChunk(object, closer));
    // Refused range: an empty object (or one removed meanwhile); a HEAD tells which.
    const head = first === 'empty' ? await this.#head(key, context) : undefined;
    if (first === undefined || (first === 'empty' && !head)) {
      if (await this.#directory(path, context)) throw new WrongTypeError(`${path}: is a directory`);
      throw new NotFoundError(`${path}: no such file or directory`);
    }
    this.#readAhead.opened(key);
    if (first !== 'empty' && first.metadata && Object.keys(first.metadata).length > 0) this.#mtimeCache.read(this.#mtimeScope, key, first.metadata, readSeq);
    if (first === 'empty') {
      const info = this.#fileInfo(basename(path), head!);
      return new S3Reader({ ...object, size: info.size, mtime: info.mtime, ...(head!.ETag ? { etag: head!.ETag } : {}), closer });
    }
    return new S3Reader({
      ...object,
      size: first.size,
      mtime: this.#firstChunkMtime(first),
      ...(first.etag ? { etag: first.etag } : {}),
      first,
      closer,
    });
  }

  #readerOptions(key: string, path = `/${key.slice(this.#prefix.length)}`) {
    return { client: this.#client, bucket: this.#bucket, key, path, download: this.#o.config.download };
  }

  /** The mtime stat reports, from a GET's headers: the stored one, else Last-Modified. */
  #firstChunkMtime(first: FirstChunk): Date {
    return parseMtime(first.metadata?.mtime) ?? first.lastModified ?? new Date(this.#clock.now());
  }

  /** Files after `startAfter` in a directory, for reading ahead: one listing request. */
  async #filesAfter(prefix: string, startAfter: string, max: number): Promise<ListedFile[]> {
    const pages = listPages({ client: this.#client, bucket: this.#bucket, prefix, context: `list ${prefix}`, maxKeys: max, startAfter: prefix + startAfter });
    const first = await pages.next();
    await pages.return(undefined);
    if (first.done) return [];
    return first.value.entries.filter((e) => !e.isDirectory).map((e) => ({ name: e.name, size: e.size }));
  }

  async openWrite(path: string, options: OpenWriteOptions = {}): Promise<FileWriter> {
    const key = this.#key(path);
    const context = `open ${path}`;
    if (path === '/') throw new WrongTypeError('/: is a directory');
    // One listing tells what the name holds (file, directory, both); the parent is looked at
    // alongside, unless it is the root or this session has just seen it (docs/adr/0018).
    // requireParent: a PUT of a/b/c would otherwise create "a/" and "a/b/" implicitly.
    const exclusive = options.exclusive === true;
    const finalPath = exclusive ? undefined : this.#o.tempUploads?.finalName(path);
    const [target, parent, finalTaken] = await Promise.all([
      this.#writeTarget(path, context, options.createOrReplace === true),
      this.#parent(path, context),
      finalPath ? this.#finalTaken(finalPath, context) : Promise.resolve(true),
    ]);
    if (parent === 'file') throw new WrongTypeError(`${dirname(path)}: not a directory`);
    if (parent === 'missing' && options.requireParent) throw new NotFoundError(`${dirname(path)}: no such file or directory`);
    if (target.directory && !target.file) throw new WrongTypeError(`${path}: is a directory`);
    const live = this.#o.uploads.get(this.#bucket, key);
    if (exclusive && (target.file || live)) throw new AlreadyExistsError(`${path}: file already exists`);
    options.check?.(
      target.file
        ? { name: basename(path), isDirectory: false, size: target.file.size, mtime: target.file.lastModified ?? new Date(this.#clock.now()) }
        : live
          ? { name: basename(path), isDirectory: false, size: live.bytesReceived, mtime: new Date(this.#clock.now()), uploading: true }
          : undefined,
    );
    this.#forgetDirectories(path);
    if (finalPath) this.#memory.changed(this.#key(finalPath));
    return new S3Writer({
      client: this.#client,
      bucket: this.#bucket,
      key,
      path,
      config: this.#o.config,
      exclusive,
      uploads: this.#o.uploads,
      conditionalWrites: this.#conditionalWrites,
      applyMetadata: (metadata, etag, target) => this.#addMetadata(path, target, metadata, etag),
      ...(finalPath && !finalTaken ? { deferred: this.#deferred(key, this.#key(finalPath), path) } : {}),
      storeChecksums: this.#o.storeChecksums ?? true,
      resume: this.#o.resume ?? true,
      onCommitted: (written) => {
        this.#mtimeCache.forget(this.#mtimeScope, key);
        this.#memory.changed(key);
        if (finalPath) this.#memory.changed(this.#key(finalPath));
        if (written) this.#wrote(key, written);
      },
      ...(this.#o.events ? { events: this.#o.events } : {}),
      ...(this.#o.uploadBudget ? { budget: this.#o.uploadBudget } : {}),
      ...(this.#o.writeWindowBytes ? { windowBytes: this.#o.writeWindowBytes } : {}),
      clock: this.#clock,
      log: this.#o.log,
    });
  }

  /**
   * What an upload's name holds. The whole parent is listed too, so the next uploads into it need
   * no lookup (docs/adr/0019). Only an open that creates or replaces whole, whose result is the
   * same either way, takes "free" or "a file" from that listing: it waits for it, and asks S3 about
   * the name only when the listing did not fit a page. The rest (exclusive, append, refusals) ask
   * S3 at once, beside the listing.
   */
  async #writeTarget(path: string, context: string, createOrReplace: boolean): Promise<NameLookup> {
    const learning = this.#learnDirectory(this.#dirPrefix(dirname(path)), context);
    if (!createOrReplace) return (await Promise.all([this.#lookup(path, context), learning]))[0];
    await learning;
    return this.#lookup(path, context, (known) => known === 'absent' || known.file !== undefined);
  }

  /**
   * Whether the final name of a temporary one is taken (an object, a directory or an upload):
   * only a free final name is written to directly, so an object there is never replaced by an
   * upload whose rename does not come (docs/adr/0017).
   */
  async #finalTaken(finalPath: string, context: string): Promise<boolean> {
    const finalKey = this.#key(finalPath);
    if (this.#o.uploads.get(this.#bucket, finalKey)) return true;
    const found = await this.#lookup(finalPath, context);
    return found.file !== undefined || found.directory;
  }

  #deferred(tempKey: string, finalKey: string, path: string): DeferredUpload {
    const context = `write ${path}`;
    return {
      finalKey,
      park: (upload) => this.#o.tempUploads!.park(this.#bucket, tempKey, upload),
      move: async (fromKey, toKey, metadata, etag) => {
        const head = await this.#head(fromKey, context);
        if (!head) throw new NotFoundError(`${path}: the upload vanished before it could be stored`);
        // Another client stored the final name right after the completion: theirs stays, this upload is lost (ADR 0017).
        if (etag !== undefined && head.ETag !== etag) throw new AlreadyExistsError(`${path}: another client stored the final name before this upload could move to its temporary name`);
        this.#mtimeCache.forget(this.#mtimeScope, toKey);
        await this.#changing({ keys: [fromKey, toKey] }, async () => {
          await this.#copier.copy({ key: fromKey, size: head.ContentLength ?? 0, head }, toKey, context, { ...head.Metadata, ...metadata });
          // Removed only while it is still this upload's object: a client that stored the final
          // name during the copy keeps its file (a few milliseconds between this HEAD and the
          // DELETE remain; S3 has no conditional delete everywhere).
          const now = await this.#head(fromKey, context);
          if (now && now.ETag === head.ETag) await this.#delete(fromKey, context);
        });
      },
      remove: (key) => this.#delete(key, context),
    };
  }

  /** A parked upload of this temporary key is stored there now (a read or a rename elsewhere needs the object). */
  async #settleParked(key: string): Promise<void> {
    const parked = this.#o.tempUploads?.take(this.#bucket, key);
    if (parked) await parked.finish('temporary');
    else await this.#o.tempUploads?.storing(this.#bucket, key);
  }

  async mkdir(path: string): Promise<void> {
    const key = this.#key(path);
    const context = `mkdir ${path}`;
    if (path === '/') throw new AlreadyExistsError('/: already exists');
    const lookedAt = this.#clock.now();
    const [target, parent] = await Promise.all([this.#lookup(path, context), this.#parent(path, context)]);
    if (parent === 'file') throw new WrongTypeError(`${dirname(path)}: not a directory`);
    if (target.file || target.directory || this.#o.uploads.get(this.#bucket, key)) {
      throw new AlreadyExistsError(`${path}: already exists`);
    }
    // As mkdir(2): S3 would make the missing parents exist implicitly.
    if (parent === 'missing') throw new NotFoundError(`${dirname(path)}: no such file or directory`);
    await this.#changing({ keys: [key] }, () => this.#putMarker(`${key}/`, context));
    this.#sawDirectory(path, this.#memory.seq);
    // Nothing was under the name when it was looked up: the new directory is known to be empty for
    // the 5 s from that lookup (changes after the marker count against it, as against any listing).
    this.#memory.remember(`${key}/`, lookedAt, this.#memory.seq, new Map());
  }

  async remove(path: string): Promise<void> {
    const key = this.#key(path);
    const context = `remove ${path}`;
    if (path === '/') throw new WrongTypeError('/: is a directory');
    const parked = this.#o.tempUploads?.take(this.#bucket, key);
    if (parked) {
      // Never stored under this name: dropping the upload is the removal (a resumed one's old object goes too).
      await this.#changing({ keys: [key] }, () => parked.abort());
      if (!(await this.#head(key, context))) return;
    }
    // DeleteObject succeeds on missing keys, so existence is checked first: in a directory listed
    // within the last 5 s, by that listing (docs/adr/0019); else with a HEAD.
    // Only "it is a file" is taken from memory; the refusals are S3's answers.
    const known = await this.#known(key, context);
    const knownFile = known !== undefined && known.state !== 'absent' && known.state.file !== undefined;
    if (!knownFile && !(await this.#head(key, context))) {
      if (await this.#directory(path, context)) throw new WrongTypeError(`${path}: is a directory`);
      throw new NotFoundError(`${path}: no such file or directory`);
    }
    try {
      await this.#delete(key, context);
    } finally {
      this.#memory.changed(key);
      this.#mtimeCache.forget(this.#mtimeScope, key);
    }
    await this.#keepParent(path);
  }

  async rmdir(path: string): Promise<void> {
    const key = this.#key(path);
    const context = `rmdir ${path}`;
    if (path === '/') throw new PermissionDeniedError('/: cannot remove the root directory');
    const marker = `${key}/`;
    // The marker sorts first under its prefix, so two keys tell empty from not.
    const page = await this.#listPrefix(marker, 2, context);
    const keys = (page.Contents ?? []).map((object) => object.Key);
    if (keys.length === 0 && (page.CommonPrefixes?.length ?? 0) === 0) {
      if (await this.#head(key, context)) throw new WrongTypeError(`${path}: not a directory`);
      throw new NotFoundError(`${path}: no such file or directory`);
    }
    if (keys.some((k) => k !== marker) || (page.CommonPrefixes?.length ?? 0) > 0) {
      throw new NotEmptyError('directory not empty');
    }
    await this.#changing({ directories: [path] }, () => this.#delete(marker, context));
    await this.#keepParent(path);
  }

  async rename(from: string, to: string, options: RenameOptions = {}): Promise<void> {
    const fromKey = this.#key(from);
    const toKey = this.#key(to);
    const context = `rename ${from}`;
    if (from === '/') throw new PermissionDeniedError('/: cannot rename the root directory');
    if (to === '/') throw new AlreadyExistsError('/: already exists');
    if (await this.#renameParked(fromKey, toKey, to, options)) return;
    // The source, the target's parent and the target itself, all at once.
    const [source, parent, target] = await Promise.all([
      this.#head(fromKey, context),
      this.#parent(to, context),
      from === to ? Promise.resolve({ directory: false }) : this.#lookup(to, context),
    ]);
    if (parent === 'file') throw new WrongTypeError(`${dirname(to)}: not a directory`);
    if (!source && !(await this.#directory(from, context))) throw new NotFoundError(`${from}: no such file or directory`);
    // As rename(2): S3 would make the target's missing parents exist implicitly, also for a user who may not create directories.
    if (parent === 'missing') throw new NotFoundError(`${dirname(to)}: no such file or directory`);
    if (from === to) return;
    options.check?.(this.#lookedUpInfo(to, target));
    await this.#changing({ directories: [from, to] }, (record) =>
      source ? this.#renameFile(from, to, fromKey, toKey, source, target, options, context, record) : this.#renameDirectory(from, to, target, context),
    );
  }

  /** A lookup's answer as the FileInfo a check is given (a directory's time is not looked up). */
  #lookedUpInfo(path: string, found: NameLookup): FileInfo | undefined {
    const name = basename(path);
    if (found.file) return { name, isDirectory: false, size: found.file.size, mtime: found.file.lastModified ?? new Date(this.#clock.now()) };
    return found.directory ? this.#directoryInfo(name, undefined) : undefined;
  }

  /**
   * The rename a parked upload waits for: to its final name it is completed there, with no copy.
   * Anywhere else (or onto a name taken meanwhile without overwrite) it is stored at its
   * temporary name first, and the ordinary rename follows. True when the rename is done.
   */
  async #renameParked(fromKey: string, toKey: string, to: string, options: RenameOptions): Promise<boolean> {
    const waiting = this.#o.tempUploads?.peek(this.#bucket, fromKey);
    if (!waiting) {
      // A RENAME just after the window: the ordinary rename follows once the object is at the temporary name.
      await this.#o.tempUploads?.storing(this.#bucket, fromKey);
      return false;
    }
    let toFinal = waiting.finalKey === toKey;
    if (toFinal && (options.check || !options.overwrite)) {
      const found = await this.#lookup(to, `rename ${to}`);
      const taken = found.file !== undefined || found.directory || this.#o.uploads.get(this.#bucket, toKey) !== undefined;
      if (taken && !options.overwrite) toFinal = false;
      // A refusal leaves the upload parked, as if the rename had not come.
      else options.check?.(this.#lookedUpInfo(to, found));
    }
    const parked = this.#o.tempUploads?.take(this.#bucket, fromKey);
    if (!parked) return false;
    this.#memory.changed(fromKey);
    this.#memory.changed(toKey);
    if (toFinal) {
      this.#mtimeCache.forget(this.#mtimeScope, toKey);
      await parked.finish('final');
      return true;
    }
    await parked.finish('temporary');
    return false;
  }

  async setMtime(path: string, mtime: Date, options: SetMtimeOptions = {}): Promise<void> {
    const key = this.#key(path);
    const context = `setstat ${path}`;
    const { check } = options;
    await this.#o.tempUploads?.storing(this.#bucket, key);
    const parked = this.#o.tempUploads?.peek(this.#bucket, key);
    // Looked up before this change is noted, which would make it stale.
    const stored = this.#justStored(key);
    await this.#changing({ keys: [key] }, (record) => this.#setMtime(path, key, context, mtime, check, parked, stored, record));
  }

  async #setMtime(
    path: string,
    key: string,
    context: string,
    mtime: Date,
    check: SetMtimeOptions['check'],
    parked: ParkedUpload | undefined,
    stored: StoredRecord | undefined,
    record: RecordWrite,
  ): Promise<void> {
    if (parked) {
      if (check?.({ isDirectory: false }) === false) return;
      // WinSCP sets the time between CLOSE and RENAME: it is stored when the upload is.
      parked.setMtime(mtime);
      return;
    }
    // Another session's upload in progress: the caller decides (SETSTAT leaves it alone).
    if (check && this.#o.uploads.get(this.#bucket, key) && !check({ isDirectory: false, uploading: true })) return;
    // What this server just stored is copied without a HEAD, if S3 still holds that version.
    if (stored) {
      if (check?.({ isDirectory: false }) === false) return;
      if (await this.#copyWithMtime(key, context, mtime, { ...stored, ifMatch: stored.etag }, record)) return;
    }
    const head = path === '/' ? undefined : await this.#head(key, context);
    if (!head) {
      if (await this.#directory(path, context)) {
        if (check?.({ isDirectory: true }) === false) return;
        throw new UnsupportedError(`${path}: directories have no stored modification time`);
      }
      throw new NotFoundError(`${path}: no such file or directory`);
    }
    if (!stored && check?.({ isDirectory: false }) === false) return;
    await this.#copyWithMtime(key, context, mtime, { size: head.ContentLength ?? 0, metadata: head.Metadata ?? {}, head }, record);
  }

  /**
   * S3 changes metadata only by copying the object onto itself. With `ifMatch`, false when the
   * object is no longer that version (then nothing changed).
   */
  async #copyWithMtime(
    key: string,
    context: string,
    mtime: Date,
    source: { size: number; metadata: Record<string, string>; storageClass?: string; head?: HeadObjectCommandOutput; ifMatch?: string },
    record: RecordWrite,
  ): Promise<boolean> {
    this.#mtimeCache.forget(this.#mtimeScope, key);
    // Without a HEAD, the object's headers are what this server stored: its metadata and storage class.
    const head = source.head ?? {
      $metadata: {},
      ETag: source.ifMatch,
      ContentLength: source.size,
      Metadata: source.metadata,
      ...(source.storageClass ? { StorageClass: source.storageClass as HeadObjectCommandOutput['StorageClass'] } : {}),
    };
    const copy = { key, size: source.size, head, ...(source.ifMatch ? { ifMatch: source.ifMatch } : {}) };
    try {
      const written = await this.#copier.copy(copy, key, context, { ...source.metadata, mtime: mtimeMetadata(mtime) });
      if (written) record(key, written);
      return true;
    } catch (err) {
      // Replaced since (412), or a store without conditional copies (501): the HEAD decides.
      const cause = err instanceof Error ? err.cause : undefined;
      if (source.ifMatch && (isPreconditionFailed(cause) || isNotImplemented(cause))) return false;
      throw err;
    }
  }

  async checksum(path: string, algorithm: HashAlgorithm): Promise<string> {
    const key = this.#key(path);
    const context = `checksum ${path}`;
    await this.#settleParked(key);
    // The hashes of a file this server just stored or downloaded (rclone runs md5sum after each).
    const justSeen = this.#justSeenMetadata(key)?.[algorithm];
    if (isHexDigest(algorithm, justSeen)) return justSeen;
    const head = path === '/' ? undefined : await this.#head(key, context);
    if (!head) {
      if (await this.#directory(path, context)) throw new WrongTypeError(`${path}: is a directory`);
      throw new NotFoundError(`${path}: no such file or directory`);
    }
    const stored = head.Metadata?.[algorithm];
    if (isHexDigest(algorithm, stored)) return stored;
    return this.#hashObject(key, head, algorithm, context);
  }

  /** Reads an object once, hashing as it streams; pinned to the version HEAD saw. */
  async #hashObject(key: string, head: HeadObjectCommandOutput, algorithm: HashAlgorithm, context: string): Promise<string> {
    const size = head.ContentLength ?? 0;
    try {
      return await withRetries(
        async (signal) => {
          const hash = createHash(algorithm);
          const out = await this.#client.send(
            new GetObjectCommand({ Bucket: this.#bucket, Key: key, ...(head.ETag ? { IfMatch: head.ETag } : {}) }),
            { abortSignal: signal },
          );
          for await (const chunk of out.Body as AsyncIterable<Uint8Array>) hash.update(chunk);
          return hash.digest('hex');
        },
        // A whole-object read: the deadline grows with the size (20 s per 100 MiB beyond the base).
        { attempts: 3, timeoutMs: deadlineFor(0, size, 60_000, 200) },
      );
    } catch (err) {
      throw toStorageError(err, context);
    }
  }

  /** Merges metadata into a just-written object, unless it was replaced since (ETag differs). */
  async #addMetadata(path: string, key: string, metadata: Record<string, string>, etag: string | undefined): Promise<void> {
    const context = `setstat ${path}`;
    const head = await this.#head(key, context);
    if (!head || (etag !== undefined && head.ETag !== etag)) return;
    this.#mtimeCache.forget(this.#mtimeScope, key);
    await this.#changing({ keys: [key] }, () => this.#copier.copy({ key, size: head.ContentLength ?? 0, head }, key, context, { ...head.Metadata, ...metadata }));
  }

  async #renameFile(
    from: string,
    to: string,
    fromKey: string,
    toKey: string,
    source: HeadObjectCommandOutput,
    target: NameLookup,
    options: RenameOptions,
    context: string,
    record: RecordWrite,
  ): Promise<void> {
    if (target.file && !options.overwrite) throw new AlreadyExistsError(`${to}: file already exists`);
    if (!target.file && target.directory) {
      throw options.overwrite
        ? new WrongTypeError(`${to}: is a directory`)
        : new AlreadyExistsError(`${to}: already exists`);
    }
    this.#mtimeCache.forget(this.#mtimeScope, toKey);
    const written = await this.#copier.copy({ key: fromKey, size: source.ContentLength ?? 0, head: source }, toKey, context);
    if (written) record(toKey, written);
    await this.#delete(fromKey, context);
    this.#mtimeCache.forget(this.#mtimeScope, fromKey);
    await this.#keepParent(from);
  }

  /**
   * Renames a directory. S3 has no rename: every object is copied, then the
   * sources are deleted. This is NOT atomic: other sessions can see both
   * trees, or a partial target, while it runs; a failure while copying removes
   * the copies made, a failure while deleting leaves some sources in place
   * (the target is complete by then).
   */
  async #renameDirectory(from: string, to: string, target: NameLookup, context: string): Promise<void> {
    if (isWithin(to, from)) throw new InvalidRequestError(`${to}: cannot move a directory into itself`);
    if (target.file || target.directory || this.#o.uploads.get(this.#bucket, this.#key(to))) {
      throw new AlreadyExistsError(`${to}: already exists`);
    }
    const fromPrefix = `${this.#key(from)}/`;
    const toPrefix = `${this.#key(to)}/`;
    const first = await this.#listPrefix(fromPrefix, 2, context);
    const onlyMarker = (first.Contents ?? []).every((o) => o.Key === fromPrefix) && !first.IsTruncated;
    if (onlyMarker) {
      await this.#putMarker(toPrefix, context);
      await this.#delete(fromPrefix, context);
      await this.#keepParent(from);
      return;
    }
    if (this.#o.renameMode !== 1) {
      throw new UnsupportedError('renaming a non-empty directory is disabled (renameMode 0)');
    }
    const objects = await this.#collectForRename(from, fromPrefix, context);
    for (const object of objects) {
      if (Buffer.byteLength(toPrefix + object.key.slice(fromPrefix.length)) > MAX_KEY_BYTES + 1) {
        throw new InvalidRequestError(`${to}: a path inside would be too long`);
      }
    }
    const copied: string[] = [];
    try {
      await forEachBounded(objects, RENAME_PARALLELISM, async (object) => {
        const target = toPrefix + object.key.slice(fromPrefix.length);
        await this.#copier.copy(object, target, context);
        copied.push(target);
      });
    } catch (err) {
      // Undo the partial copy so the source tree stays the only one.
      await forEachBounded(copied, RENAME_PARALLELISM, (key) => this.#delete(key, context)).catch((undoErr) =>
        this.#o.log.warn({ err: undoErr, from, to }, 'could not remove partial copy of a renamed directory'),
      );
      throw err;
    }
    await forEachBounded(objects, RENAME_PARALLELISM, (object) => this.#delete(object.key, context));
    await this.#keepParent(from);
  }

  /** Every object under the prefix, refusing before any change when there are too many. */
  async #collectForRename(
    from: string,
    prefix: string,
    context: string,
  ): Promise<{ key: string; size: number; storageClass?: string }[]> {
    const limit = this.#o.renameMaxObjects;
    const objects: { key: string; size: number; storageClass?: string }[] = [];
    let token: string | undefined;
    do {
      const page = await this.#listPrefix(prefix, 1000, context, token, false);
      for (const object of page.Contents ?? []) {
        if (object.Key === undefined) continue;
        objects.push({
          key: object.Key,
          size: object.Size ?? 0,
          ...(object.StorageClass ? { storageClass: object.StorageClass } : {}),
        });
        if (objects.length > limit) {
          throw new UnsupportedError(
            `${from}: directory holds more than ${limit} objects, too many to rename (renameMaxObjects)`,
          );
        }
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    return objects;
  }

  /** Validates a path and maps it to its key; the server's own keys (reserved-keys.ts) are refused. */
  #key(path: string): string {
    const key = keyUnder(this.#prefix, path);
    if (isReservedKey(key)) throw new PermissionDeniedError(`${path}: reserved for the server's own data`);
    return key;
  }

  /** The prefix of a directory's children. */
  #dirPrefix(path: string): string {
    return path === '/' ? this.#prefix : `${this.#key(path)}/`;
  }

  async #head(key: string, context: string): Promise<HeadObjectCommandOutput | undefined> {
    try {
      return await this.#client.send(new HeadObjectCommand({ Bucket: this.#bucket, Key: key }), {
        abortSignal: AbortSignal.timeout(METADATA_TIMEOUT_MS),
      });
    } catch (err) {
      const failure = toStorageError(err, context);
      if (failure instanceof NotFoundError) return undefined;
      throw failure;
    }
  }

  async #listPrefix(
    prefix: string,
    maxKeys: number,
    context: string,
    token?: string,
    delimited = true,
  ): Promise<ListObjectsV2CommandOutput> {
    let page: ListObjectsV2CommandOutput;
    try {
      page = await this.#client.send(
        new ListObjectsV2Command({
          Bucket: this.#bucket,
          Prefix: prefix,
          MaxKeys: maxKeys,
          EncodingType: 'url',
          ...(delimited ? { Delimiter: '/' } : {}),
          ...(token ? { ContinuationToken: token } : {}),
        }),
        { abortSignal: AbortSignal.timeout(METADATA_TIMEOUT_MS) },
      );
    } catch (err) {
      throw toStorageError(err, context);
    }
    for (const object of page.Contents ?? []) if (object.Key !== undefined) object.Key = decodeKey(object.Key);
    for (const common of page.CommonPrefixes ?? []) if (common.Prefix !== undefined) common.Prefix = decodeKey(common.Prefix);
    return page;
  }

  /** Whether `path` is a directory (marker or children); with the marker's time when there is one. */
  async #directory(path: string, context: string): Promise<{ markerMtime: Date | undefined } | undefined> {
    if (path === '/') return { markerMtime: undefined };
    const prefix = this.#dirPrefix(path);
    const page = await this.#listPrefix(prefix, 1, context);
    const object = page.Contents?.[0];
    if (object || (page.CommonPrefixes?.length ?? 0) > 0) {
      return { markerMtime: object?.Key === prefix ? object.LastModified : undefined };
    }
    return undefined;
  }

  /**
   * What a name holds, from one ListObjectsV2 with the name itself as prefix and "/" as
   * delimiter: the object of that name comes first, and "name/" (marker or children) comes back
   * as a common prefix. Only names sorting between them ("name-1", "name.txt") can push "name/"
   * off the page; then one more listing of "name/" decides.
   */
  async #lookup(path: string, context: string, fromMemory?: (known: KnownName | 'absent') => boolean): Promise<NameLookup> {
    if (path === '/') return { directory: true };
    const key = this.#key(path);
    const known = fromMemory ? await this.#known(key, context) : undefined;
    if (known && fromMemory!(known.state)) {
      if (known.state === 'absent') return { directory: false, until: known.until };
      const { file, directory } = known.state;
      return { ...(file ? { file: { size: file.size, lastModified: file.lastModified } } : {}), directory, until: known.until };
    }
    const page = await this.#listPrefix(key, LOOKUP_PAGE, context);
    const object = page.Contents?.find((o) => o.Key === key);
    let directory = (page.CommonPrefixes ?? []).some((p) => p.Prefix === `${key}/`);
    if (!directory && page.IsTruncated) directory = (await this.#directory(path, context)) !== undefined;
    return { ...(object ? { file: { size: object.Size ?? 0, lastModified: object.LastModified } } : {}), directory };
  }

  /**
   * What a directory listing held in memory says of a key's name; a listing that expired lately
   * (the session is working in that directory) is fetched again first, one request for the names
   * that follow. Undefined: ask S3 about the name.
   */
  async #known(key: string, context: string): Promise<{ state: KnownName | 'absent'; until: number } | undefined> {
    const [prefix, name] = splitKey(key);
    const known = this.#memory.name(prefix, name);
    if (known || !this.#memory.stale(prefix)) return known;
    await this.#learnDirectory(prefix, context);
    return this.#memory.name(prefix, name);
  }

  /** What holds the parent of `path`: a directory ("ok"), a file, or nothing. */
  async #parent(path: string, context: string): Promise<'ok' | 'file' | 'missing'> {
    const parent = dirname(path);
    if (this.#recentlySeen(parent)) return 'ok';
    const seq = this.#memory.seq;
    // Only "it is a directory" is taken from memory; the refusals are S3's answers.
    const found = await this.#lookup(parent, context, (known) => known !== 'absent' && !known.file && known.directory);
    if (found.until !== undefined) return 'ok';
    if (found.file) return 'file';
    if (!found.directory) return 'missing';
    this.#sawDirectory(parent, seq);
    return 'ok';
  }

  /** True for the root and for a directory this session saw within SEEN_DIRECTORY_MS, unchanged since. */
  #recentlySeen(path: string): boolean {
    return path === '/' || this.#memory.seenDirectory(this.#key(path));
  }

  /** `seq`: the change log's position before S3 was asked (DirectoryMemory.seq). */
  #sawDirectory(path: string, seq: number, marker?: { mtime: Date | undefined }): void {
    if (path === '/') return;
    this.#memory.sawDirectory(this.#key(path), seq, marker);
    this.#hints.note(this.#mtimeScope, this.#key(path));
  }

  /** A directory this session changes (removes, renames, writes a file over) is looked up afresh. */
  #forgetDirectories(path: string): void {
    if (path === '/') return;
    this.#memory.changed(this.#key(path));
    this.#hints.forget(this.#mtimeScope, this.#key(path));
  }

  /**
   * Runs a change of objects (`keys`) or directories (`directories`, paths) in S3, noting it in the
   * change log before and after: a listing requested in between, which S3 may still answer with the
   * old state, then counts as older than the change (docs/adr/0019). What the change stored
   * (`record`) is recorded after the last note, so that note does not make it stale.
   */
  async #changing<T>(
    changed: { keys?: readonly string[]; directories?: readonly string[] },
    change: (record: RecordWrite) => Promise<T>,
  ): Promise<T> {
    const note = () => {
      for (const key of changed.keys ?? []) this.#memory.changed(key);
      for (const path of changed.directories ?? []) this.#forgetDirectories(path);
    };
    const stored: [string, WrittenObject][] = [];
    note();
    try {
      return await change((key, written) => stored.push([key, written]));
    } finally {
      note();
      for (const [key, written] of stored) this.#wrote(key, written);
    }
  }

  /** Records what this server just stored at `key`, after the change log noted the change. */
  #wrote(key: string, written: WrittenObject): void {
    this.#mtimeCache.wrote(this.#mtimeScope, key, written, this.#memory.seq);
  }

  /**
   * What this server stored at `key` in the last 5 s (docs/adr/0022), unless the key or a directory
   * above it changed through this server since, by any session of any user of the bucket.
   */
  #justStored(key: string): StoredRecord | undefined {
    const stored = this.#mtimeCache.justStored(this.#mtimeScope, key);
    return stored && !this.#memory.changedAfter(key, stored.changeSeq) ? stored : undefined;
  }

  /** The metadata this server just stored or read at `key`, on the same terms as #justStored. */
  #justSeenMetadata(key: string): Record<string, string> | undefined {
    const seen = this.#mtimeCache.justSeenMetadata(this.#mtimeScope, key);
    return seen && !this.#memory.changedAfter(key, seen.changeSeq) ? seen.metadata : undefined;
  }

  /**
   * Keeps a directory's listing for the 5 s (docs/adr/0019); `names` undefined: it did not fit a
   * page. Names with an upload in progress on this server are left to be asked about.
   */
  #remember(prefix: string, listedAt: number, seq: number, names: ListedNames | undefined): void {
    if (names) {
      for (const [key] of this.#o.uploads.under(this.#bucket, prefix)) {
        const name = key.slice(prefix.length);
        if (name.includes('/')) continue;
        names.set(name, 'unknown');
        const final = this.#o.tempUploads?.finalName(`/${name}`);
        if (final !== undefined) names.set(final.slice(1), 'unknown');
      }
    }
    this.#memory.remember(prefix, listedAt, seq, names);
  }

  /**
   * Lists a directory whole, to answer the next lookups in it from memory, unless its listing is
   * held (or being fetched) already. One page: a bigger directory is remembered as such, and its
   * names are looked up one by one until that expires. A failure only costs the memory.
   */
  #learnDirectory(prefix: string, context: string): Promise<void> {
    if (this.#memory.directory(prefix) !== undefined) return Promise.resolve();
    const running = this.#learning.get(prefix);
    if (running) return running;
    const listedAt = this.#clock.now();
    const seq = this.#memory.seq;
    const learning = this.#listPrefix(prefix, LOOKUP_PAGE, context)
      .then((page) => {
        if (page.IsTruncated) return this.#remember(prefix, listedAt, seq, undefined);
        const names: ListedNames = new Map();
        for (const object of page.Contents ?? []) {
          const name = object.Key?.slice(prefix.length);
          if (!name || name.includes('/') || isReservedKey(object.Key!)) continue;
          const { Key: key, ETag: etag, LastModified: lastModified } = object;
          // The mtime stat reports, where the shared cache holds it for this version (no HEAD here).
          const cached = etag && lastModified ? this.#mtimeCache.known(this.#mtimeScope, key!, etag, lastModified, this.#unchangedSince(key!)) : undefined;
          const file = { size: object.Size ?? 0, lastModified, ...(cached !== undefined ? { statMtime: new Date(cached) } : {}) };
          names.set(name, { file, directory: false });
        }
        for (const common of page.CommonPrefixes ?? []) {
          const name = common.Prefix?.slice(prefix.length, -1);
          if (!name || name.includes('/') || isReservedKey(common.Prefix!)) continue;
          const file = names.get(name);
          names.set(name, file && file !== 'unknown' && file.file ? { file: file.file, directory: true } : { directory: true });
        }
        this.#remember(prefix, listedAt, seq, names);
      })
      .catch((err: unknown) => this.#o.log.debug({ err, prefix }, 'could not list a directory to remember it'))
      .finally(() => this.#learning.delete(prefix));
    this.#learning.set(prefix, learning);
    return learning;
  }

  async #putMarker(key: string, context: string): Promise<void> {
    try {
      await this.#client.send(
        new PutObjectCommand({ Bucket: this.#bucket, Key: key, Body: Buffer.alloc(0), ContentLength: 0 }),
        { abortSignal: AbortSignal.timeout(METADATA_TIMEOUT_MS) },
      );
    } catch (err) {
      throw toStorageError(err, context);
    }
  }

  async #delete(key: string, context: string): Promise<void> {
    try {
      await this.#client.send(new DeleteObjectCommand({ Bucket: this.#bucket, Key: key }), {
        abortSignal: AbortSignal.timeout(METADATA_TIMEOUT_MS),
      });
    } catch (err) {
      throw toStorageError(err, context);
    }
  }

  /**
   * Keeps the parent of a removed entry alive. A directory that exists only
   * because of its children vanishes with its last child; clients that delete
   * a tree (remove files, then rmdir) would then fail on the rmdir.
   */
  async #keepParent(path: string): Promise<void> {
    const parent = dirname(path);
    if (parent === '/') return;
    const context = `keep ${parent}`;
    // Another entry the directory was listed with in the last 5 s keeps it (docs/adr/0019).
    const prefix = this.#dirPrefix(parent);
    if (this.#memory.stale(prefix)) await this.#learnDirectory(prefix, context);
    if (this.#memory.holdsOtherThan(prefix, basename(path))) return;
    try {
      if (!(await this.#directory(parent, context))) await this.#putMarker(this.#dirPrefix(parent), context);
    } catch (err) {
      // The operation itself succeeded; an implicit parent vanishing is the lesser harm.
      this.#o.log.warn({ err, path: parent }, 'could not keep parent directory');
    }
  }

  #fileInfo(name: string, head: HeadObjectCommandOutput): FileInfo {
    return {
      name,
      isDirectory: false,
      size: head.ContentLength ?? 0,
      mtime: parseMtime(head.Metadata?.mtime) ?? head.LastModified ?? new Date(this.#clock.now()),
    };
  }

  #directoryInfo(name: string, markerMtime: Date | undefined): FileInfo {
    // Implicit directories have no time of their own; "now" reads better than 1970.
    return { name, isDirectory: true, size: 0, mtime: markerMtime ?? new Date(this.#clock.now()) };
  }

  /**
   * One page of a listing as FileInfos. ListObjectsV2 carries LastModified
   * but not the `mtime` metadata that stat reports; clients that compare the
   * two (rclone, lftp mirror) would see every file as changed, so by default
   * each file's metadata is looked up (cached by version, in parallel).
   */
  async *#listedInfos(
    entries: ListedEntry[],
    context: string,
    statMtime?: (name: string, mtime: Date) => void,
    run?: IndexRun,
  ): AsyncGenerator<FileInfo[]> {
    const infos = entries.map((entry) => ({
      name: entry.name,
      isDirectory: entry.isDirectory,
      size: entry.size,
      mtime: entry.lastModified ?? new Date(this.#clock.now()),
    }));
    if ((this.#o.listingMtime ?? 'metadata') !== 'metadata') {
      yield infos;
      return;
    }
    // The directory's index is read once per listing, once the memory cache has left enough files
    // unanswered to be worth it: a directory held in memory costs no extra request (docs/adr/0020).
    let index: ListingIndex | undefined;
    if (run) {
      run.unanswered += entries.filter((e) => !e.isDirectory && this.#cachedMtime(e) === undefined).length;
      if (shouldReadIndex(run.unanswered)) run.index ??= this.#o.listingIndex!.read(this.#client, this.#bucket, run.prefix);
      index = await run.index;
    }
    // Lookups run in list order, and the page is handed out in slices as they
    // finish, so the first READDIR reply does not wait for a whole page of HEADs.
    const looked = entries.map(() => Promise.withResolvers<void>());
    const lookups = forEachBounded(entries.keys(), LISTING_HEAD_PARALLELISM, async (i) => {
      const entry = entries[i]!;
      try {
        if (entry.isDirectory) return;
        let sameVersion = false;
        const stored = await this.#storedMtime(entry, context, () => (sameVersion = true), index, run);
        if (stored !== null) infos[i]!.mtime = new Date(stored);
        // What STAT would report for the version listed (size and time of one version).
        if (stored !== null && sameVersion) statMtime?.(entry.name, infos[i]!.mtime);
      } finally {
        looked[i]!.resolve();
      }
    });
    for (let i = 0; i < infos.length; i += LISTING_SLICE) {
      await Promise.all(looked.slice(i, i + LISTING_SLICE).map((d) => d.promise));
      yield infos.slice(i, i + LISTING_SLICE);
    }
    await lookups;
  }

  /**
   * A listed file's mtime (ms) exactly as stat reports it: the stored one, else
   * HEAD's Last-Modified (which can differ from the listing's by a rounded
   * second on some stores); null when it cannot be read now. `sameVersion` is
   * called when it is the mtime of the version the listing saw.
   */
  async #storedMtime(
    entry: ListedEntry,
    context: string,
    sameVersion?: () => void,
    index?: ListingIndex,
    run?: IndexRun,
  ): Promise<number | null> {
    const { key, etag, lastModified } = entry;
    if (key === undefined || etag === undefined || lastModified === undefined) return null;
    const version = { name: entry.name, etag, lastModifiedMs: lastModified.getTime() };
    const cached = this.#mtimeCache.get(this.#mtimeScope, key, etag, lastModified);
    if (cached !== undefined) {
      this.#mtimeCache.listed.memory++;
      sameVersion?.();
      run?.builder?.add(version, cached);
      return cached;
    }
    // What this server itself just stored: known, but not read back, so not written to the index.
    const written = this.#mtimeCache.written(this.#mtimeScope, key, etag, lastModified, this.#unchangedSince(key));
    if (written !== undefined) {
      this.#mtimeCache.listed.written++;
      sameVersion?.();
      return written;
    }
    const indexed = index?.mtime(version);
    if (indexed !== undefined) {
      this.#mtimeCache.listed.index++;
      this.#mtimeCache.set(this.#mtimeScope, key, etag, lastModified, indexed);
      sameVersion?.();
      run?.builder?.add(version, indexed);
      return indexed;
    }
    if (run) run.heads++;
    this.#mtimeCache.listed.head++;
    let head: HeadObjectCommandOutput | undefined;
    try {
      head = await this.#head(key, context);
    } catch (err) {
      // A listing is not failed over one file's timestamp; S3's time is the fallback.
      this.#o.log.debug({ err, key }, 'could not read the stored mtime of a listed file');
      return null;
    }
    if (!head) return null; // removed since the listing page was read
    const storedMtime = parseMtime(head.Metadata?.mtime);
    const mtime = (storedMtime ?? head.LastModified)?.getTime();
    if (mtime === undefined) return null;
    if (!storedMtime && head.ETag === etag && head.LastModified) this.#mtimeCache.sawHeadOfListed(lastModified, head.LastModified);
    // Cached only when HEAD saw the version the listing saw.
    if (head.ETag === etag) {
      this.#mtimeCache.set(this.#mtimeScope, key, etag, lastModified, mtime);
      sameVersion?.();
      // A copy between the listing and this HEAD keeps the ETag but not the second.
      const headLastModified = head.LastModified?.getTime();
      if (headLastModified !== undefined && Math.abs(headLastModified - version.lastModifiedMs) < 1000) run?.builder?.add(version, mtime);
    }
    return mtime;
  }

  /** The memory cache's mtime of a listed file's version, if it holds it. */
  #cachedMtime(entry: ListedEntry): number | undefined {
    const { key, etag, lastModified } = entry;
    if (key === undefined || etag === undefined || lastModified === undefined) return undefined;
    return this.#mtimeCache.known(this.#mtimeScope, key, etag, lastModified, this.#unchangedSince(key));
  }

  /** Whether neither `key` nor a directory above it changed through this server after a change log position. */
  #unchangedSince(key: string): (seq: number) => boolean {
    return (seq) => !this.#memory.changedAfter(key, seq);
  }
}

/** A key as its directory's prefix and its name in it ("a/b/c" → "a/b/", "c"). */
function splitKey(key: string): [prefix: string, name: string] {
  const slash = key.lastIndexOf('/');
  return [key.slice(0, slash + 1), key.slice(slash + 1)];
}

