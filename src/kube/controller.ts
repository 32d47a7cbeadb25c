/**
 * SftpUser resources from the Kubernetes API as a UserSource.
 *
 * Two kinds of informer feed one in-memory table: one on SftpUsers (cluster-wide, or one
 * namespace), and one on Secrets per namespace where some SftpUser has spec.passwordSecretRef,
 * started when the first such user appears there and stopped when the last one goes. A
 * per-namespace informer, rather than one field-selected watch per referenced Secret, keeps one
 * connection per namespace however many users there are, and needs no RBAC on Secrets in
 * namespaces without password references; the price is that it caches every Secret of those
 * namespaces (docs/adr/0008-kubernetes-users.md).
 *
 * Every event schedules one rebuild of the whole table on the next turn of the event loop, so a
 * burst of events (a relist after 410) costs one rebuild. A rebuild is level-triggered: it reads
 * only the informers' caches, parses each resource once per generation, resolves Secrets, settles
 * username collisions (oldest creationTimestamp wins, then namespace/name), publishes changed
 * users, and hands every resource's Ready verdict to the status writer, which writes only what
 * differs from the cached status and only on the replica holding the Lease.
 */

import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type { KubeConfig } from '@kubernetes/client-node';
import { passwordHashAlgorithm } from '../auth/password.ts';
import type { AccessCheck } from '../storage/s3/client-pool.ts';
import { parseSftpUser, type ParseSftpUserResult, type PasswordSecretRef } from '../users/sftp-user.ts';
import { sameUser, type User, type UserSource } from '../users/user.ts';
import { createKubeApi, secretsPath, sftpUsersPath, type KubeApi } from './api.ts';
import { ResilientInformer, type InformerLogger } from './informer.ts';
import { LeaseElector, type LeaseClock } from './lease.ts';
import { StatusWriter } from './status-writer.ts';
import {
  createdAt,
  objectKey,
  type DesiredReady,
  type SecretResource,
  type SftpUserResource,
} from './sftp-user-resource.ts';

/** Name of the Lease that picks the status writer. */
export const LEASE_NAME = 's3sftp-status-writer';

/** The API server limits a condition message to 32768 characters; keep them readable. */
const MAX_MESSAGE = 4096;

export interface KubeUserSourceOptions {
  kubeConfig: KubeConfig;
  /** "" for every namespace. */
  namespace: string;
  /** The server's s3.bucket, for users that name none. */
  defaultBucket: string;
  log: InformerLogger;
  /** Namespace of the status-writer Lease; "" disables status writing. */
  leaseNamespace: string;
  /** Unique per replica; default: host name and a random suffix. */
  identity?: string;
  /** Replaces the client-node calls (tests). */
  api?: KubeApi;
  lease?: { durationMs?: number; renewIntervalMs?: number; renewDeadlineMs?: number; clock?: LeaseClock };
  /** Informer restart back-off and reconnect cap (tests make them short). */
  informer?: { restartDelayMs?: { min: number; max: number }; maxReconnectDelayMs?: number };
  statusRetryDelayMs?: { min: number; max: number };
  now?: () => Date;
  /**
   * Checks that a loaded user can reach its storage (role assumable, bucket listable). Runs on
   * the status-writing replica only, once per spec and again every `accessRecheckMs` while it
   * fails; a failure shows as Ready=False with the check's reason. The user stays loaded, so a
   * fixed trust policy needs no edit of the resource.
   */
  checkAccess?: (user: User) => Promise<AccessResult>;
  accessRecheckMs?: number;
  /** Told when this replica starts or stops holding the Lease (leader-only work, src/leader-only.ts). */
  onLeadingChange?: (leading: boolean) => void;
  /** Every rebuild's Ready verdicts, on the leader only (Kubernetes Events, src/kube/events.ts). */
  onVerdicts?: (verdicts: { resource: SftpUserResource; ready: DesiredReady }[]) => void;
}

type AccessResult = AccessCheck;

