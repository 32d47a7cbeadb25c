/**
 * Reading ahead through a directory of small files (docs/adr/0021-reading-ahead-small-files.md).
 *
 * `get dir/*` in OpenSSH's sftp, lftp's mget and the GUI clients' download of a selection fetch
 * files one after another, each STAT, OPEN, READ, CLOSE waiting for the one before. On S3 every
 * OPEN is a GET, so such a batch runs at one S3 round trip per file, however fast the link. When a
 * session opens two neighbouring files of one directory in name order, the files that follow in
 * the directory are likely next: a few of them, small ones only, are fetched with the same first
 * GET an OPEN makes, and an OPEN or STAT of one of them within `ttlMs` uses that answer. The cost
 * is the files fetched and never opened (the client stopped or skipped names); the window shrinks
 * each time a fetched file is skipped and closes once more were skipped than used, and a session
 * that reads out of order fetches nothing ahead.
 */
import type { FirstChunk } from './reader.ts';
import { compareKeys } from './lister.ts';

/** A file of a directory, as a listing gave it. */
export interface ListedFile {
  name: string;
  size: number;
}

/** What reading ahead needs from storage; S3Storage supplies it. */
export interface ReadAheadSource {
  /** The directory's files in key order, when a complete listing of it is at hand (no request). */
  heldFiles(prefix: string): ListedFile[] | undefined;
  /** Up to `max` files after `startAfter` in the directory `prefix` ("a/b/"), in key order. */
  filesAfter(prefix: string, startAfter: string, max: number): Promise<ListedFile[]>;
  /** The first ranged GET an OPEN of `key` makes, for at most `maxBytes` (what the budget was charged) however large it is now. */
  firstChunk(key: string, closer: AbortController, maxBytes: number): Promise<FirstChunk | 'empty' | undefined>;
  /** Where the server's change log is now; changedAfter tells whether a key changed since. */
  seq(): number;
  changedAfter(key: string, seq: number): boolean;
  now(): number;
}

export interface ReadAheadLimits {
  /** Files fetched ahead at most; 0 turns reading ahead off. */
  maxFiles: number;
  /** Only files of at most this size are fetched ahead (one GET each). */
  maxFileBytes: number;
  /** How long a fetched file may answer an OPEN or STAT (ms); like a held listing (ADR 0019). */
  ttlMs: number;
}

/** Bytes fetched ahead and not yet opened, server-wide, unless configured otherwise. */
export const READ_AHEAD_BYTES = 16 * 1024 * 1024;

/** Bytes fetched ahead and not yet opened, shared by every session of a server. */
export class ReadAheadBudget {
  readonly maxBytes: number;
  #free: number;

  constructor(maxBytes: number) {
    this.maxBytes = maxBytes;
    this.#free = maxBytes;
  }

  take(bytes: number): boolean {
    if (bytes > this.#free) return false;
    this.#free -= bytes;
    return true;
  }

  /** Gives back a fetched file's bytes: `used` when an OPEN took the file, else it went unopened. */
  give(bytes: number, used = false): void {
    this.#free = Math.min(this.maxBytes, this.#free + bytes);
    if (used) this.usedFiles++;
    else this.unusedFiles++;
  }

  get usedBytes(): number {
    return this.maxBytes - this.#free;
  }

  /** Files fetched ahead that an OPEN took, and that were dropped unopened (the metrics). */
  usedFiles = 0;
  unusedFiles = 0;
}

/** Names listed at once to find the next files. */
const NAMES_PER_LISTING = 100;

interface Fetched {
  name: string;
  bytes: number;
  startedAt: number;
  seq: number;
  closer: AbortController;
  chunk: Promise<FirstChunk | undefined>;
  expiry?: NodeJS.Timeout;
}

/** One session's reading ahead, for one directory at a time. */
export class ReadAhead {
  #source: ReadAheadSource;
  #limits: ReadAheadLimits;
  #budget: ReadAheadBudget;
  /** The directory being read through, the last name opened in it, and how many in name order. */
  #prefix = '';
  /** The first name opened in this run through the directory, and the last. */
  #firstName = '';
  #lastName = '';
  /** A name of the directory an OPEN is fetching itself right now. */
  #opening = '';
  #inOrder = 0;
  /** Files fetched ahead, by name, in name order. */
  #fetched = new Map<string, Fetched>();
  /** Files after the last one fetched, known from a listing; `#listedAll` when no more follow. */
  #queue: ListedFile[] = [];
  #listedAll = false;
  #listing = false;
  /** The last name the latest listing returned, and whether any file of that listing was fetched. */
  #listedUpTo = '';
  #batchFetched = false;
  #window: number;
  /** In this run through the directory: fetched files an OPEN took, and fetched files the client skipped. */
  #used = 0;
  #skipped = 0;
  /** Bumped on every change of directory, so late answers for an old one are dropped. */
  #generation = 0;

