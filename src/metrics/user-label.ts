/**
 * The `user` label value for per-user metrics (metrics.perUserLabels). Each distinct user is a new
 * series on every per-user metric, so the number of distinct values is capped: the first `limit`
 * users seen keep their name for the life of the process, everyone after them is counted as
 * "other". A user's label never changes once given, so a gauge's inc and dec always meet.
 */
export const OTHER_USERS = 'other';

export class UserLabeler {
  readonly #limit: number;
  readonly #named = new Set<string>();

  constructor(limit: number) {
    this.#limit = limit;
  }

  label(user: string): string {
    if (this.#named.has(user)) return user;
    if (this.#named.size >= this.#limit || user === OTHER_USERS) return OTHER_USERS;
    this.#named.add(user);
    return user;
  }
}
