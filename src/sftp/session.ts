/**
 * One SFTP session: turns ssh2's raw SFTP requests into storage calls.
 *
 * ssh2 hands us parsed requests and nothing else; the handle table, the
 * permission checks and the mapping of errors to status codes live here. This
 * module never talks to S3 directly: everything goes through `Storage`.
 */
import type { Attributes, SFTPWrapper } from 'ssh2';
import type { Logger } from 'pino';
import type { Storage, FileInfo, FileWriter } from '../storage/storage.ts';
import type { Permission, User } from '../users/user.ts';
import type { SetstatMode } from '../config/types.ts';
import type { SessionDeps, SessionEvents, TreeOperation } from '../session/types.ts';
import { audited, reportTransfer, requirePermission, resolvePath, statOrUndefined } from '../session/core.ts';
import {
  AlreadyExistsError,
  InvalidRequestError,
  NotFoundError,
  PermissionDeniedError,
  StorageError,
  UnsupportedError,
  WrongTypeError,
} from '../storage/errors.ts';
import { basename } from '../storage/paths.ts';
import { toAttrs, toEntry } from './attrs.ts';
import { decodeOpenFlags } from './open-flags.ts';
import { HandleTable, type Handle, type ReadHandle, type WriteHandle } from './handles.ts';
import { STATUS, toStatus } from './status.ts';
import { RequestOrder, type OrderKey } from './request-order.ts';
import type { WriteData } from './write-requests.ts';

/** Largest READ we answer; OpenSSH clients accept 256 KiB packets, minus headers. */
const MAX_READ_BYTES = 255 * 1024;
/** Entries per NAME reply, so replies stay well under every client's packet limit. */
const NAMES_PER_REPLY = 100;

export interface SftpSessionOptions extends SessionDeps {
  sftp: SFTPWrapper;
  maxOpenHandles?: number;
}

/** A request that needs no ordering (REALPATH, unknown extensions). */
const NO_ORDER: OrderKey = { paths: [] };

type ExtendedHandler = (reqid: number, data: Buffer | undefined) => Promise<void>;

export class SftpSession {
  readonly #sftp: SFTPWrapper;
  readonly #storage: Storage;
  readonly #user: User;
  readonly #setstatMode: SetstatMode;
  readonly #log: Logger;
  readonly #events: SessionEvents;
  readonly #clock: () => Date;
  readonly #handles: HandleTable;
  /** Requests on the same file run in the order received. */
  readonly #order = new RequestOrder();
  /** Uploads between CLOSE and the object being stored: no longer in the handle table. */
  readonly #committing = new Set<WriteHandle>();
  /** Requests received and not yet answered. */
  #inProgress = 0;
  #closed = false;
  #closing: Promise<void> | undefined;

  constructor(opts: SftpSessionOptions) {
    this.#sftp = opts.sftp;
    this.#storage = opts.storage;
    this.#user = opts.user;
    this.#setstatMode = opts.setstatMode;
    this.#log = opts.log;
    this.#events = opts.events ?? {};
    this.#clock = opts.clock ?? (() => new Date());
    this.#handles = new HandleTable(opts.maxOpenHandles);
    this.#register();
  }

  /**
   * Ends the session: open uploads, and uploads still being completed after
   * CLOSE, are aborted (nothing partial becomes visible). Resolves once the
   * aborts are done; calling it again returns the same promise.
   */
  close(): Promise<void> {
    this.#closing ??= this.#shutdown();
    return this.#closing;
  }