  constructor(source: ReadAheadSource, limits: ReadAheadLimits, budget: ReadAheadBudget) {
    this.#source = source;
    this.#limits = limits;
    this.#budget = budget;
    this.#window = Math.min(2, limits.maxFiles);
  }

  /**
   * The first chunk of `key` if it was fetched ahead and may still answer, handed over once: an
   * OPEN calls this and fetches the object itself when it gets undefined.
   */
  async take(key: string): Promise<{ first: FirstChunk; closer: AbortController } | undefined> {
    const entry = this.#usable(key);
    if (!entry) {
      // Being fetched by the OPEN itself: not worth fetching ahead as well.
      const slash = key.lastIndexOf('/');
      if (key.slice(0, slash + 1) === this.#prefix) this.#opening = key.slice(slash + 1);
      return undefined;
    }
    this.#drop(entry, false);
    this.#used++;
    const first = await entry.chunk;
    return first ? { first, closer: entry.closer } : undefined;
  }

  /** What a STAT of `key` can learn from a file fetched ahead (size, ETag, time), leaving it for the OPEN. */
  async peek(key: string): Promise<FirstChunk | undefined> {
    return this.#usable(key)?.chunk;
  }

  /** An OPEN of `key` succeeded: follow the session through its directory. */
  opened(key: string): void {
    if (this.#limits.maxFiles <= 0) return;
    const slash = key.lastIndexOf('/');
    const prefix = key.slice(0, slash + 1);
    const name = key.slice(slash + 1);
    // A first OPEN starts a run, also in the directory the state starts in ("", a home at the bucket's root).
    if (prefix !== this.#prefix || this.#inOrder === 0 || compareKeys(name, this.#lastName) <= 0) {
      this.#restart(prefix);
      this.#firstName = name;
      this.#lastName = name;
      this.#inOrder = 1;
      return;
    }
    this.#lastName = name;
    this.#inOrder++;
    if (this.#inOrder === 2 && this.#queue.length === 0 && !this.#listedAll) {
      const held = this.#source.heldFiles(prefix);
      if (held) {
        this.#queue = held.filter((f) => compareKeys(f.name, name) > 0);
        this.#listedAll = true;
        if (held.some((f) => compareKeys(f.name, this.#firstName) > 0 && compareKeys(f.name, name) < 0)) this.#notAdjacent();
      }
    }
    // Fetched files sorting before this one were skipped: the client picks names, fetch fewer. Once
    // it has skipped more than it used, it reads the directory some other way (rclone spreads one
    // over several connections, each opening names the others leave): fetch none.
    let skipped = 0;
    for (const entry of this.#fetched.values()) {
      if (compareKeys(entry.name, name) > 0) break;
      this.#drop(entry, true);
      skipped++;
    }
    this.#skipped += skipped;
    if (skipped > 0) this.#window = this.#skipped > this.#used ? 0 : Math.max(1, this.#window >> 1);
    else if (this.#window > 0) this.#window = Math.min(this.#limits.maxFiles, this.#window * 2);
    while (this.#queue.length > 0 && compareKeys(this.#queue[0]!.name, name) <= 0) this.#queue.shift();
    this.#fill();
  }

  /**
   * The first two names opened were not next to each other: the client picks names, or shares the
   * directory with other connections (rclone), so the next name is no better a guess than any.
   */
  #notAdjacent(): void {
    this.#window = 0;
  }

  /** Drops everything fetched ahead (the session ended). */
  clear(): void {
    this.#restart('');
  }

  #usable(key: string): Fetched | undefined {
    const slash = key.lastIndexOf('/');
    if (key.slice(0, slash + 1) !== this.#prefix) return undefined;
    const entry = this.#fetched.get(key.slice(slash + 1));
    if (!entry) return undefined;
    if (this.#source.now() - entry.startedAt > this.#limits.ttlMs || this.#source.changedAfter(key, entry.seq)) {
      this.#drop(entry, true);
      return undefined;
    }
    return entry;
  }

  #restart(prefix: string): void {
    for (const entry of [...this.#fetched.values()]) this.#drop(entry, true);
    this.#generation++;
    this.#prefix = prefix;
    this.#firstName = '';
    this.#lastName = '';
    this.#opening = '';
    this.#inOrder = 0;
    this.#queue = [];
    this.#listedAll = false;
    this.#listing = false;
    this.#listedUpTo = '';
    this.#batchFetched = false;
    this.#window = Math.min(2, this.#limits.maxFiles);
    this.#used = 0;
    this.#skipped = 0;
  }

  #drop(entry: Fetched, abort: boolean): void {
    if (this.#fetched.get(entry.name) !== entry) return;
    this.#fetched.delete(entry.name);
    clearTimeout(entry.expiry);
    this.#budget.give(entry.bytes, !abort);
    if (abort) entry.closer.abort();
  }

  /** Keeps `#window` files fetched ahead of the last one opened, listing more names when needed. */
  #fill(): void {
    if (this.#inOrder < 2) return;
    while (this.#fetched.size < this.#window) {
      const next = this.#queue.shift();
      if (!next) {
        // A listing that gave nothing to fetch (large files only) is not followed by the next one
        // until the client reaches its end: a directory of large files costs one listing per 100 OPENs.
        if (this.#batchFetched || compareKeys(this.#lastName, this.#listedUpTo) >= 0) this.#listMore();
        return;
      }
      if (next.size === 0 || next.size > this.#limits.maxFileBytes || this.#fetched.has(next.name)) continue;
      if (compareKeys(next.name, this.#opening) <= 0) continue;
      if (!this.#budget.take(next.size)) {
        this.#queue.unshift(next);
        return;
      }
      this.#fetch(next);
    }
  }

  #listMore(): void {
    if (this.#listing || this.#listedAll) return;
    this.#listing = true;
    const generation = this.#generation;
    const prefix = this.#prefix;
    // The first listing starts after the first name opened, so it shows whether the second was next.
    const second = this.#listedUpTo === '' && this.#inOrder === 2 ? this.#lastName : undefined;
    const after = second !== undefined ? this.#firstName : this.#listFrom();
    const previous = this.#listedUpTo;
    this.#source.filesAfter(prefix, after, NAMES_PER_LISTING).then(
      (files) => {
        if (generation !== this.#generation) return;
        this.#listing = false;
        if (second !== undefined && files[0]?.name !== second) this.#notAdjacent();
        if (files.length < NAMES_PER_LISTING) this.#listedAll = true;
        const last = files.at(-1)?.name;
        // No progress (a store that ignored StartAfter): stop rather than list the same names again.
        if (last === undefined || compareKeys(last, previous) <= 0) this.#listedAll = true;
        else this.#listedUpTo = last;
        this.#batchFetched = false;
        this.#queue.push(...files.filter((f) => compareKeys(f.name, this.#lastName) > 0));
        if (files.length > 0) this.#fill();
      },
      () => {
        // Reading ahead is a bonus: a failed listing ends it for this directory.
        if (generation !== this.#generation) return;
        this.#listing = false;
        this.#listedAll = true;
      },
    );
  }

  /** Where the next listing starts: after every name listed, fetched or opened so far. */
  #listFrom(): string {
    let last = compareKeys(this.#listedUpTo, this.#lastName) > 0 ? this.#listedUpTo : this.#lastName;
    for (const name of this.#fetched.keys()) if (compareKeys(name, last) > 0) last = name;
    return last;
  }

  #fetch(file: ListedFile): void {
    this.#batchFetched = true;
    const key = this.#prefix + file.name;
    const closer = new AbortController();
    const seq = this.#source.seq();
    const chunk = this.#source.firstChunk(key, closer, file.size).then(
      // Grown since it was listed: what was fetched is only its start, which the OPEN does not take.
      (first) => (first === undefined || first === 'empty' || first.end < first.size ? undefined : first),
      () => undefined,
    );
    const entry: Fetched = {
      name: file.name,
      bytes: file.size,
      startedAt: this.#source.now(),
      seq,
      closer,
      chunk,
    };
    // Not opened in time: the bytes go back to the budget. Time is the source's clock, which tests
    // may hold still; the timer only looks at it.
    const expire = (): void => {
      if (this.#source.now() - entry.startedAt <= this.#limits.ttlMs) entry.expiry = setTimeout(expire, this.#limits.ttlMs).unref();
      else this.#drop(entry, true);
    };
    entry.expiry = setTimeout(expire, this.#limits.ttlMs + 1_000).unref();
    this.#fetched.set(file.name, entry);
  }
}
