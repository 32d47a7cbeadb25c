/**
 * Virtual folders: one tree made of several storages. The home storage holds the tree; each mount
 * puts another storage (its own bucket, prefix and identity) at a path of it, where the mount's
 * root "/" appears. Paths inside a mount are translated ("/inbound/a.csv" → "/a.csv") before they
 * reach the mount's storage, so each storage keeps its own prefix check (storage/paths.ts) and no
 * path can leave the mount it is in.
 *
 * Mount points and their parents are directories whatever the home holds there: listing a parent
 * shows the mount points, and a mount point hides a home entry of the same name (a file or a
 * directory), as a mount does on a disk. A mount point cannot be removed or renamed. A rename
 * between two storages moves a file by streaming a copy (bounded memory) and removing the original;
 * a non-empty directory cannot move between them.
 */
import type { Logger } from 'pino';
import { AlreadyExistsError, NotFoundError, PermissionDeniedError, UnsupportedError, WrongTypeError } from './errors.ts';
import { basename, dirname, isWithin } from './paths.ts';
import type { FileInfo, FileReader, FileWriter, HashAlgorithm, OpenWriteOptions, RenameOptions, SetMtimeOptions, Storage } from './storage.ts';

/** One storage mounted at a path of the tree. */
export interface Mount {
  /** Absolute, normalised, not "/"; never inside another mount. */
  path: string;
  storage: Storage;
}

export interface MountedStorageOptions {
  home: Storage;
  mounts: readonly Mount[];
  /**
   * false: a listing of a mount point's parent shows the mount points only, not the home's entries
   * (a user without "list" in the home still finds their folders). Default true.
   */
  homeListable?: boolean;
  /** mtime reported for a mount point's parent that the home does not hold. */
  clock?: () => Date;
  log?: Logger;
}

/** Bytes read and written at once when a file moves between storages; one at a time, so memory stays flat. */
const MOVE_CHUNK = 1024 * 1024;

/** Where a path goes: the storage that holds it and the path in that storage's own terms. */
interface Route {
  storage: Storage;
  inner: string;
  mount?: Mount;
}

/** A Storage that routes each path to the home or to the mount it lies in. */
export class MountedStorage implements Storage {
  readonly #home: Storage;
  readonly #mounts: readonly Mount[];
  readonly #clock: () => Date;
  readonly #log: Logger | undefined;
  readonly #homeListable: boolean;

  constructor(options: MountedStorageOptions) {
    for (const m of options.mounts) {
      if (!m.path.startsWith('/') || m.path === '/' || m.path.endsWith('/')) throw new Error(`mount path must be absolute and not "/": ${m.path}`);
      const clash = options.mounts.find((o) => o !== m && isWithin(m.path, o.path));
      if (clash) throw new Error(`mounts ${m.path} and ${clash.path} overlap; mounts cannot be nested`);
    }
    this.#home = options.home;
    this.#mounts = options.mounts;
    this.#clock = options.clock ?? (() => new Date());
    this.#log = options.log;
    this.#homeListable = options.homeListable ?? true;
  }