interface AccessState {
  /** The user fields the check depends on. */
  version: string;
  result?: AccessResult;
  checkedAt: number;
  running: boolean;
}

const DEFAULT_ACCESS_RECHECK_MS = 5 * 60_000;

interface Parsed {
  /** uid and generation (or resourceVersion) the result was computed from. */
  version: string;
  result: ParseSftpUserResult;
}

interface SecretState {
  informer: ResilientInformer<SecretResource>;
}

/**
 * The verdict for one resource in one rebuild: the user it yields (if any) and its Ready condition,
 * which is undefined while a Secret it needs is not listed yet.
 */
type Verdict = { user?: User; ready?: DesiredReady };

function truncate(message: string): string {
  return message.length > MAX_MESSAGE ? `${message.slice(0, MAX_MESSAGE - 3)}...` : message;
}

/** Users from SftpUser resources, kept current by watches; see the module comment. */
export class KubeUserSource implements UserSource {
  readonly #opts: KubeUserSourceOptions;
  readonly #api: KubeApi;
  readonly #log: InformerLogger;
  readonly #users: ResilientInformer<SftpUserResource>;
  readonly #secrets = new Map<string, SecretState>();
  readonly #parsed = new Map<string, Parsed>();
  readonly #listeners = new Set<(username: string) => void>();
  readonly #status: StatusWriter | undefined;
  readonly #elector: LeaseElector | undefined;
  #table = new Map<string, User>();
  /** Ready verdicts of the last rebuild, by resource key (for tests and logs). */
  #verdicts = new Map<string, DesiredReady>();
  #ready = false;
  #closed = false;
  #rebuildScheduled = false;
  #readyWaiters = new Set<() => void>();
  readonly #access = new Map<string, AccessState>();

