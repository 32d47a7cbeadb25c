/**
 * client-node's ListWatch informer, made to survive what a long-running server meets. Read against
 * client-node 2.0 (src/cache.ts, src/watch.ts), the informer on its own:
 *
 * - relists on 410 Gone (as an HTTP status or as a watch ERROR event), and reconnects from the
 *   last resourceVersion when a watch ends cleanly or times out (30 s without data);
 * - but on any other error (connection refused, reset, 5xx on list, a watch cut mid-stream) it
 *   calls its 'error' callbacks and stops for good. This wrapper restarts it after a growing delay;
 *   start() keeps the last resourceVersion, so a restart resumes the watch, or relists after 410;
 * - backs off a reconnect up to 30 s when watches keep ending without events: the delay is capped
 *   here (bookmarks, which this wrapper asks for, reset it on a quiet but healthy watch);
 * - swallows exceptions from event callbacks, and an exception thrown while it handles an event or
 *   relists becomes an unhandled rejection (fatal in Node). Every callback here is wrapped;
 * - can start a new watch after stop() if stop() lands during its reconnect delay: the watch
 *   factory below refuses once stopped.
 */

import { ListWatch, Watch, type KubeConfig, type KubernetesListObject, type KubernetesObject } from '@kubernetes/client-node';
import { describeError, httpStatus } from './api.ts';
import { Backoff } from '../backoff.ts';

