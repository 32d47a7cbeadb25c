/**
 * What one session knows of the directories it listed in the last few seconds (docs/adr/0019).
 *
 * A complete listing of a directory (one page, not truncated) tells every name it holds, which are
 * files (with size and S3's time) and which are directories, and that no other name exists. For a
 * short time after the listing was requested, lookups of names in that directory may be answered
 * from it instead of asking S3 again.
 *
 * Changes made through this server, by any session, go to one ChangeLog shared by the sessions: a
 * name changed after a listing was requested is not answered from that listing, and a listing of a
 * directory changed (removed, renamed, written over) after it was requested is dropped. So every
 * session of a server sees every change made through the server at once; only changes made through
 * another replica, or straight in S3, wait for the listing to expire.
 *
 * Keyed by the directory's key prefix ("home/dir/", or the user's root prefix) and the name in it.
 * Bounded: a few directories of at most one listing page each per session; the log keeps the last
 * MAX_CHANGES changes and invalidates any listing older than what it forgot.
 */

/** What a listing said about one name. */
export interface KnownName {
  /** The object of exactly this name; it wins over a directory of the same name (ADR 0005). */
  file?: {
    size: number;
    /** S3's LastModified as the listing gave it. */
    lastModified: Date | undefined;
    /** The mtime stat reports (stored metadata, else HEAD's Last-Modified), when the listing looked it up. */
    statMtime?: Date;
  };
  /** Keys under "name/" exist. Not known (false) when a file of the name hid the directory in the listing. */
  directory: boolean;
}

/** Changes a log keeps; a listing requested before the oldest one forgotten is not used. */
const MAX_CHANGES = 10_000;

/** The changes made through this server: each key's latest change, in order. Shared by all sessions. */
export class ChangeLog {
  #seq = 0;
  #changes = new Map<string, number>();
  #forgottenUpTo = 0;

  /** The position of the latest change: a listing requested now sees every change up to it. */
  get seq(): number {
    return this.#seq;
  }

  note(bucket: string, key: string): void {
    const id = `${bucket}\u0000${key}`;
    this.#changes.delete(id);
    this.#changes.set(id, ++this.#seq);
    while (this.#changes.size > MAX_CHANGES) {
      const [oldest, seq] = this.#changes.entries().next().value as [string, number];
      this.#changes.delete(oldest);
      this.#forgottenUpTo = seq;
    }
  }

  /** Whether the key changed after position `seq`; true when that can no longer be told. */
  changedAfter(bucket: string, key: string, seq: number): boolean {
    if (seq < this.#forgottenUpTo) return true;
    const at = this.#changes.get(`${bucket}\u0000${key}`);
    return at !== undefined && at > seq;
  }
}

/** Names of a listing: what it said, or 'unknown' (an upload in progress: ask S3). */
export type ListedNames = Map<string, KnownName | 'unknown'>;

interface Directory {
  /** When the listing stops counting (ms, the clock's time). */
  until: number;
  /** The change log's position when the listing was requested. */
  seq: number;
  /** The names it held; undefined when it did not fit one page ("big": names are looked up one by one). */
  names: ListedNames | undefined;
}

/** Directories remembered at once; the oldest go first. */
const MAX_DIRECTORIES = 64;
/** Directories remembered as seen (a name each); the oldest go first. */
const MAX_SEEN = 1000;
/**
 * How long an expired listing is kept to say "this directory was small and in use": a lookup in it
 * then lists it again (one request) rather than asking about the one name.
 */
const STALE_KEEP_MS = 60_000;
/**
 * How long a directory is remembered as too big for one page. It answers no name, it only spares
 * listing a page of it again on the next upload (1,000 names read for nothing), so it may outlive a
 * listing's 5 s: a directory that shrinks meanwhile only has its names looked up one by one longer.
 */
const BIG_KEEP_MS = 60_000;

/** A complete listing held: until when it answers, the change log's position when it was requested, the names. */
type HeldDirectory = { until: number; seq: number; names: ReadonlyMap<string, KnownName | 'unknown'> };

/**
 * The directory memories of one user's sessions through one store, so a listing one of them fetched
 * answers the others: rclone, FileZilla and WinSCP list a directory on one connection and transfer,
 * stat or remove its files on others. Held weakly: a session that ended drops out once collected.
 */
export class DirectoryPeers {
  #groups = new Map<string, Set<WeakRef<DirectoryMemory>>>();

