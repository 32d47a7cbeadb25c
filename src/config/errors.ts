/** What a configuration error says: every problem, one line each, with the key and the fix. */

/** One thing wrong with the configuration. `key` is the dotted path, or "" for the file itself. */
export interface ConfigProblem {
  key: string;
  /** Set when the bad value came from this env var rather than the file. */
  env?: string;
  message: string;
}

/**
 * The configuration is invalid. `problems` lists everything wrong; the
 * message has one "key: what is wrong; what to use" line per problem.
 */
export class ConfigError extends Error {
  override name = 'ConfigError';
  readonly problems: readonly ConfigProblem[];
  constructor(problems: ConfigProblem[]) {
    super(
      problems
        .map((p) => (p.key ? `${p.key}${p.env ? ` (env ${p.env})` : ''}: ${p.message}` : p.message))
        .join('\n'),
    );
    this.problems = Object.freeze(problems.map((p) => Object.freeze({ ...p })));
  }
}
