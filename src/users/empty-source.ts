/** A user source with nobody in it: the server still starts and reports why no one can log in. */
import type { User, UserSource } from './user.ts';

export class EmptySource implements UserSource {
  readonly ready = true;
  get(): User | undefined {
    return undefined;
  }
  all(): User[] {
    return [];
  }
  onChange(): () => void {
    return () => undefined;
  }
  async close(): Promise<void> {}
}
