/**
 * Fair S3 access: a cap on the storage operations one session, and one user, may have in flight.
 *
 * Every session of every user shares one HTTP socket pool per S3 client. Without a cap one
 * session pipelining thousands of OPENs (a HEAD each) fills the pool and the agent's queue, and
 * everybody else's requests wait behind it. With it, the flood waits in its own session's queue
 * (in arrival order) and other sessions still find free sockets: the pool is sized well above one
 * session's cap (client.ts).
 *
 * The cap counts storage operations (stat, list page, ranged read, rename...), each of which is
 * one or a few S3 requests. Upload parts are not counted here: they are bounded already by
 * s3.upload.concurrency per open file and by the handle cap.
 */
import type { FileReader, FileWriter, HashAlgorithm, OpenWriteOptions, RenameOptions, SetMtimeOptions, Storage, FileInfo } from '../storage.ts';

/** A counting semaphore with a FIFO queue. */
export class Semaphore {
  readonly #limit: number;
  #active = 0;
  readonly #queue: (() => void)[] = [];

  constructor(limit: number) {
    this.#limit = Math.max(1, limit);
  }

  get active(): number {
    return this.#active;
  }

  get waiting(): number {
    return this.#queue.length;
  }

  /** True when acquire() would wait. */
  get full(): boolean {
    return this.#active >= this.#limit;
  }

  acquire(): Promise<void> {
    if (this.#active < this.#limit) {
      this.#active++;
      return Promise.resolve();
    }
    return new Promise<void>((resolve) => this.#queue.push(resolve));
  }

  release(): void {
    const next = this.#queue.shift();
    if (next) next(); // the slot passes straight on
    else this.#active--;
  }
}

/** Which cap made an operation wait, for the metric. */
export type LimitScope = 'session' | 'user';

export interface RequestLimiterOptions {
  /** Storage operations one session may have in flight. */
  perSession: number;
  /** Storage operations all sessions of one user may have in flight (on this replica). */
  perUser: number;
  /** Told each time an operation has to wait for a cap. */
  onWait?(scope: LimitScope): void;
}

/** The per-user semaphores of one server, and a per-session gate for each new session. */
export class RequestLimiter {
  readonly #o: RequestLimiterOptions;
  readonly #users = new Map<string, Semaphore>();

  constructor(options: RequestLimiterOptions) {
    this.#o = options;
  }

  /** `storage` for one new session of `username`, with both caps applied. */
  forSession(username: string, storage: Storage): Storage {
    // One entry per user name ever seen on this replica: bounded by the user table.
    let user = this.#users.get(username);
    if (!user) this.#users.set(username, (user = new Semaphore(this.#o.perUser)));
    const session = new Semaphore(this.#o.perSession);
    const gate: Gate = async <T>(work: () => Promise<T>): Promise<T> => {
      if (session.full) this.#o.onWait?.('session');
      await session.acquire();
      try {
        if (user.full) this.#o.onWait?.('user');
        await user.acquire();
        try {
          return await work();
        } finally {
          user.release();
        }
      } finally {
        session.release();
      }
    };
    return limitStorage(storage, gate);
  }
}

type Gate = <T>(work: () => Promise<T>) => Promise<T>;

/** Wraps every request-making operation of `storage` (and of its readers and listings) in `gate`. */
export function limitStorage(storage: Storage, gate: Gate): Storage {
  return {
    stat: (path: string): Promise<FileInfo> => gate(() => storage.stat(path)),
    list: (path: string): AsyncIterable<FileInfo[]> => limitPages(storage.list(path), gate),
    openRead: async (path: string): Promise<FileReader> => limitReader(await gate(() => storage.openRead(path)), gate),
    // The writer's parts are bounded by the upload pipeline; opening may HEAD or create an upload.
    openWrite: (path: string, options?: OpenWriteOptions): Promise<FileWriter> => gate(() => storage.openWrite(path, options)),
    mkdir: (path: string) => gate(() => storage.mkdir(path)),
    remove: (path: string) => gate(() => storage.remove(path)),
    rmdir: (path: string) => gate(() => storage.rmdir(path)),
    rename: (from: string, to: string, options?: RenameOptions) => gate(() => storage.rename(from, to, options)),
    setMtime: (path: string, mtime: Date, options?: SetMtimeOptions) => gate(() => storage.setMtime(path, mtime, options)),
    checksum: (path: string, algorithm: HashAlgorithm) => gate(() => storage.checksum(path, algorithm)),
  };
}

function limitReader(reader: FileReader, gate: Gate): FileReader {
  return {
    get size() {
      return reader.size;
    },
    get mtime() {
      return reader.mtime;
    },
    read: (offset, length) => gate(() => reader.read(offset, length)),
    close: () => reader.close(),
  };
}

function limitPages(pages: AsyncIterable<FileInfo[]>, gate: Gate): AsyncIterable<FileInfo[]> {
  return {
    [Symbol.asyncIterator]() {
      const it = pages[Symbol.asyncIterator]();
      return {
        next: () => gate(() => it.next()),
        return: async (value?: unknown) => (it.return ? it.return(value) : { done: true as const, value: undefined }),
      };
    },
  };
}
