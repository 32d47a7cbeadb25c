/**
 * Keeps requests that concern the same file in the order they were received.
 *
 * The SFTP drafts let a server answer requests in any order except that
 * requests on the same file must be processed in order. Clients rely on it:
 * sshfs sends OPEN (create) and, without waiting, LSTAT of the same path and
 * expects the LSTAT to see the file; a CLOSE of an upload followed at once by
 * a STAT must see the stored object. Requests on unrelated paths (and READ or
 * WRITE on different files) still run in parallel.
 *
 * Each request names the paths it touches (normalised). Two requests conflict
 * when they share a path, or when one of them changes a whole subtree
 * (rename, remove, rmdir, mkdir) and the other's path lies inside it or above
 * it. A request starts once every earlier conflicting request has finished.
 */
import { isWithin } from '../storage/paths.ts';

/** What a request touches, as known when it is received. */
export interface OrderKey {
  /** Normalised paths; empty for a request that needs no ordering (REALPATH). */
  paths: readonly string[];
  /** True when the request changes what lives at or below its paths (rename, remove, rmdir, mkdir). */
  tree?: boolean;
}

interface Entry {
  key: OrderKey;
  done: Promise<void>;
}

/** True when two requests must not overtake each other. */
export function conflicts(a: OrderKey, b: OrderKey): boolean {
  const related = a.tree || b.tree ? (x: string, y: string) => isWithin(x, y) || isWithin(y, x) : (x: string, y: string) => x === y;
  return a.paths.some((x) => b.paths.some((y) => related(x, y)));
}

/**
 * The per-session ordering: one instance per SFTP session.
 *
 * Most requests (READ, WRITE, STAT) touch one path and no subtree, and a
 * busy upload sends tens of thousands of them a second, so the common case is
 * a map lookup: the latest request on the same path finishes only after every
 * earlier one it waited for, so waiting for it alone is enough. Only subtree
 * requests (rare) are matched by scanning what is in flight.
 */
export class RequestOrder {
  /** Requests received and not finished. Bounded by the client's outstanding requests. */
  #active = new Set<Entry>();
  /** Subtree requests in flight (rename, remove, rmdir, mkdir). */
  #trees = new Set<Entry>();
  /** The latest request in flight on each exact path. */
  #last = new Map<string, Entry>();

  /** Number of requests received and not finished. */
  get size(): number {
    return this.#active.size;
  }

  /**
   * Registers a request now (in receive order) and runs `work` once every
   * earlier conflicting request has finished. Resolves or rejects as `work` does.
   */
  run<T>(key: OrderKey, work: () => Promise<T>): Promise<T> {
    if (key.paths.length === 0) return work();
    const before = this.#before(key);
    let finish!: () => void;
    const entry: Entry = { key, done: new Promise<void>((resolve) => (finish = resolve)) };
    this.#active.add(entry);
    if (key.tree) this.#trees.add(entry);
    for (const p of key.paths) this.#last.set(p, entry);
    const start = before.length === 0 ? Promise.resolve() : before.length === 1 ? before[0]! : Promise.all(before);
    return start.then(work).finally(() => {
      this.#active.delete(entry);
      this.#trees.delete(entry);
      for (const p of key.paths) if (this.#last.get(p) === entry) this.#last.delete(p);
      finish();
    });
  }

  #before(key: OrderKey): Promise<void>[] {
    if (!key.tree && this.#trees.size === 0 && key.paths.length === 1) {
      const e = this.#last.get(key.paths[0]!);
      return e ? [e.done] : [];
    }
    const found = new Set<Entry>();
    if (key.tree) {
      for (const e of this.#active) if (conflicts(e.key, key)) found.add(e);
    } else {
      for (const p of key.paths) {
        const e = this.#last.get(p);
        if (e) found.add(e);
      }
      for (const e of this.#trees) if (conflicts(e.key, key)) found.add(e);
    }
    return [...found].map((e) => e.done);
  }
}