  async stat(path: string): Promise<FileInfo> {
    const mount = this.#mountAt(path);
    if (mount) return { ...(await mount.storage.stat('/')), name: basename(path) };
    if (path !== '/' && this.#childMounts(path).length > 0) return this.#parentInfo(path);
    const r = this.#route(path);
    return r.storage.stat(r.inner);
  }

  async *list(path: string): AsyncGenerator<FileInfo[]> {
    const r = this.#route(path);
    const children = this.#childMounts(path);
    if (children.length === 0) {
      yield* r.storage.list(r.inner);
      return;
    }
    // The mount points (or the next step towards them) first, then the home's entries they do not hide.
    const names = new Set(children.map((c) => c.name));
    yield await Promise.all(children.map((c) => (c.mount ? this.stat(c.mount.path) : this.#parentInfo(c.path))));
    if (!this.#homeListable) return;
    try {
      for await (const page of this.#home.list(path)) {
        const kept = page.filter((e) => !names.has(e.name));
        if (kept.length > 0) yield kept;
      }
    } catch (err) {
      // A parent the home does not hold (or holds as a file) is made of mount points only.
      if (!(err instanceof NotFoundError || err instanceof WrongTypeError)) throw err;
    }
  }

  async openRead(path: string): Promise<FileReader> {
    this.#refuseVirtual(path, () => new WrongTypeError(`${path} is a directory`));
    const r = this.#route(path);
    return r.storage.openRead(r.inner);
  }

  async openWrite(path: string, options?: OpenWriteOptions): Promise<FileWriter> {
    this.#refuseVirtual(path, () => new WrongTypeError(`${path} is a directory`));
    const r = this.#route(path);
    return this.#inVirtualParent(r, path, () => r.storage.openWrite(r.inner, options));
  }

  async mkdir(path: string): Promise<void> {
    this.#refuseVirtual(path, () => new AlreadyExistsError(`${path} already exists`));
    const r = this.#route(path);
    return this.#inVirtualParent(r, path, () => r.storage.mkdir(r.inner));
  }

  async remove(path: string): Promise<void> {
    this.#refuseVirtual(path, () => new PermissionDeniedError(`${path} is a virtual folder (or holds one) and cannot be removed`));
    const r = this.#route(path);
    return r.storage.remove(r.inner);
  }

  async rmdir(path: string): Promise<void> {
    this.#refuseVirtual(path, () => new PermissionDeniedError(`${path} is a virtual folder (or holds one) and cannot be removed`));
    const r = this.#route(path);
    return r.storage.rmdir(r.inner);
  }

  async rename(from: string, to: string, options?: RenameOptions): Promise<void> {
    this.#refuseVirtual(from, () => new PermissionDeniedError(`${from} is a virtual folder (or holds one) and cannot be renamed`));
    this.#refuseVirtual(to, () => new PermissionDeniedError(`${to} is a virtual folder (or holds one); choose another name`));
    const a = this.#route(from);
    const b = this.#route(to);
    if (a.storage === b.storage) return this.#inVirtualParent(b, to, () => a.storage.rename(a.inner, b.inner, options));
    // Two names of one object (two folders on one bucket and prefix, or a folder inside the home's
    // prefix): a rename onto itself, which changes nothing. A copy and a removal would delete it.
    const here = a.storage.locate?.(a.inner);
    if (here !== undefined && here === b.storage.locate?.(b.inner)) return a.storage.rename(a.inner, a.inner, options);
    return this.#inVirtualParent(b, to, () => this.#move(a, b, from, to, options));
  }

  async setMtime(path: string, mtime: Date, options?: SetMtimeOptions): Promise<void> {
    if (this.#isVirtualParent(path)) {
      if (options?.check?.({ isDirectory: true }) === false) return;
      throw new UnsupportedError(`${path}: directories have no stored modification time`);
    }
    const r = this.#route(path);
    return r.storage.setMtime(r.inner, mtime, options);
  }

  async checksum(path: string, algorithm: HashAlgorithm): Promise<string> {
    this.#refuseVirtual(path, () => new WrongTypeError(`${path} is a directory`));
    const r = this.#route(path);
    return r.storage.checksum(r.inner, algorithm);
  }

  // ---- routing ---------------------------------------------------------------------------------

  #route(path: string): Route {
    const mount = this.#mounts.find((m) => isWithin(path, m.path));
    if (!mount) return { storage: this.#home, inner: path };
    return { storage: mount.storage, inner: path === mount.path ? '/' : path.slice(mount.path.length), mount };
  }

  #mountAt(path: string): Mount | undefined {
    return this.#mounts.find((m) => m.path === path);
  }

  /** A strict ancestor of a mount point (not "/"): a directory made by the mounts. */
  #isVirtualParent(path: string): boolean {
    return path !== '/' && this.#childMounts(path).length > 0;
  }

  /**
   * Runs a change that makes `path` in the home. A parent of a mount point is a directory to STAT
   * and READDIR even where the home holds nothing; the home refuses a new name in it (no such
   * directory, as mkdir(2) would), so that parent is made in the home, and the change runs again.
   */
  async #inVirtualParent<T>(r: Route, path: string, change: () => Promise<T>): Promise<T> {
    try {
      return await change();
    } catch (err) {
      const parent = dirname(path);
      if (!(err instanceof NotFoundError) || r.storage !== this.#home || !this.#isVirtualParent(parent)) throw err;
      // "/a/b" → "/a", "/a/b": every directory above a mount point is one of its parents too.
      const parts = parent.split('/').slice(1);
      for (let depth = 1; depth <= parts.length; depth++) {
        await this.#home.mkdir(`/${parts.slice(0, depth).join('/')}`).catch((mkdirErr: unknown) => {
          if (!(mkdirErr instanceof AlreadyExistsError)) throw mkdirErr;
        });
      }
      return change();
    }
  }

  /** Throws `error()` for a mount point or one of its parents (not "/"). */
  #refuseVirtual(path: string, error: () => Error): void {
    if (this.#mountAt(path) || this.#isVirtualParent(path)) throw error();
  }

  /** The entries the mounts add to directory `path`: each mount point, or the next directory towards one. */
  #childMounts(path: string): { name: string; path: string; mount?: Mount }[] {
    const seen = new Map<string, { name: string; path: string; mount?: Mount }>();
    const base = path === '/' ? '' : path;
    for (const m of this.#mounts) {
      if (!m.path.startsWith(`${base}/`)) continue;
      const name = m.path.slice(base.length + 1).split('/')[0] as string;
      const childPath = `${base}/${name}`;
      if (!seen.has(name)) seen.set(name, { name, path: childPath, ...(childPath === m.path ? { mount: m } : {}) });
    }
    return [...seen.values()];
  }