  /** The peers of `group` (a user and a store), live ones only. */
  group(group: string): Set<WeakRef<DirectoryMemory>> {
    let peers = this.#groups.get(group);
    if (!peers) this.#groups.set(group, (peers = new Set()));
    for (const ref of peers) if (ref.deref() === undefined) peers.delete(ref);
    return peers;
  }
}

export class DirectoryMemory {
  #dirs = new Map<string, Directory>();
  /** The other sessions of the same user and store (DirectoryPeers); this one is among them. */
  #peers: Set<WeakRef<DirectoryMemory>> | undefined;
  /** Directories seen to exist (listed, made, looked up; ADR 0018), by key: until when, and the log's position then. */
  #seen = new Map<string, { until: number; seq: number; marker?: { mtime: Date | undefined } }>();
  #now: () => number;
  #ttlMs: number;
  #bucket: string;
  #log: ChangeLog;

  constructor(options: { now: () => number; ttlMs: number; bucket: string; log?: ChangeLog; peers?: Set<WeakRef<DirectoryMemory>> }) {
    this.#now = options.now;
    this.#ttlMs = options.ttlMs;
    this.#bucket = options.bucket;
    this.#log = options.log ?? new ChangeLog();
    this.#peers = options.peers;
    this.#peers?.add(new WeakRef(this));
  }

  get ttlMs(): number {
    return this.#ttlMs;
  }

  /** The change log's position now: take it before requesting a listing. */
  get seq(): number {
    return this.#log.seq;
  }

