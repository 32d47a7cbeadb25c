/**
 * Users from a directory of SftpUser YAML files (a ConfigMap/Secret mount or
 * a plain directory). Re-read on fs.watch events and on a periodic re-scan,
 * because fs.watch misses events on some filesystems (NFS, some overlay
 * mounts) and Kubernetes swaps mounted files through a `..data` symlink.
 *
 * A bad resource never stops the others from loading: it is skipped and
 * logged once (not on every re-scan) with its file, document and field.
 */

import { watch, type FSWatcher } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { validateSftpUser } from './sftp-user.ts';
import { PublishedUsers } from './published-users.ts';
import type { User, UserSource } from './user.ts';

/** The pino methods this source uses. */
export interface DirectorySourceLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

/** Options for DirectorySource.open. */
export interface DirectorySourceOptions {
  directory: string;
  /** The server's s3.bucket, for users that name none. */
  defaultBucket: string;
  log: DirectorySourceLogger;
  /** Quiet time after a watch event before re-reading; editors write in bursts. Default 200ms. */
  debounceMs?: number;
  /** Re-scan period when no watch event arrives. Default 10s. */
  rescanIntervalMs?: number;
}

/** The users directory cannot be read at startup. */
export class DirectorySourceError extends Error {
  override name = 'DirectorySourceError';
}

const DEFAULT_DEBOUNCE_MS = 200;
const DEFAULT_RESCAN_MS = 10_000;
/** A user file bigger than this is a mistake (or an attack on memory), not a user list. */
const MAX_FILE_BYTES = 4 * 2 ** 20;

interface Report {
  level: 'warn' | 'error';
  fields: Record<string, unknown>;
  msg: string;
}

interface FileResult {
  /** Valid users in document order, with the warnings they carry. */
  users: { user: User; document: number; warnings: string[] }[];
  reports: Report[];
}

/** A UserSource backed by *.yaml / *.yml files in one directory (not recursive). */
export class DirectorySource implements UserSource {
  #opts: Required<DirectorySourceOptions>;
  readonly #users: PublishedUsers;
  /** Last successful parse of each file, kept if a later read fails transiently. */
  #byFile = new Map<string, FileResult>();
  /** Reports logged by the previous scan, so a re-scan does not repeat them. */
  #reported = new Set<string>();
  #ready = false;
  #closed = false;
  #watcher: FSWatcher | undefined;
  #watchFailed = false;
  #debounce: NodeJS.Timeout | undefined;
  #interval: NodeJS.Timeout | undefined;
  #scanning: Promise<void> | undefined;
  #again = false;