  /** A parent of a mount point: the home's directory when it holds one, else a made-up directory. */
  async #parentInfo(path: string): Promise<FileInfo> {
    try {
      const info = await this.#home.stat(path);
      if (info.isDirectory) return info;
    } catch (err) {
      if (!(err instanceof NotFoundError || err instanceof WrongTypeError)) throw err;
    }
    return { name: basename(path), isDirectory: true, size: 0, mtime: this.#clock() };
  }

  // ---- moving between storages ---------------------------------------------------------------

  /**
   * rename between two storages: a file is copied through openRead/openWrite (one chunk in memory
   * at a time), then the original removed; if that fails, the copy is removed again, so the file
   * is in one place. An empty directory is made anew and the old one removed; a non-empty one is
   * refused, since moving its files one by one could stop halfway across two buckets.
   */
  async #move(a: Route, b: Route, from: string, to: string, options: RenameOptions = {}): Promise<void> {
    const source = await a.storage.stat(a.inner);
    const target = await b.storage.stat(b.inner).catch((err: unknown) => {
      if (err instanceof NotFoundError) return undefined;
      throw err;
    });
    options.check?.(target);
    if (source.isDirectory) return this.#moveDirectory(a, b, from, to, target);
    // As a rename within one storage answers (S3Storage, MemoryStorage).
    if (target?.isDirectory) throw options.overwrite ? new WrongTypeError(`${to} is a directory`) : new AlreadyExistsError(`${to} already exists`);
    if (target && !options.overwrite) throw new AlreadyExistsError(`${to} already exists`);
    await this.#copyFile(a, b, source, !options.overwrite);
    try {
      await a.storage.remove(a.inner);
    } catch (err) {
      await b.storage.remove(b.inner).catch((undoErr: unknown) => {
        this.#log?.warn({ err: undoErr, from, to }, 'could not remove the copy of a file whose move failed');
      });
      throw err;
    }
  }

  async #moveDirectory(a: Route, b: Route, from: string, to: string, target: FileInfo | undefined): Promise<void> {
    for await (const page of a.storage.list(a.inner)) {
      if (page.length > 0) {
        throw new UnsupportedError(
          `${from} is not empty: moving a directory between virtual folders is not supported; move its files one by one`,
        );
      }
    }
    if (target) throw new AlreadyExistsError(`${to} already exists`);
    await b.storage.mkdir(b.inner);
    await a.storage.rmdir(a.inner);
  }

  async #copyFile(a: Route, b: Route, source: FileInfo, exclusive: boolean): Promise<void> {
    const reader = await a.storage.openRead(a.inner);
    try {
      // exclusive: a file created at the target meanwhile is not replaced (S3: If-None-Match).
      const writer = await b.storage.openWrite(b.inner, { exclusive });
      try {
        let offset = 0;
        for (;;) {
          const data = await reader.read(offset, MOVE_CHUNK);
          if (data.length === 0) break;
          await writer.write(offset, data);
          offset += data.length;
        }
        writer.setMtime(source.mtime);
        await writer.commit();
      } catch (err) {
        await writer.abort().catch(() => undefined);
        throw err;
      }
    } finally {
      await reader.close().catch(() => undefined);
    }
  }
}
