/**
 * The one storage interface the protocol layers (SFTP, SCP) talk to.
 *
 * Paths are user-visible absolute paths ("/", "/dir/file.txt"), already
 * normalised by storage/paths.ts: they never contain "." or ".." segments,
 * never end in "/" (except the root itself) and never escape the user's root.
 * An implementation maps them into its own namespace (S3: bucket + keyPrefix).
 * Errors are the classes of storage/errors.ts.
 */

/** What STAT, LSTAT, FSTAT and READDIR report about one entry. */
export interface FileInfo {
  /** Last path segment; "/" for the root. */
  name: string;
  isDirectory: boolean;
  /** Bytes; 0 for directories. For an upload in progress: bytes received so far. */
  size: number;
  /** Modification time: stored mtime metadata when present, else the store's own. */
  mtime: Date;
  /** True while the file is still being uploaded through this server. */
  uploading?: boolean;
}

/** A file opened for reading. Reads at any offset are allowed. */
export interface FileReader {
  readonly size: number;
  /** The file's modification time as stat reports it, learnt while opening (FSTAT needs no request of its own). */
  readonly mtime: Date;
  /** Up to `length` bytes at `offset`; an empty buffer means end of file. */
  read(offset: number, length: number): Promise<Buffer>;
  close(): Promise<void>;
}

/**
 * A file being written. Nothing is visible in the store until commit()
 * resolves; abort() (or a failed commit) leaves nothing behind.
 */
export interface FileWriter {
  /** Bytes accepted so far (contiguous from 0). */
  readonly bytesReceived: number;
  /**
   * Accepts data at an offset. Resolves once the data is buffered; it waits
   * (backpressure) while the store is behind. Out-of-order offsets within a
   * bounded window are accepted; an offset behind data already sent fails.
   */
  write(offset: number, data: Buffer): Promise<void>;
  /** Records a modification time to store with the object. */
  setMtime(mtime: Date): void;
  /**
   * Continues the existing file instead of replacing it (SFTP resume: OPEN
   * without TRUNC, first WRITE at the file's size). Called before any write;
   * `size` must be the file's current size. The file being written then
   * starts with the existing bytes (the store copies them, nothing is sent
   * again) and further writes go on from `size`. The existing file stays as
   * it is until commit(); abort() leaves it untouched. Throws
   * UnsupportedError when the store cannot (or is configured not to) resume,
   * or when `size` is not the file's size. Optional: absent means never.
   */
  continueExisting?(size: number): Promise<void>;
  /** Makes the object visible. Fails (and aborts) if any part failed. */
  commit(): Promise<void>;
  /** Discards everything written; safe to call more than once. */
  abort(): Promise<void>;
}

export interface OpenWriteOptions {
  /** Fail with AlreadyExistsError if the target exists (SFTP EXCL). */
  exclusive?: boolean;
  /**
   * Fail with NotFoundError when the parent directory does not exist, as a
   * POSIX file system does, instead of creating it implicitly (S3 keys do).
   */
  requireParent?: boolean;
  /**
   * Called once the store has looked at the path and before anything is
   * written, with the file the path holds (undefined: none; a directory is
   * refused before). An error it throws refuses the open. It lets the caller
   * apply its rules on replacing or creating (permissions, O_CREAT) without a
   * lookup of its own. A file still being uploaded through this server counts
   * as existing, with `uploading` set.
   */
  check?(existing: FileInfo | undefined): void;
  /**
   * The open creates the file or replaces it whole (create and truncate, neither exclusive nor
   * append), and the caller may replace an existing file there. Storage may then take a name that a
   * directory listing it fetched in the last seconds does not show as free without asking again
   * (docs/adr/0019): the upload ends the same either way.
   */
  createOrReplace?: boolean;
}

export interface RenameOptions {
  /** Replace an existing target file (posix-rename@openssh.com). */
  overwrite?: boolean;
  /**
   * Called, once the source is found, with what the target holds now (a file, a directory, or
   * undefined for nothing) before anything is changed; an error it throws refuses the rename. As
   * OpenWriteOptions.check: the caller's rules (overwrite permission) without a lookup of its own.
   */
  check?(existing: FileInfo | undefined): void;
}

export interface SetMtimeOptions {
  /**
   * Called once the store has looked at the path, with what it holds (a file, a directory, or a
   * file another session is still uploading) and before anything is changed. Returning false leaves
   * it as it is; an error it throws refuses. Without it a directory is refused (UnsupportedError).
   * As OpenWriteOptions.check: the caller's rules (SETSTAT ignores times on directories and on
   * uploads in progress; overwrite permission) without a lookup of its own.
   */
  check?(found: { isDirectory: boolean; uploading?: boolean }): boolean;
}

/** The content hashes the checksum commands (md5sum, sha1sum, sha256sum) offer. */
export type HashAlgorithm = 'md5' | 'sha1' | 'sha256';

export interface Storage {
  stat(path: string): Promise<FileInfo>;
  /** Streams a directory's entries page by page; never the whole directory at once. */
  list(path: string): AsyncIterable<FileInfo[]>;
  openRead(path: string): Promise<FileReader>;
  openWrite(path: string, options?: OpenWriteOptions): Promise<FileWriter>;
  mkdir(path: string): Promise<void>;
  /** Removes a file (not a directory). */
  remove(path: string): Promise<void>;
  /** Removes an empty directory. */
  rmdir(path: string): Promise<void>;
  rename(from: string, to: string, options?: RenameOptions): Promise<void>;
  /** Changes the stored modification time of an existing file. */
  setMtime(path: string, mtime: Date, options?: SetMtimeOptions): Promise<void>;
  /**
   * Lower-case hex digest of a file's content. Hashes recorded when the file
   * was uploaded through this server are returned as they are (one metadata
   * request); any other file is read once to compute it. NotFoundError for a
   * missing path, WrongTypeError for a directory.
   */
  checksum(path: string, algorithm: HashAlgorithm): Promise<string>;
  /**
   * Where `path` is kept: equal strings, from any two storages, name the same object (virtual
   * folders can reach one bucket and prefix under two paths). Absent: cannot tell.
   */
  locate?(path: string): string;
}