  private constructor(opts: DirectorySourceOptions) {
    this.#users = new PublishedUsers(opts.log);
    this.#opts = {
      debounceMs: DEFAULT_DEBOUNCE_MS,
      rescanIntervalMs: DEFAULT_RESCAN_MS,
      ...opts,
    };
  }

  /**
   * Loads every file, then starts watching. Throws DirectorySourceError only
   * if the directory itself cannot be read; bad files are logged and skipped.
   */
  static async open(opts: DirectorySourceOptions): Promise<DirectorySource> {
    const source = new DirectorySource(opts);
    try {
      await readdir(opts.directory);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw new DirectorySourceError(
        `users.directory ${opts.directory} ${code === 'ENOENT' ? 'does not exist' : `cannot be read (${code ?? 'error'})`}`,
        { cause: err },
      );
    }
    await source.#scan();
    source.#ready = true;
    source.#startWatching();
    source.#interval = setInterval(() => {
      if (!source.#watcher) source.#startWatching();
      source.#requestScan();
    }, source.#opts.rescanIntervalMs);
    source.#interval.unref();
    return source;
  }

  /** True once the first full load has been applied. */
  get ready(): boolean {
    return this.#ready;
  }

  /** The current user with this name, or undefined. */
  get(username: string): User | undefined {
    return this.#users.get(username);
  }

  /** All users currently loaded. */
  all(): User[] {
    return this.#users.all();
  }

  /** Calls `listener` with each username added, changed or removed; returns an unsubscribe function. */
  onChange(listener: (username: string) => void): () => void {
    return this.#users.onChange(listener);
  }

  /** Stops watching; waits for a re-scan in progress so no listener fires afterwards. */
  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#debounce);
    clearInterval(this.#interval);
    this.#watcher?.close();
    this.#watcher = undefined;
    await this.#scanning;
    this.#users.close();
  }

  #startWatching(): void {
    if (this.#closed) return;
    try {
      // persistent: false — the SSH listener keeps the process alive, not this.
      const watcher = watch(this.#opts.directory, { persistent: false }, () => this.#onWatchEvent());
      watcher.on('error', (err) => {
        this.#opts.log.warn({ err, directory: this.#opts.directory }, 'watching the users directory failed; relying on periodic re-scans');
        watcher.close();
        if (this.#watcher === watcher) this.#watcher = undefined;
      });
      this.#watcher = watcher;
      this.#watchFailed = false;
    } catch (err) {
      // E.g. ENOSPC when the inotify watch limit is reached; re-scans still work.
      if (!this.#watchFailed) {
        this.#opts.log.warn({ err, directory: this.#opts.directory }, 'cannot watch the users directory; relying on periodic re-scans');
      }
      this.#watchFailed = true;
    }
  }

  #onWatchEvent(): void {
    if (this.#closed) return;
    clearTimeout(this.#debounce);
    this.#debounce = setTimeout(() => this.#requestScan(), this.#opts.debounceMs);
    this.#debounce.unref();
  }

  /** Runs a scan, or queues exactly one more if one is running, so scans never overlap. */
  #requestScan(): void {
    if (this.#closed) return;
    if (this.#scanning) {
      this.#again = true;
      return;
    }
    this.#scanning = (async () => {
      try {
        do {
          this.#again = false;
          await this.#scan();
        } while (this.#again && !this.#closed);
      } catch (err) {
        this.#opts.log.error({ err, directory: this.#opts.directory }, 'scanning the users directory failed');
      } finally {
        this.#scanning = undefined;
      }
    })();
  }

  async #scan(): Promise<void> {
    const dir = this.#opts.directory;
    const reports: Report[] = [];
    let names: string[];
    try {
      names = (await readdir(dir))
        // Hidden entries include Kubernetes' ..data and ..<timestamp> mount internals.
        .filter((n) => !n.startsWith('.') && /\.ya?ml$/i.test(n))
        .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    } catch (err) {
      // Keep serving the users we have: a directory that briefly vanishes
      // (remount, rename-swap) must not lock everyone out.
      this.#publishReports([
        { level: 'error', fields: { err, directory: dir }, msg: 'cannot read the users directory; keeping the users already loaded' },
      ]);
      return;
    }

    const files = new Map<string, FileResult>();
    for (const name of names) {
      const path = join(dir, name);
      let text: string;
      try {
        const st = await stat(path);
        if (!st.isFile()) continue;
        if (st.size > MAX_FILE_BYTES) {
          reports.push({ level: 'warn', fields: { file: path }, msg: `skipped ${name}: larger than 4MiB` });
          continue;
        }
        text = await readFile(path, 'utf8');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue; // deleted while scanning
        const previous = this.#byFile.get(name);
        if (previous) files.set(name, previous);
        reports.push({ level: 'error', fields: { err, file: path }, msg: `cannot read ${name}; keeping its previous users` });
        continue;
      }
      files.set(name, this.#parseFile(name, path, text));
    }
    if (this.#closed) return;

    const next = new Map<string, User>();
    const where = new Map<string, string>();
    for (const [name, result] of files) {
      reports.push(...result.reports);
      for (const { user, document, warnings } of result.users) {
        const here = `${name} (document ${document})`;
        const first = where.get(user.username);
        if (first !== undefined) {
          reports.push({
            level: 'warn',
            fields: { file: join(dir, name), document, username: user.username },
            msg: `ignored user ${user.username} in ${here}: ${first} already defines it`,
          });
          continue;
        }
        next.set(user.username, user);
        where.set(user.username, here);
        for (const w of warnings) {
          reports.push({
            level: 'warn',
            fields: { file: join(dir, name), document, username: user.username },
            msg: `user ${user.username} in ${here} ${w}`,
          });
        }
      }
    }
    this.#byFile = files;
    this.#publishReports(reports);
    this.#apply(next);
  }

  #parseFile(name: string, path: string, text: string): FileResult {
    const result: FileResult = { users: [], reports: [] };
    const docs = parseAllDocuments(text);
    const many = docs.length > 1;
    for (const [i, doc] of docs.entries()) {
      const document = i + 1;
      const fields = { file: path, document };
      const yamlError = doc.errors[0];
      if (yamlError) {
        result.reports.push({
          level: 'warn',
          fields,
          msg: `skipped document ${document} of ${name}: not valid YAML: ${yamlError.message.split('\n')[0]}`,
        });
        continue;
      }
      if (doc.contents === null) continue; // an empty document, e.g. after a trailing "---"
      let js: unknown;
      try {
        js = doc.toJS();
      } catch (err) {
        // toJS throws on excessive alias expansion ("billion laughs").
        result.reports.push({ level: 'warn', fields, msg: `skipped document ${document} of ${name}: ${(err as Error).message}` });
        continue;
      }
      const parsed = validateSftpUser(js, {
        defaultBucket: this.#opts.defaultBucket,
        source: `file ${path}${many ? ` (document ${document})` : ''}`,
      });
      if ('error' in parsed) {
        const metadata = (js as { metadata?: { name?: unknown } } | null)?.metadata;
        const resource = typeof metadata?.name === 'string' ? metadata.name : undefined;
        const what = resource ? `SftpUser ${resource}` : `document ${document}`;
        result.reports.push({
          level: 'warn',
          fields: { ...fields, resource, error: parsed.error },
          msg: `skipped ${what} in ${name} (document ${document}): ${parsed.error}`,
        });
        continue;
      }
      if (parsed.passwordSecretRef) {
        // A Secret lives in the Kubernetes API, which this source does not read.
        result.reports.push({
          level: 'warn',
          fields: { ...fields, resource: parsed.user.username },
          msg: `skipped SftpUser ${parsed.user.username} in ${name} (document ${document}): spec.passwordSecretRef works only for SftpUsers served from Kubernetes (users.kubernetes); put the hash in spec.passwordHash`,
        });
        continue;
      }
      if (parsed.sseKeySecretRef) {
        // Served without its key, the user's files would be written unencrypted: skip it.
        result.reports.push({
          level: 'warn',
          fields: { ...fields, resource: parsed.user.username },
          msg: `skipped SftpUser ${parsed.user.username} in ${name} (document ${document}): spec.s3.sse.customerKeySecretRef works only for SftpUsers served from Kubernetes (users.kubernetes); use spec.s3.sse.customerKeyFile`,
        });
        continue;
      }
      result.users.push({ user: parsed.user, document, warnings: parsed.warnings });
    }
    return result;
  }

  /** Logs reports that the previous scan did not already log. */
  #publishReports(reports: Report[]): void {
    const seen = new Set<string>();
    for (const r of reports) {
      const key = `${r.level}\u0000${r.msg}`;
      seen.add(key);
      if (!this.#reported.has(key)) this.#opts.log[r.level](r.fields, r.msg);
    }
    this.#reported = seen;
  }

  #apply(next: Map<string, User>): void {
    // The first load is not a change.
    this.#users.publish(next, { notify: this.#ready, log: this.#ready });
  }
}
