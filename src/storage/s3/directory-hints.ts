/**
 * Names this server lately found to be directories, shared by every session. A hint answers
 * nothing: it only lets STAT ask S3 both of its questions at once (is there an object of that
 * name, is there anything under "name/") instead of one after the other. A STAT of a directory
 * then waits for one round trip instead of two; a wrong hint costs one listing request more and
 * nothing else. OpenSSH's `cd dir` and `ls -l dir` STAT the directory first, in every new session.
 */

/** Names held; the least recently noted go first (about 100 bytes each). */
const MAX_HINTS = 10_000;

export class DirectoryHints {
  #keys = new Set<string>();
  #max: number;

  constructor(max = MAX_HINTS) {
    this.#max = max;
  }

  /** `key` (no trailing "/") held a directory when last looked at, in the store and bucket `scope`. */
  note(scope: string, key: string): void {
    const id = `${scope}\u0000${key}`;
    this.#keys.delete(id);
    this.#keys.add(id);
    if (this.#keys.size > this.#max) this.#keys.delete(this.#keys.values().next().value as string);
  }

  /** It did not, or may not any more. */
  forget(scope: string, key: string): void {
    this.#keys.delete(`${scope}\u0000${key}`);
  }

  has(scope: string, key: string): boolean {
    return this.#keys.has(`${scope}\u0000${key}`);
  }
}
