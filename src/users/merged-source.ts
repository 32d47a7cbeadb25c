/**
 * Several user sources seen as one (users.directory and users.kubernetes together). The first
 * source that has a username wins; a username defined by more than one source is logged once per
 * change of who defines it, so an operator can see which definition is ignored.
 */

import type { User, UserSource } from './user.ts';

/** The pino method this source uses. */
export interface MergedSourceLogger {
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

/** One source with a name for log lines ("users.directory", "users.kubernetes"). */
export interface NamedSource {
  name: string;
  source: UserSource;
}

/** A UserSource over several others; earlier sources win on duplicate usernames. */
export class MergedSource implements UserSource {
  readonly #sources: readonly NamedSource[];
  readonly #listeners = new Set<(username: string) => void>();
  readonly #unsubscribe: (() => void)[];
  readonly #log: MergedSourceLogger;
  /** Usernames currently defined by more than one source, with the names of those sources. */
  readonly #conflicts = new Map<string, string>();

  constructor(sources: NamedSource[], log: MergedSourceLogger) {
    this.#sources = sources;
    this.#log = log;
    this.#unsubscribe = sources.map(({ source }) => source.onChange((username) => this.#changed(username)));
    for (const user of this.all()) this.#checkConflict(user.username);
  }

  /** True once every source has applied its first full load. */
  get ready(): boolean {
    return this.#sources.every(({ source }) => source.ready);
  }

  /** The user from the first source that has this name. */
  get(username: string): User | undefined {
    for (const { source } of this.#sources) {
      const user = source.get(username);
      if (user) return user;
    }
    return undefined;
  }

  /** Every user, each name once (the winning definition). */
  all(): User[] {
    const seen = new Map<string, User>();
    for (const { source } of this.#sources) {
      for (const user of source.all()) if (!seen.has(user.username)) seen.set(user.username, user);
    }
    return [...seen.values()];
  }

  /** Calls `listener` when any source changes a username (the effective user may have changed). */
  onChange(listener: (username: string) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Closes every source. */
  async close(): Promise<void> {
    for (const off of this.#unsubscribe) off();
    this.#listeners.clear();
    await Promise.all(this.#sources.map(({ source }) => source.close()));
  }

  #changed(username: string): void {
    this.#checkConflict(username);
    for (const listener of this.#listeners) {
      try {
        listener(username);
      } catch (err) {
        this.#log.error({ err, username }, 'a users onChange listener threw');
      }
    }
  }

  #checkConflict(username: string): void {
    const holders = this.#sources.filter(({ source }) => source.get(username) !== undefined).map(({ name }) => name);
    const key = holders.length > 1 ? holders.join(', ') : undefined;
    if (key === this.#conflicts.get(username)) return;
    if (key === undefined) {
      this.#conflicts.delete(username);
      return;
    }
    this.#conflicts.set(username, key);
    this.#log.warn(
      { username, sources: holders },
      `user ${username} is defined in ${key}; using the one from ${holders[0]} and ignoring the others`,
    );
  }
}
