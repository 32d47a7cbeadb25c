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
}

export interface RenameOptions {
  /** Replace an existing target file (posix-rename@openssh.com). */
  overwrite?: boolean;
}

/** Optional abilities; callers check these instead of catching errors. */
export interface StorageCapabilities {
  /** Modification times set by clients are kept (SETSTAT mtime). */
  storesMtime: boolean;
  /** Non-empty directories can be renamed. */
  renamesDirectories: boolean;
}

export interface Storage {
  readonly capabilities: StorageCapabilities;
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
  setMtime(path: string, mtime: Date): Promise<void>;
}
