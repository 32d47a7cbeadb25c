/**
 * The published user table of a user source (the directory, the Kubernetes controller): lookups,
 * change listeners, and replacing the table with a new one while telling the listeners which
 * usernames were added, changed or removed. A listener that throws is logged and never stops the
 * others.
 */
import { sameUser, type User } from './user.ts';

export interface UserTableLogger {
  info(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export class PublishedUsers {
  readonly #log: UserTableLogger;
  readonly #listeners = new Set<(username: string) => void>();
  #users = new Map<string, User>();

  constructor(log: UserTableLogger) {
    this.#log = log;
  }

  get(username: string): User | undefined {
    return this.#users.get(username);
  }

  all(): User[] {
    return [...this.#users.values()];
  }

  /** The table as it is, to compare the next one with. */
  current(): ReadonlyMap<string, User> {
    return this.#users;
  }

  onChange(listener: (username: string) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * Replaces the table. With `notify`, listeners hear of every username that was added, changed
   * or removed; with `log`, each change is logged too.
   */
  publish(next: Map<string, User>, opts: { notify: boolean; log: boolean }): void {
    const changes: { username: string; what: 'added' | 'changed' | 'removed'; source: string | undefined }[] = [];
    for (const [username, user] of next) {
      const old = this.#users.get(username);
      if (!old) changes.push({ username, what: 'added', source: user.source });
      else if (!sameUser(old, user)) changes.push({ username, what: 'changed', source: user.source });
    }
    for (const [username, user] of this.#users) {
      if (!next.has(username)) changes.push({ username, what: 'removed', source: user.source });
    }
    this.#users = next;
    if (opts.notify) this.#notify(changes, opts.log);
  }

  #notify(changes: readonly { username: string; what: 'added' | 'changed' | 'removed'; source: string | undefined }[], log: boolean): void {
    for (const { username, what, source } of changes) {
      if (log) this.#log.info({ username, source }, `user ${username} ${what}`);
      for (const listener of this.#listeners) {
        try {
          listener(username);
        } catch (err) {
          this.#log.error({ err, username }, 'a users onChange listener threw');
        }
      }
    }
  }

  /**
   * Applies changes to some usernames (undefined: removed) and tells the listeners of each one
   * that differs, as publish() does; the cost is that of the changes, not of the table.
   */
  apply(changes: ReadonlyMap<string, User | undefined>, opts: { notify: boolean; log: boolean }): void {
    const changed: { username: string; what: 'added' | 'changed' | 'removed'; source: string | undefined }[] = [];
    for (const [username, user] of changes) {
      const old = this.#users.get(username);
      if (user) {
        this.#users.set(username, user);
        if (!old) changed.push({ username, what: 'added', source: user.source });
        else if (!sameUser(old, user)) changed.push({ username, what: 'changed', source: user.source });
      } else if (old) {
        this.#users.delete(username);
        changed.push({ username, what: 'removed', source: old.source });
      }
    }
    if (opts.notify) this.#notify(changed, opts.log);
  }

  /** Forgets every listener (the source is closing). */
  close(): void {
    this.#listeners.clear();
  }
}