/** The pino methods the informer uses. */
export interface InformerLogger {
  debug(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export type InformerEvent = 'add' | 'update' | 'delete';

export interface ResilientInformerOptions<T extends KubernetesObject> {
  kubeConfig: KubeConfig;
  /** API path of the collection, e.g. /api/v1/namespaces/ns/secrets. */
  path: string;
  list: () => Promise<KubernetesListObject<T>>;
  /** For log lines: "SftpUsers", "Secrets in namespace ns". */
  what: string;
  log: InformerLogger;
  /** Called for every change of the cache; may throw (it is logged). */
  onEvent: (event: InformerEvent, obj: T) => void;
  /** Called once the first list has been applied, and after every later failure or recovery. */
  onStateChange?: () => void;
  /** Delay before restarting after an error: doubles from min to max, with jitter (src/backoff.ts). Defaults 500 ms and 30 s. */
  restartDelayMs?: { min: number; max: number };
  /** Upper bound of client-node's own reconnect back-off. Default 5 s. */
  maxReconnectDelayMs?: number;
}

/** client-node's Watch, asking for bookmarks and never letting a callback's exception escape. */
class SafeWatch extends Watch {
  stopped = false;
  readonly #onCallbackError: (err: unknown) => void;

  constructor(kc: KubeConfig, onCallbackError: (err: unknown) => void) {
    super(kc);
    this.#onCallbackError = onCallbackError;
  }

  override async watch(
    path: string,
    queryParams: Record<string, string | number | boolean | undefined>,
    callback: (phase: string, apiObj: unknown, watchObj?: unknown) => void,
    done: (err: unknown) => void,
  ): Promise<AbortController> {
    if (this.stopped) {
      const controller = new AbortController();
      controller.abort();
      return controller;
    }
    const safe = (phase: string, obj: unknown, raw?: unknown) => {
      try {
        // ListWatch's handler is async: a throw inside it is a rejected promise, not an exception.
        const result = callback(phase, obj, raw) as unknown;
        if (result instanceof Promise) result.catch(this.#onCallbackError);
      } catch (err) {
        this.#onCallbackError(err);
      }
    };
    try {
      return await super.watch(path, { ...queryParams, allowWatchBookmarks: true }, safe, done);
    } catch (err) {
      // Thrown before the request started (no cluster, failing auth plugin): report it like a
      // failed request, on a later tick, as Watch itself would.
      setImmediate(() => done(err));
      return new AbortController();
    }
  }
}

/** A ListWatch that restarts itself after errors and reports whether its first list is applied. */
export class ResilientInformer<T extends KubernetesObject> {
  readonly #opts: ResilientInformerOptions<T>;
  readonly #watch: SafeWatch;
  readonly #informer: ListWatch<T>;
  readonly #sleepers = new Set<() => void>();
  #stopped = true;
  #synced = false;
  #restartTimer: NodeJS.Timeout | undefined;
  readonly #restartBackoff: Backoff;
  #lastError: { status: number | undefined; message: string } | undefined;

  constructor(opts: ResilientInformerOptions<T>) {
    this.#opts = opts;
    this.#restartBackoff = new Backoff({ minMs: opts.restartDelayMs?.min ?? 500, maxMs: opts.restartDelayMs?.max ?? 30_000 });
    this.#watch = new SafeWatch(opts.kubeConfig, (err) => opts.log.error({ err, what: opts.what }, `handling a watch event of ${opts.what} failed`));
    const maxReconnect = opts.maxReconnectDelayMs ?? 5_000;
    this.#informer = new ListWatch<T>(opts.path, this.#watch, () => this.#list(), false, undefined, undefined, {
      delayFn: (ms) => this.#sleep(Math.min(ms, maxReconnect)),
    });
    for (const event of ['add', 'update', 'delete'] as const) {
      this.#informer.on(event, (obj: T) => this.#deliver(event, obj));
    }
    this.#informer.on('error', (err?: unknown) => this.#onError(err));
  }

  /** True once a full list has been applied (and stays true). */
  get synced(): boolean {
    return this.#synced;
  }

  /** The last error since the last successful list, e.g. to tell 403 Forbidden from a network error. */
  get lastError(): { status: number | undefined; message: string } | undefined {
    return this.#lastError;
  }

  get(name: string, namespace?: string): T | undefined {
    return this.#informer.get(name, namespace);
  }

  list(namespace?: string): readonly T[] {
    return this.#informer.list(namespace);
  }

  /** Starts listing and watching in the background; failures are retried, never thrown. */
  start(): void {
    if (!this.#stopped) return;
    this.#stopped = false;
    this.#watch.stopped = false;
    void this.#run();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#watch.stopped = true;
    clearTimeout(this.#restartTimer);
    for (const wake of this.#sleepers) wake();
    await this.#informer.stop();
  }

  async #run(): Promise<void> {
    try {
      await this.#informer.start();
    } catch (err) {
      this.#onError(err);
    }
  }

  async #list(): Promise<KubernetesListObject<T>> {
    const list = await this.#opts.list();
    // ListWatch applies the items right after this returns; mark synced on the next tick.
    setImmediate(() => this.#listed());
    return list;
  }

  #listed(): void {
    if (this.#stopped) return;
    const wasSynced = this.#synced;
    const hadError = this.#lastError !== undefined;
    this.#synced = true;
    this.#lastError = undefined;
    this.#restartBackoff.reset();
    if (!wasSynced) this.#opts.log.info({ what: this.#opts.what, count: this.list().length }, `listed ${this.#opts.what}`);
    else if (hadError) this.#opts.log.info({ what: this.#opts.what }, `watching ${this.#opts.what} again`);
    if (!wasSynced || hadError) this.#notifyState();
  }

  #deliver(event: InformerEvent, obj: T): void {
    if (this.#stopped) return;
    try {
      this.#opts.onEvent(event, obj);
    } catch (err) {
      this.#opts.log.error({ err, what: this.#opts.what, event }, `handling an event of ${this.#opts.what} failed`);
    }
  }

  #onError(err: unknown): void {
    if (this.#stopped) return; // stop() aborts the watch, which ListWatch reports as an error
    const status = httpStatus(err);
    const first = this.#lastError === undefined;
    this.#lastError = { status, message: describeError(err) };
    const delay = this.#restartBackoff.next();
    this.#opts.log[first ? 'warn' : 'debug'](
      { what: this.#opts.what, error: this.#lastError.message, retryInMs: delay },
      `listing or watching ${this.#opts.what} failed; retrying`,
    );
    if (first) this.#notifyState();
    clearTimeout(this.#restartTimer);
    this.#restartTimer = setTimeout(() => {
      if (!this.#stopped) void this.#run();
    }, delay);
    this.#restartTimer.unref();
  }

  #notifyState(): void {
    try {
      this.#opts.onStateChange?.();
    } catch (err) {
      this.#opts.log.error({ err, what: this.#opts.what }, 'an informer state listener threw');
    }
  }

  #sleep(ms: number): Promise<void> {
    if (ms <= 0 || this.#stopped) return Promise.resolve();
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        this.#sleepers.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, ms);
      timer.unref();
      this.#sleepers.add(wake);
    });
  }
}