  constructor(opts: KubeUserSourceOptions) {
    this.#opts = opts;
    this.#log = opts.log;
    this.#api = opts.api ?? createKubeApi(opts.kubeConfig);
    this.#users = new ResilientInformer<SftpUserResource>({
      kubeConfig: opts.kubeConfig,
      path: sftpUsersPath(opts.namespace),
      list: () => this.#api.listSftpUsers(opts.namespace),
      what: opts.namespace ? `SftpUsers in namespace ${opts.namespace}` : 'SftpUsers in every namespace',
      log: opts.log,
      onEvent: (event, obj) => {
        if (event === 'delete') this.#parsed.delete(objectKey(obj.metadata));
        else this.#status?.touch(objectKey(obj.metadata));
        this.#scheduleRebuild();
      },
      onStateChange: () => this.#scheduleRebuild(),
      ...opts.informer,
    });
    if (opts.leaseNamespace) {
      const status = new StatusWriter({
        patch: (ns, name, body) => this.#api.patchSftpUserStatus(ns, name, body),
        current: (key) => {
          const [ns = '', name = ''] = key.split('/');
          return this.#users.get(name, ns);
        },
        log: opts.log,
        now: opts.now,
        retryDelayMs: opts.statusRetryDelayMs,
      });
      this.#status = status;
      this.#elector = new LeaseElector({
        api: this.#api.lease(opts.leaseNamespace, LEASE_NAME),
        identity: opts.identity ?? `${hostname()}-${randomUUID().slice(0, 8)}`,
        log: opts.log,
        leaseDurationMs: opts.lease?.durationMs,
        renewIntervalMs: opts.lease?.renewIntervalMs,
        renewDeadlineMs: opts.lease?.renewDeadlineMs,
        clock: opts.lease?.clock,
        onLeadingChange: (leading) => {
          status.setActive(leading);
          this.#opts.onLeadingChange?.(leading);
          this.#scheduleRebuild();
        },
      });
    }
  }

  /** Starts the watches and the lease; returns at once (see `ready` and whenReady()). */
  start(): this {
    this.#users.start();
    this.#elector?.start();
    return this;
  }

  /** True once SftpUsers and the Secrets they reference have been listed and applied. */
  get ready(): boolean {
    return this.#ready;
  }

  /** Resolves when ready, or rejects after `timeoutMs`. */
  whenReady(timeoutMs: number): Promise<void> {
    if (this.#ready) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#readyWaiters.delete(done);
        reject(new Error(`SftpUsers were not listed within ${timeoutMs} ms`));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        resolve();
      };
      this.#readyWaiters.add(done);
    });
  }

  /** True while this replica holds the status-writer Lease. */
  get leading(): boolean {
    return this.#elector?.leading ?? false;
  }

  /** Status writes made by this replica (tests). */
  get statusWrites(): number {
    return this.#status?.writes ?? 0;
  }

  /** The Ready verdict of the last rebuild for "namespace/name" (tests, debugging). */
  verdict(key: string): DesiredReady | undefined {
    return this.#verdicts.get(key);
  }

  /** Resolves when no status write is queued or running. */
  statusIdle(): Promise<void> {
    return this.#status?.idle() ?? Promise.resolve();
  }

  get(username: string): User | undefined {
    return this.#table.get(username);
  }

  all(): User[] {
    return [...this.#table.values()];
  }

  onChange(listener: (username: string) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Stops watching and releases the lease (so another replica writes status at once). */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#status?.close();
    await Promise.all([
      this.#elector?.stop(),
      this.#users.stop(),
      ...[...this.#secrets.values()].map((s) => s.informer.stop()),
    ]);
    this.#secrets.clear();
    this.#listeners.clear();
  }

  #scheduleRebuild(): void {
    if (this.#rebuildScheduled || this.#closed) return;
    this.#rebuildScheduled = true;
    setImmediate(() => {
      this.#rebuildScheduled = false;
      if (this.#closed) return;
      try {
        this.#rebuild();
      } catch (err) {
        this.#log.error({ err }, 'rebuilding the user table from SftpUsers failed');
      }
    });
  }

  /**
   * The last access-check result for this resource's user, starting a check when there is
   * none for the current storage settings or a failed one is due again. Undefined until known.
   */
  #accessResult(key: string, user: User): AccessResult | undefined {
    const check = this.#opts.checkAccess;
    if (!check || !this.leading) return undefined;
    const { bucket, keyPrefix, roleArn, region, endpoint } = user.s3;
    const version = JSON.stringify([bucket, keyPrefix, roleArn, region, endpoint]);
    const now = Date.now();
    let state = this.#access.get(key);
    if (state?.version !== version) {
      state = { version, checkedAt: 0, running: false };
      this.#access.set(key, state);
    }
    const due = !state.result || (!state.result.ok && now - state.checkedAt >= (this.#opts.accessRecheckMs ?? DEFAULT_ACCESS_RECHECK_MS));
    if (due && !state.running) {
      const current = state;
      current.running = true;
      check(user)
        .catch((err: unknown): AccessResult => ({ ok: false, reason: 'StorageError', message: `access check failed: ${(err as Error).message}` }))
        .then((result) => {
          current.running = false;
          current.result = result;
          current.checkedAt = Date.now();
          if (!result.ok) {
            this.#log.warn({ resource: key, reason: result.reason }, result.message);
            const delay = this.#opts.accessRecheckMs ?? DEFAULT_ACCESS_RECHECK_MS;
            setTimeout(() => this.#scheduleRebuild(), delay + 10).unref();
          }
          this.#scheduleRebuild();
        });
    }
    return state.result;
  }

  #parse(resource: SftpUserResource): ParseSftpUserResult {
    const key = objectKey(resource.metadata);
    const m = resource.metadata;
    const version = `${m.uid ?? ''}:${m.generation ?? m.resourceVersion ?? ''}`;
    const cached = this.#parsed.get(key);
    if (cached?.version === version) return cached.result;
    const result = parseSftpUser(resource, { defaultBucket: this.#opts.defaultBucket, source: `kube ${key}` });
    this.#parsed.set(key, { version, result });
    return result;
  }

  #rebuild(): void {
    if (!this.#users.synced) return;
    const resources = [...this.#users.list()].sort(
      (a, b) => createdAt(a.metadata) - createdAt(b.metadata) || objectKey(a.metadata).localeCompare(objectKey(b.metadata)),
    );
    const parsed = resources.map((r) => ({ resource: r, key: objectKey(r.metadata), result: this.#parse(r) }));
    this.#syncSecretInformers(parsed);

    const verdicts = new Map<string, Verdict>();
    const owner = new Map<string, string>();
    for (const { resource, key, result } of parsed) {
      const generation = resource.metadata.generation ?? 0;
      const ready = (status: 'True' | 'False', reason: DesiredReady['reason'], message: string): DesiredReady => ({
        status,
        reason,
        message: truncate(message),
        observedGeneration: generation,
      });
      if ('error' in result) {
        verdicts.set(key, { ready: ready('False', 'InvalidSpec', result.error) });
        continue;
      }
      const username = result.user.username;
      const first = owner.get(username);
      if (first !== undefined) {
        verdicts.set(key, {
          ready: ready(
            'False',
            'UsernameConflict',
            `username ${username} is already used by SftpUser ${first}, which is older; set a different spec.username`,
          ),
        });
        continue;
      }
      owner.set(username, key);
      const resolved = this.#resolvePassword(resource, result.passwordSecretRef);
      if (resolved === undefined) {
        // Keep serving what this resource gave before until its Secrets are listed.
        const previous = this.#table.get(username);
        verdicts.set(key, { user: previous?.source === result.user.source ? previous : undefined });
        continue;
      }
      if ('reason' in resolved) {
        verdicts.set(key, { ready: ready('False', resolved.reason, resolved.message) });
        continue;
      }
      const user: User = resolved.hash === undefined ? result.user : Object.freeze({ ...result.user, passwordHash: resolved.hash });
      const notes = [...result.warnings.map((w) => `it ${w}`), ...(user.disabled ? ['it is disabled, so logins are refused'] : [])];
      const access = this.#accessResult(key, user);
      if (access && !access.ok) {
        verdicts.set(key, { user, ready: ready('False', access.reason, access.message) });
        continue;
      }
      verdicts.set(key, { user, ready: ready('True', 'Loaded', `loaded as user ${username}${notes.length ? `; ${notes.join('; ')}` : ''}`) });
    }

    const next = new Map<string, User>();
    for (const v of verdicts.values()) if (v.user) next.set(v.user.username, v.user);
    this.#publish(next);

    const keys = new Set(parsed.map((p) => p.key));
    for (const key of this.#verdicts.keys()) if (!keys.has(key)) this.#status?.want(key, undefined);
    this.#verdicts = new Map();
    for (const [key, v] of verdicts) {
      if (v.ready) this.#verdicts.set(key, v.ready);
      this.#status?.want(key, v.ready);
    }
    for (const key of this.#parsed.keys()) if (!keys.has(key)) this.#parsed.delete(key);
    for (const key of this.#access.keys()) if (!keys.has(key)) this.#access.delete(key);
    if (this.leading && this.#opts.onVerdicts) {
      this.#opts.onVerdicts(parsed.flatMap(({ resource, key }) => {
        const ready = verdicts.get(key)?.ready;
        return ready ? [{ resource, ready }] : [];
      }));
    }

    const pending = [...verdicts.values()].filter((v) => v.ready === undefined).length;
    if (!this.#ready && pending === 0) {
      this.#ready = true;
      this.#log.info({ users: next.size, resources: resources.length }, 'SftpUsers loaded');
      for (const wake of this.#readyWaiters) wake();
      this.#readyWaiters.clear();
    }
  }

  /**
   * The password hash from the user's Secret: `{ hash }` (undefined without a reference), a
   * reason why it cannot be had, or undefined while the namespace's Secrets are not listed yet.
   */
  #resolvePassword(
    resource: SftpUserResource,
    ref: PasswordSecretRef | undefined,
  ): { hash: string | undefined } | { reason: DesiredReady['reason']; message: string } | undefined {
    if (!ref) return { hash: undefined };
    const namespace = resource.metadata.namespace ?? '';
    const where = `Secret ${ref.name} in namespace ${namespace}`;
    const state = this.#secrets.get(namespace);
    if (!state) return undefined;
    const { informer } = state;
    if (!informer.synced) {
      const status = informer.lastError?.status;
      if (status === 401 || status === 403) {
        return {
          reason: 'SecretUnreadable',
          message: `the server may not list Secrets in namespace ${namespace} (HTTP ${status}); grant its service account get, list and watch on secrets there`,
        };
      }
      return undefined;
    }
    const secret = informer.get(ref.name, namespace);
    if (!secret) {
      return {
        reason: 'SecretNotFound',
        message: `${where} does not exist; create it with the password hash under key ${ref.key}, e.g. kubectl create secret generic ${ref.name} --from-literal=${ref.key}="$(s3sftp hash-password)"`,
      };
    }
    const encoded = secret.data?.[ref.key];
    if (encoded === undefined) {
      const keys = Object.keys(secret.data ?? {});
      return {
        reason: 'SecretKeyMissing',
        message: `${where} has no key ${ref.key}${keys.length ? ` (it has ${keys.join(', ')})` : ' (it is empty)'}; add the password hash under ${ref.key}, or set spec.passwordSecretRef.key`,
      };
    }
    // A hash written from a file often ends in a newline.
    const hash = Buffer.from(encoded, 'base64').toString('utf8').trim();
    if (passwordHashAlgorithm(hash) === undefined) {
      // Never echo it: it may be a plain-text password put there by mistake.
      return {
        reason: 'InvalidSecret',
        message: `key ${ref.key} of ${where} is not a bcrypt or argon2id hash; store the output of \`s3sftp hash-password\`, not the password`,
      };
    }
    return { hash };
  }

  /** Starts a Secret informer for each namespace with a password reference, and stops unneeded ones. */
  #syncSecretInformers(parsed: { resource: SftpUserResource; result: ParseSftpUserResult }[]): void {
    const needed = new Set<string>();
    for (const { resource, result } of parsed) {
      if (!('error' in result) && result.passwordSecretRef) needed.add(resource.metadata.namespace ?? '');
    }
    for (const [namespace, state] of this.#secrets) {
      if (needed.has(namespace)) continue;
      this.#secrets.delete(namespace);
      void state.informer.stop();
    }
    for (const namespace of needed) {
      if (this.#secrets.has(namespace)) continue;
      const informer = new ResilientInformer<SecretResource>({
        kubeConfig: this.#opts.kubeConfig,
        path: secretsPath(namespace),
        list: () => this.#api.listSecrets(namespace),
        what: `Secrets in namespace ${namespace}`,
        log: this.#log,
        onEvent: () => this.#scheduleRebuild(),
        onStateChange: () => this.#scheduleRebuild(),
        ...this.#opts.informer,
      });
      this.#secrets.set(namespace, { informer });
      informer.start();
    }
  }

  #publish(next: Map<string, User>): void {
    const changed: { username: string; what: string; source?: string }[] = [];
    for (const [username, user] of next) {
      const old = this.#table.get(username);
      if (!old) changed.push({ username, what: 'added', source: user.source });
      else if (!sameUser(old, user)) changed.push({ username, what: 'changed', source: user.source });
    }
    for (const [username, user] of this.#table) {
      if (!next.has(username)) changed.push({ username, what: 'removed', source: user.source });
    }
    this.#table = next;
    for (const { username, what, source } of changed) {
      if (this.#ready) this.#log.info({ username, source }, `user ${username} ${what}`);
      for (const listener of this.#listeners) {
        try {
          listener(username);
        } catch (err) {
          this.#log.error({ err, username }, 'a users onChange listener threw');
        }
      }
    }
  }
}