  async #shutdown(): Promise<void> {
    this.#closed = true;
    const open = this.#handles.drain();
    const committing = [...this.#committing].map((h) => h.writer.abort().catch(() => undefined));
    await Promise.all([...open.map((h) => this.#discard(h)), ...committing]);
  }

  /** True while a file or directory is open or a request is being answered. */
  get busy(): boolean {
    return this.#handles.size > 0 || this.#inProgress > 0 || this.#committing.size > 0;
  }

  #register(): void {
    const s = this.#sftp;
    const at = (path: string): OrderKey => ({ paths: this.#orderPaths(path) });
    const tree = (...paths: string[]): OrderKey => ({ paths: paths.flatMap((p) => this.#orderPaths(p)), tree: true });
    s.on('OPEN', (id: number, path: string, flags: number, attrs: Attributes) => this.#run(id, at(path), () => this.#handles.opening(() => this.#open(id, path, flags, attrs))));
    s.on('READ', (id: number, h: Buffer, offset: number, len: number) => this.#onHandle(id, h, (handle) => this.#read(id, handle, offset, len)));
    s.on('WRITE', (id: number, h: Buffer, offset: number, data: WriteData) => this.#onHandle(id, h, (handle) => this.#write(id, handle, offset, data)));
    s.on('CLOSE', (id: number, h: Buffer) => this.#run(id, this.#handleKey(h), () => this.#close(id, h)));
    s.on('FSTAT', (id: number, h: Buffer) => this.#onHandle(id, h, (handle) => this.#fstat(id, handle)));
    s.on('FSETSTAT', (id: number, h: Buffer, attrs: Attributes) => this.#onHandle(id, h, (handle) => this.#fsetstat(id, handle, attrs)));
    s.on('STAT', (id: number, path: string) => this.#run(id, at(path), () => this.#stat(id, path)));
    s.on('LSTAT', (id: number, path: string) => this.#run(id, at(path), () => this.#stat(id, path)));
    s.on('SETSTAT', (id: number, path: string, attrs: Attributes) => this.#run(id, at(path), () => this.#setstat(id, path, attrs)));
    s.on('OPENDIR', (id: number, path: string) => this.#run(id, at(path), () => this.#handles.opening(() => this.#opendir(id, path))));
    s.on('READDIR', (id: number, h: Buffer) => this.#onHandle(id, h, (handle) => this.#readdir(id, handle)));
    s.on('REALPATH', (id: number, path: string) => this.#run(id, NO_ORDER, () => this.#realpath(id, path)));
    s.on('MKDIR', (id: number, path: string) => this.#run(id, tree(path), () => this.#mkdir(id, path)));
    s.on('RMDIR', (id: number, path: string) => this.#run(id, tree(path), () => this.#rmdir(id, path)));
    s.on('REMOVE', (id: number, path: string) => this.#run(id, tree(path), () => this.#remove(id, path)));
    s.on('RENAME', (id: number, from: string, to: string) => this.#run(id, tree(from, to), () => this.#rename(id, from, to, false)));
    s.on('READLINK', (id: number) => this.#unsupported(id, 'symbolic links are not supported on S3 storage'));
    s.on('SYMLINK', (id: number) => this.#unsupported(id, 'symbolic links are not supported on S3 storage'));
    s.on('EXTENDED', (id: number, name: string, data: Buffer | undefined) => this.#run(id, this.#extendedKey(name, data), () => this.#extended(id, name, data)));
  }

  /** The normalised path for ordering; none for a path the request itself will refuse. */
  #orderPaths(raw: string): string[] {
    try {
      return [this.#path(raw)];
    } catch {
      return [];
    }
  }

  /** A handle request is ordered with every other request on the handle's path. */
  #handleKey(raw: Buffer): OrderKey {
    const handle = this.#handles.get(raw);
    return handle ? { paths: [handle.path] } : NO_ORDER;
  }

  #extendedKey(name: string, data: Buffer | undefined): OrderKey {
    if (name !== 'posix-rename@openssh.com') return NO_ORDER;
    try {
      return { paths: readStrings(data, 2).flatMap((p) => this.#orderPaths(p)), tree: true };
    } catch {
      return NO_ORDER;
    }
  }

  // ---- plumbing -----------------------------------------------------------

  /**
   * Runs a request handler once earlier requests on the same file are done
   * (see request-order.ts); any error becomes a status reply, never a crash.
   */
  #run(id: number, key: OrderKey, work: () => Promise<void>): void {
    this.#inProgress++;
    this.#order
      // A request still waiting when the session ends is dropped: it would open handles nobody closes.
      .run(key, () => (this.#closed ? Promise.resolve() : work()))
      .catch((err: unknown) => this.#fail(id, err))
      .finally(() => this.#inProgress--);
  }

  /**
   * Queues work behind earlier requests on the same handle and on its path, so
   * replies keep request order. The handle is looked up when the request arrives.
   */
  #onHandle(id: number, raw: Buffer, work: (handle: Handle) => Promise<void>): void {
    const key = this.#handleKey(raw);
    if (key.paths.length === 0) return this.#status(id, STATUS.FAILURE, 'invalid handle');
    this.#run(id, key, () => this.#onQueue(raw, work));
  }

  #onQueue(raw: Buffer, work: (handle: Handle) => Promise<void>): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const queued = this.#handles.enqueue(raw, (handle) => work(handle).then(resolve, reject));
      // A CLOSE received earlier on this path ran first: the handle is gone, as it would be for OpenSSH.
      if (!queued) reject(new StorageError('invalid handle'));
    });
  }

  #fail(id: number, err: unknown): void {
    const st = toStatus(err);
    if (st.internal) this.#log.error({ err }, 'request failed');
    else this.#log.debug({ err: (err as Error)?.message }, 'request refused');
    this.#status(id, st.code, st.message);
  }

  #status(id: number, code: number, message?: string): void {
    if (this.#closed) return;
    this.#sftp.status(id, code, message);
  }

  #unsupported(id: number, message: string): void {
    this.#status(id, STATUS.OP_UNSUPPORTED, message);
  }

  /** Permissions are per path: a virtual folder has its own (session/core.ts). */
  #require(permission: Permission, path: string): void {
    requirePermission(this.#user, permission, path);
  }

  #may(permission: Permission, path: string): boolean {
    try {
      this.#require(permission, path);
      return true;
    } catch {
      return false;
    }
  }

  #path(raw: string): string {
    // ssh2 checks only a packet's last field: a path whose length runs past the packet arrives undefined.
    if (typeof raw !== 'string') throw new InvalidRequestError('malformed request: bad path');
    return resolvePath(raw);
  }

  #statOrUndefined(path: string): Promise<FileInfo | undefined> {
    return statOrUndefined(this.#storage, path);
  }

  // ---- files ---------------------------------------------------------------

  async #open(id: number, rawPath: string, pflags: number, attrs: Attributes): Promise<void> {
    const path = this.#path(rawPath);
    const flags = decodeOpenFlags(pflags);
    if (flags.read && flags.write && !flags.create && !flags.truncate) {
      throw new UnsupportedError('changing a file in place (open for reading and writing) is not supported on S3 storage; upload the whole file again');
    }
    if (flags.write) return this.#openWrite(id, path, flags, attrs);
    if (!flags.read) throw new InvalidRequestError('open needs READ or WRITE');
    this.#require('download', path);
    // No stat first: the open itself finds a directory or nothing, and learns what FSTAT reports.
    const reader = await this.#storage.openRead(path);
    const info: FileInfo = { name: basename(path), isDirectory: false, size: reader.size, mtime: reader.mtime };
    this.#sftp.handle(id, this.#handles.add({ kind: 'read', path, info, reader, sent: 0, failed: false, opened: this.#clock() }));
  }

  async #openWrite(
    id: number,
    path: string,
    flags: ReturnType<typeof decodeOpenFlags>,
    attrs: Attributes,
  ): Promise<void> {
    this.#require('upload', path);
    if (path === '/') throw new WrongTypeError('/ is a directory');
    // Storage looks at the target once (a directory is refused there) and hands us what it found.
    let existing: FileInfo | undefined;
    const check = (found: FileInfo | undefined): void => {
      existing = found;
      if (found && flags.exclusive) throw new AlreadyExistsError(`${path} already exists`);
      if (found) this.#require('overwrite', path);
      if (!found && !flags.create) throw new NotFoundError(`${path}: no such file`);
    };
    // OpenSSH answers NO_SUCH_FILE for a file in a missing directory; creating
    // the directory implicitly would also bypass the create_dirs permission.
    const createOrReplace = flags.create && flags.truncate && !flags.exclusive && !flags.append && this.#may('overwrite', path);
    const writer = await this.#storage.openWrite(path, { exclusive: flags.exclusive, requireParent: true, check, createOrReplace });
    const handle: WriteHandle = {
      kind: 'write',
      path,
      writer,
      stored: flags.truncate ? undefined : existing,
      readable: flags.read,
      written: false,
      failed: false,
      opened: this.#clock(),
    };
    // OPEN's attributes are for creating the file; OpenSSH ignores times there. Mode 2 keeps them
    // (saves a copy when FSETSTAT repeats them); mode 0 waits for the FSETSTAT it may refuse whole.
    if (attrs.mtime !== undefined && this.#setstatMode === 2) writer.setMtime(new Date(attrs.mtime * 1000));
    if (flags.append && !flags.truncate && existing && existing.size > 0) handle.writer = await this.#appendTo(writer, existing.size);
    this.#sftp.handle(id, this.#handles.add(handle));
  }

  /**
   * APPEND on an existing file (OpenSSH's reput opens that way): the upload
   * continues the stored file from its end, and, as with O_APPEND in
   * sftp-server, every WRITE lands at the current end whatever its offset
   * (WRITEs on one handle run in request order).
   */
  async #appendTo(writer: FileWriter, size: number): Promise<FileWriter> {
    try {
      if (!writer.continueExisting) {
        throw new UnsupportedError('appending to a file is not supported on this storage; upload the whole file again');
      }
      await writer.continueExisting(size);
    } catch (err) {
      await writer.abort().catch(() => undefined);
      throw err;
    }
    return {
      get bytesReceived() {
        return writer.bytesReceived;
      },
      write: (_offset, data) => writer.write(writer.bytesReceived, data),
      setMtime: (mtime) => writer.setMtime(mtime),
      commit: () => writer.commit(),
      abort: () => writer.abort(),
    };
  }

  async #read(id: number, handle: Handle, offset: number, length: number): Promise<void> {
    if (handle.kind === 'write' && handle.readable) return this.#readUpload(id, handle, offset);
    if (handle.kind !== 'read') throw new InvalidRequestError('handle is not open for reading');
    let data: Buffer;
    try {
      data = await handle.reader.read(offset, Math.min(length, MAX_READ_BYTES));
    } catch (err) {
      handle.failed = true;
      throw err;
    }
    if (data.length === 0) this.#status(id, STATUS.EOF);
    else if (!this.#closed) {
      this.#sftp.data(id, data);
      handle.sent += data.length;
    }
  }

  /**
   * READ on a file opened READ|WRITE and being uploaded (rsync's temporary
   * file, sshfs). Nothing of it is stored yet, so only "end of file" past the
   * bytes received can be answered truthfully; anything else is refused.
   */
  async #readUpload(id: number, handle: WriteHandle, offset: number): Promise<void> {
    // Opened without TRUNC, the file still holds its old bytes: no EOF answer would be true.
    if (!handle.stored && offset >= handle.writer.bytesReceived) return this.#status(id, STATUS.EOF);
    throw new UnsupportedError('reading back a file that is still being uploaded is not supported on S3 storage; close it first');
  }

  async #write(id: number, handle: Handle, offset: number, data: WriteData): Promise<void> {
    if (handle.kind !== 'write') throw new InvalidRequestError('handle is not open for writing');
    try {
      if (handle.stored && offset > 0 && handle.writer.bytesReceived === 0) {
        // A resume (reput, lftp put -c): the writer continues the existing file if it can, and refuses any offset but its size.
        if (!handle.writer.continueExisting) {
          throw new UnsupportedError('resuming an upload into an existing file is not supported on this storage; upload it again from the start');
        }
        await handle.writer.continueExisting(offset);
      }
      if (!Array.isArray(data)) await handle.writer.write(offset, data);
      else await writePieces(handle.writer, offset, data);
      handle.written = true;
    } catch (err) {
      // A refused or failed WRITE must not be followed by a CLOSE that stores a damaged file.
      handle.failed = true;
      throw err;
    }
    this.#status(id, STATUS.OK);
  }

  async #close(id: number, raw: Buffer): Promise<void> {
    const handle = await this.#handles.remove(raw);
    if (!handle) throw new InvalidRequestError('invalid handle');
    if (this.#closed) return this.#discard(handle); // the session ended while earlier requests ran
    if (handle.kind === 'write') {
      this.#committing.add(handle);
      try {
        await this.#finishUpload(handle);
      } finally {
        this.#committing.delete(handle);
      }
    } else if (handle.kind === 'read') {
      this.#reportDownload(handle, !handle.failed);
      await handle.reader.close();
    }
    this.#status(id, STATUS.OK);
  }

  #reportUpload(handle: WriteHandle, ok: boolean): void {
    const t = { direction: 'upload', path: handle.path, bytes: handle.writer.bytesReceived, started: handle.opened, ok } as const;
    reportTransfer(this.#events, this.#user, this.#clock, t);
  }

  #reportDownload(handle: ReadHandle, ok: boolean): void {
    const t = { direction: 'download', path: handle.path, bytes: handle.sent, started: handle.opened, ok } as const;
    reportTransfer(this.#events, this.#user, this.#clock, t);
  }

  /**
   * CLOSE of an upload. An existing file opened without TRUNC and never
   * written stays as it was (POSIX semantics); an upload with a failed WRITE
   * is discarded rather than stored incomplete.
   */
  async #finishUpload(handle: WriteHandle): Promise<void> {
    if (handle.failed) {
      await handle.writer.abort();
      this.#reportUpload(handle, false);
      throw new StorageError('the upload was discarded because a write failed; nothing was stored');
    }
    if (handle.stored && !handle.written) return handle.writer.abort();
    if (this.#wouldDropTail(handle)) {
      await handle.writer.abort();
      this.#reportUpload(handle, false);
      throw new UnsupportedError(
        `${handle.path}: overwriting the start of a file without truncating it is not supported on S3 storage (a disk would keep its old ${handle.stored!.size - handle.writer.bytesReceived} last bytes); the file was left as it was: open it with truncate to replace it`,
      );
    }
    return this.#commit(handle);
  }

  /**
   * Opened without TRUNC and written from its start with fewer bytes than it held: on a disk the
   * rest of the old file stays behind the new bytes; S3 cannot keep part of an object under a new
   * one, and storing only the new bytes would cut the file without a word.
   */
  #wouldDropTail(handle: WriteHandle): boolean {
    const stored = handle.stored;
    return stored !== undefined && !stored.uploading && handle.writer.bytesReceived < stored.size;
  }

  async #commit(handle: WriteHandle): Promise<void> {
    try {
      await handle.writer.commit();
      this.#reportUpload(handle, true);
    } catch (err) {
      this.#reportUpload(handle, false);
      await handle.writer.abort().catch(() => undefined);
      throw err;
    }
  }

  async #discard(handle: Handle): Promise<void> {
    try {
      if (handle.kind === 'write') {
        await handle.writer.abort();
        this.#reportUpload(handle, false);
      } else if (handle.kind === 'read') {
        this.#reportDownload(handle, false);
        await handle.reader.close();
      } else {
        await handle.pages.return?.();
      }
    } catch (err) {
      this.#log.warn({ err, path: handle.path }, 'cleanup of an open handle failed');
    }
  }

  // ---- attributes ------------------------------------------------------------

  async #stat(id: number, rawPath: string): Promise<void> {
    const info = await this.#storage.stat(this.#path(rawPath));
    if (!this.#closed) this.#sftp.attrs(id, toAttrs(info));
  }

  async #fstat(id: number, handle: Handle): Promise<void> {
    let info: FileInfo;
    if (handle.kind === 'read') info = handle.info;
    else if (handle.kind === 'write') {
      // Opened without TRUNC and not written to yet, the file is still the stored one, as on a disk
      // (psftp's reput reads the size to continue from this way): what the open found, whose time
      // is S3's. A STAT now would report the upload the open started.
      const unchanged = handle.stored && !handle.written && handle.writer.bytesReceived === 0 ? handle.stored : undefined;
      info = unchanged ?? { name: basename(handle.path), isDirectory: false, size: handle.writer.bytesReceived, mtime: this.#clock(), uploading: true };
    } else info = await this.#storage.stat(handle.path);
    if (!this.#closed) this.#sftp.attrs(id, toAttrs(info));
  }

  /**
   * setstatMode 2 (the default) keeps modification times (object metadata)
   * and ignores what S3 cannot keep (permissions, owner); 0 keeps times too
   * but refuses a request that changes permissions or owner, whole, so a
   * client that mixes them (`put -p`) gets an error and nothing is changed;
   * 1 ignores every change and stores nothing.
   */
  #checkSetstat(attrs: Attributes, currentSize?: number): { mtime?: Date } {
    // Even mode 1 refuses a size change: ignoring a truncate would be a silent wrong result.
    // A size equal to the current one is no change (some clients send it with every setstat).
    const changesSize = attrs.size !== undefined && attrs.size !== currentSize;
    if (changesSize) throw new UnsupportedError('changing a file size (truncate) is not supported on S3 storage');
    if (this.#setstatMode === 1) return {};
    const changesMode = attrs.mode !== undefined || attrs.uid !== undefined || attrs.gid !== undefined;
    if (this.#setstatMode === 0 && changesMode) {
      throw new UnsupportedError(
        'changing permissions or owner is not supported on S3 storage (server setstatMode 0 refuses it; nothing was changed)',
      );
    }
    return attrs.mtime !== undefined ? { mtime: new Date(attrs.mtime * 1000) } : {};
  }

  async #setstat(id: number, rawPath: string, attrs: Attributes): Promise<void> {
    const path = this.#path(rawPath);
    // A size is checked against the file's, and a request that sets no time is answered by the
    // lookup alone (NO_SUCH_FILE for a missing path); a time is left to storage's own lookup.
    const lookup = attrs.size !== undefined || attrs.mtime === undefined || this.#setstatMode === 1;
    const current = lookup ? await this.#storage.stat(path) : undefined;
    const { mtime } = this.#checkSetstat(attrs, current?.size);
    if (mtime) await this.#setTime(path, mtime);
    this.#status(id, STATUS.OK);
  }

  /**
   * Sets a file's time by path. A directory (S3 stores no time for one) and another session's
   * upload in progress (it stores its own) are left as they are, and the SETSTAT still succeeds;
   * storage's check tells which it found.
   */
  async #setTime(path: string, mtime: Date): Promise<void> {
    // sshfs sets times by path while its own upload is open: keep them with that upload.
    const upload = this.#handles.uploadOf(path);
    if (upload) return upload.writer.setMtime(mtime);
    let set = false;
    await this.#storage.setMtime(path, mtime, {
      check: (found) => {
        if (found.isDirectory || found.uploading) return false;
        this.#require('overwrite', path);
        return (set = true);
      },
    });
    if (set) this.#events.operation?.({ user: this.#user.username, op: 'setstat', path, ok: true });
  }

  async #fsetstat(id: number, handle: Handle, attrs: Attributes): Promise<void> {
    const size = handle.kind === 'write' ? handle.writer.bytesReceived : handle.kind === 'read' ? handle.info.size : 0;
    const { mtime } = this.#checkSetstat(attrs, size);
    if (mtime && handle.kind === 'write') handle.writer.setMtime(mtime);
    else if (mtime && handle.kind === 'read') {
      this.#require('overwrite', handle.path);
      await this.#storage.setMtime(handle.path, mtime);
    }
    this.#status(id, STATUS.OK);
  }

  // ---- directories -------------------------------------------------------------

  async #opendir(id: number, rawPath: string): Promise<void> {
    const path = this.#path(rawPath);
    this.#require('list', path);
    // No stat first: the first page answers "exists and is a directory" (or fails with why not),
    // and the first READDIR is answered from it.
    const pages = this.#storage.list(path)[Symbol.asyncIterator]();
    const handle: Handle = { kind: 'dir', path, pages, pending: [], done: false };
    const first = await pages.next();
    if (first.done) handle.done = true;
    else handle.pending.push(...first.value);
    this.#sftp.handle(id, this.#handles.add(handle));
  }

  async #readdir(id: number, handle: Handle): Promise<void> {
    if (handle.kind !== 'dir') throw new InvalidRequestError('handle is not an open directory');
    while (handle.pending.length === 0 && !handle.done) {
      const page = await handle.pages.next();
      if (page.done) handle.done = true;
      else handle.pending.push(...page.value);
    }
    if (handle.pending.length === 0) return this.#status(id, STATUS.EOF);
    const batch = handle.pending.splice(0, NAMES_PER_REPLY);
    const now = this.#clock();
    if (!this.#closed) this.#sftp.name(id, batch.map((info) => toEntry(info, now)));
  }

  async #realpath(id: number, rawPath: string): Promise<void> {
    const path = this.#path(rawPath);
    const dir: FileInfo = { name: path, isDirectory: true, size: 0, mtime: this.#clock() };
    if (!this.#closed) this.#sftp.name(id, [{ filename: path, longname: path, attrs: toAttrs(dir) }]);
  }

  async #mkdir(id: number, rawPath: string): Promise<void> {
    const path = this.#path(rawPath);
    this.#require('create_dirs', path);
    await this.#audited('mkdir', path, undefined, (p) => this.#storage.mkdir(p));
    this.#status(id, STATUS.OK);
  }

  async #rmdir(id: number, rawPath: string): Promise<void> {
    const path = this.#path(rawPath);
    this.#require('delete', path);
    if (path === '/') throw new PermissionDeniedError('the root directory cannot be removed');
    await this.#audited('rmdir', path, undefined, (p) => this.#storage.rmdir(p).catch(notADirectory));
    this.#status(id, STATUS.OK);
  }

  async #remove(id: number, rawPath: string): Promise<void> {
    const path = this.#path(rawPath);
    this.#require('delete', path);
    await this.#audited('remove', path, undefined, (p) => this.#storage.remove(p));
    this.#status(id, STATUS.OK);
  }

  async #rename(id: number, rawFrom: string, rawTo: string, overwrite: boolean): Promise<void> {
    const from = this.#path(rawFrom);
    const to = this.#path(rawTo);
    // Both ends: a move between a virtual folder and the home needs rename in each.
    this.#require('rename', from);
    this.#require('rename', to);
    if (from === '/' || to === '/') throw new PermissionDeniedError('the root directory cannot be renamed');
    if (to === from) return this.#status(id, STATUS.OK);
    // posix-rename (what OpenSSH's `rename` sends) needs `overwrite` only when it replaces
    // something: storage says whether it does, from its own lookup of the target.
    const check = (found: FileInfo | undefined): void => {
      if (found) this.#require('overwrite', to);
    };
    if (to.startsWith(from + '/')) throw new InvalidRequestError('cannot move a directory into itself');
    await this.#audited('rename', from, to, () => this.#storage.rename(from, to, overwrite ? { overwrite, check } : { overwrite }));
    this.#status(id, STATUS.OK);
  }

  #audited(op: TreeOperation, path: string, target: string | undefined, work: (path: string) => Promise<void>): Promise<void> {
    return audited(this.#events, this.#user, { op, path, ...(target === undefined ? {} : { target }) }, () => work(path));
  }

  // ---- extensions ----------------------------------------------------------------

  #extensions: Record<string, ExtendedHandler> = {
    'posix-rename@openssh.com': async (id, data) => {
      const [from, to] = readStrings(data, 2) as [string, string];
      await this.#rename(id, from, to, true);
    },
  };

  async #extended(id: number, name: string, data: Buffer | undefined): Promise<void> {
    const handler = this.#extensions[name];
    if (!handler) return this.#unsupported(id, `extension ${JSON.stringify(name.slice(0, 64))} is not supported`);
    await handler(id, data);
  }
}

/**
 * rmdir of a file: OpenSSH's sftp-server passes on rmdir(2)'s ENOTDIR, which
 * SFTP v3 reports as NO_SUCH_FILE; answer the same, with the cause in the message.
 */
function notADirectory(err: unknown): never {
  if (err instanceof WrongTypeError) throw new NotFoundError(err.message, { cause: err });
  throw err;
}

/**
 * A WRITE that arrived in pieces (write-requests.ts), passed on piece by piece, each after the
 * one before it was taken: no piece is copied to join them.
 */
async function writePieces(writer: FileWriter, offset: number, pieces: Buffer[]): Promise<void> {
  let at = offset;
  for (const piece of pieces) {
    await writer.write(at, piece);
    at += piece.length;
  }
}

/** Reads `count` SSH strings (uint32 length + UTF-8 bytes) from an extension payload. */
function readStrings(data: Buffer | undefined, count: number): string[] {
  const out: string[] = [];
  let p = 0;
  for (let i = 0; i < count; i++) {
    if (!data || p + 4 > data.length) throw new InvalidRequestError('malformed extension request');
    const len = data.readUInt32BE(p);
    p += 4;
    if (p + len > data.length) throw new InvalidRequestError('malformed extension request');
    out.push(data.toString('utf8', p, p + len));
    p += len;
  }
  return out;
}