  /**
   * Records a listing requested at `listedAt`, with the log at `seq` (`names` undefined: a big
   * directory). Callers mark uploads in progress 'unknown'.
   */
  remember(prefix: string, listedAt: number, seq: number, names: ListedNames | undefined, until = listedAt + (names ? this.#ttlMs : BIG_KEEP_MS)): void {
    if (until <= this.#now()) return;
    this.#dirs.delete(prefix);
    this.#dirs.set(prefix, { until, seq, names });
    if (this.#dirs.size > MAX_DIRECTORIES) {
      const now = this.#now();
      for (const [p, d] of this.#dirs) if (d.until + STALE_KEEP_MS <= now) this.#dirs.delete(p);
      while (this.#dirs.size > MAX_DIRECTORIES) this.#dirs.delete(this.#dirs.keys().next().value as string);
    }
  }

  /**
   * The directory's listing while it counts, this session's or else the freshest another session of
   * the same user and store holds: 'big' when it did not fit a page; undefined when none.
   */
  directory(prefix: string): HeldDirectory | 'big' | undefined {
    const own = this.#held(prefix);
    if (own !== undefined || !this.#peers) return own;
    let best: HeldDirectory | 'big' | undefined;
    for (const ref of this.#peers) {
      const peer = ref.deref();
      if (peer === undefined || peer === this) continue;
      const held = peer.#held(prefix);
      if (held !== undefined && (best === undefined || best === 'big' || (held !== 'big' && held.until > best.until))) best = held;
    }
    return best;
  }

  #held(prefix: string): HeldDirectory | 'big' | undefined {
    const dir = this.#dirs.get(prefix);
    if (!dir || dir.until <= this.#now()) return undefined;
    // The directory itself, or one above it, changed since: the listing no longer says anything.
    for (let end = prefix.length - 1; end > 0; end = prefix.lastIndexOf('/', end - 1)) {
      if (this.#log.changedAfter(this.#bucket, prefix.slice(0, end), dir.seq)) {
        this.#dirs.delete(prefix);
        return undefined;
      }
    }
    return dir.names ? { until: dir.until, seq: dir.seq, names: dir.names } : 'big';
  }

  /**
   * True when the directory's complete listing expired lately: it was small and the session was
   * using it, so listing it again is worth one request.
   */
  stale(prefix: string): boolean {
    const dir = this.#dirs.get(prefix);
    if (!dir?.names) return false;
    const now = this.#now();
    if (dir.until + STALE_KEEP_MS <= now) {
      this.#dirs.delete(prefix);
      return false;
    }
    return dir.until <= now;
  }

  /** What is known of `name` in the directory `prefix`, with when that knowledge expires. */
  name(prefix: string, name: string): { state: KnownName | 'absent'; until: number } | undefined {
    const dir = this.directory(prefix);
    if (dir === undefined || dir === 'big') return undefined;
    const state = dir.names.get(name);
    if (state === 'unknown' || this.#log.changedAfter(this.#bucket, prefix + name, dir.seq)) return undefined;
    return { state: state ?? 'absent', until: dir.until };
  }

  /** The files of a directory's held listing, in key order, but those changed since; undefined when none is held. */
  files(prefix: string): { name: string; size: number }[] | undefined {
    const dir = this.directory(prefix);
    if (dir === undefined || dir === 'big') return undefined;
    const files: { name: string; size: number }[] = [];
    // Listed names come first, in key order; names marked 'unknown' afterwards are uploads.
    for (const [name, state] of dir.names) {
      if (state !== 'unknown' && state.file && !this.#log.changedAfter(this.#bucket, prefix + name, dir.seq)) files.push({ name, size: state.file.size });
    }
    return files;
  }

  /**
   * The directory `key` ("home/a/b", no trailing slash) was seen to exist by a request made at log
   * position `seq` (take `seq` before asking S3): for the next `ttlMs` it is taken to still exist
   * (docs/adr/0018), unless it or a directory above it changes through this server after `seq`.
   */
  sawDirectory(key: string, seq: number, marker?: { mtime: Date | undefined }): void {
    const now = this.#now();
    if (this.#seen.size >= MAX_SEEN) {
      for (const [k, seen] of this.#seen) if (seen.until <= now) this.#seen.delete(k);
      while (this.#seen.size >= MAX_SEEN) this.#seen.delete(this.#seen.keys().next().value as string);
    }
    this.#seen.delete(key);
    this.#seen.set(key, { until: now + this.#ttlMs, seq, ...(marker ? { marker } : {}) });
  }

  /**
   * What a STAT of the directory `key` found within `ttlMs` (its marker's time, undefined for a
   * directory that exists only through its children), unless it changed through this server since.
   */
  seenDirectoryMarker(key: string): { mtime: Date | undefined } | undefined {
    return this.seenDirectory(key) ? this.#seen.get(key)?.marker : undefined;
  }

  /** Whether the directory `key` was seen within `ttlMs` and has not changed through this server since. */
  seenDirectory(key: string): boolean {
    const seen = this.#seen.get(key);
    if (!seen) return false;
    if (seen.until > this.#now() && !this.changedAfter(key, seen.seq)) return true;
    this.#seen.delete(key);
    return false;
  }

  /** Whether `key`, or a directory above it, changed through this server after position `seq`. */
  changedAfter(key: string, seq: number): boolean {
    for (let end = key.length; end > 0; end = key.lastIndexOf('/', end - 1)) {
      if (this.#log.changedAfter(this.#bucket, key.slice(0, end), seq)) return true;
    }
    return false;
  }

  /** Whether the directory holds an entry other than `name` that is known to exist. */
  holdsOtherThan(prefix: string, name: string): boolean {
    const dir = this.directory(prefix);
    if (dir === undefined || dir === 'big') return false;
    for (const [n, state] of dir.names) {
      if (n !== name && state !== 'unknown' && !this.#log.changedAfter(this.#bucket, prefix + n, dir.seq)) return true;
    }
    return false;
  }

  /**
   * A session changed (or is changing) the object `key` and everything under `key/`: no held
   * listing answers for the name, or for directories at or under it, in any session of the server.
   */
  changed(key: string): void {
    this.#log.note(this.#bucket, key);
    const below = `${key}/`;
    for (const p of this.#dirs.keys()) if (p.startsWith(below)) this.#dirs.delete(p);
  }
}
