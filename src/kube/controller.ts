/**
 * SftpUser resources from the Kubernetes API as a UserSource. This module only wires the parts:
 * - an informer on SftpUsers (cluster-wide, or one namespace), informer.ts;
 * - Secret informers for the namespaces whose users reference a password Secret, secret-informers.ts;
 * - the user table, kept one resource at a time (IncrementalUserTable, user-table.ts);
 * - storage access checks with their own timers, access-checks.ts;
 * - the Ready condition writer, status-writer.ts, active on the replica holding the Lease, lease.ts.
 *
 * Every event tells the table which resource (or Secret) changed and schedules one flush on the
 * next turn of the event loop, so a burst of events (a relist after 410) costs one flush. A flush
 * re-judges only the resources those events can affect (the same username, the same Secret),
 * publishes the users that changed and hands their Ready verdicts to the status writer, which
 * writes only what differs from the cached status and only on the replica holding the Lease. With
 * 10,000 users an update costs what it costs with ten (docs/adr/0008-kubernetes-users.md).
 * Each resource is validated once per generation. When the SftpUser informer's state changes
 * (first list, relist, recovery) the table is reconciled with its whole cache once.
 */

import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type { KubeConfig } from '@kubernetes/client-node';
import type { AccessCheck } from '../users/access.ts';
import { validateSftpUser, type ParseSftpUserResult } from '../users/sftp-user.ts';
import { PublishedUsers } from '../users/published-users.ts';
import type { User, UserSource } from '../users/user.ts';
import { AccessChecks } from './access-checks.ts';
import { createKubeApi, sftpUsersPath, type KubeApi } from './api.ts';
import { ResilientInformer, type InformerLogger } from './informer.ts';
import { LeaseElector, type LeaseClock } from './lease.ts';
import { SecretInformers } from './secret-informers.ts';
import { StatusWriter } from './status-writer.ts';
import { objectKey, type DesiredReady, type SftpUserResource, type StatusUsage } from './sftp-user-resource.ts';
import { IncrementalUserTable } from './user-table.ts';

/** Name of the Lease that picks the status writer. */
export const LEASE_NAME = 's3sftp-status-writer';

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
  checkAccess?: (user: User) => Promise<AccessCheck>;
  accessRecheckMs?: number;
  /** Told when this replica starts or stops holding the Lease (leader-only work, src/leader-only.ts). */
  onLeadingChange?: (leading: boolean) => void;
  /**
   * Ready verdicts on the leader only (Kubernetes Events, src/kube/events.ts): all of them once
   * it starts leading, then with `changes` only those that changed and the resources removed.
   */
  onVerdicts?: (verdicts: { resource: SftpUserResource; ready: DesiredReady }[], changes?: { removed: SftpUserResource[] }) => void;
  /**
   * Quota usage for status.usage: the count for a username, and a subscription to new counts
   * (after each scan, not each upload, so status writes stay few).
   */
  usage?: { usageOf(username: string): StatusUsage | undefined; onScanned(listener: () => void): void };
}

interface Parsed {
  /** uid and generation (or resourceVersion) the result was computed from. */
  version: string;
  result: ParseSftpUserResult;
}

/** Users from SftpUser resources, kept current by watches; see the module comment. */
export class KubeUserSource implements UserSource {
  readonly #opts: KubeUserSourceOptions;
  readonly #api: KubeApi;
  readonly #log: InformerLogger;
  readonly #users: ResilientInformer<SftpUserResource>;
  readonly #secrets: SecretInformers;
  readonly #parsed = new Map<string, Parsed>();
  readonly #status: StatusWriter | undefined;
  readonly #elector: LeaseElector | undefined;
  readonly #table: PublishedUsers;
  readonly #incremental = new IncrementalUserTable();
  /** Resources removed since the last flush, for the Events recorder. */
  #removed: SftpUserResource[] = [];
  /** The next flush hands every verdict to onVerdicts (this replica just started leading). */
  #allVerdictsNext = true;
  #ready = false;
  #closed = false;
  #rebuildScheduled = false;
  #readyWaiters = new Set<() => void>();
  readonly #access: AccessChecks | undefined;

  constructor(opts: KubeUserSourceOptions) {
    this.#opts = opts;
    this.#log = opts.log;
    this.#api = opts.api ?? createKubeApi(opts.kubeConfig);
    this.#table = new PublishedUsers(opts.log);
    this.#secrets = new SecretInformers({
      kubeConfig: opts.kubeConfig,
      api: this.#api,
      log: opts.log,
      onChange: (namespace, name) => {
        if (name === undefined) this.#incremental.namespaceChanged(namespace);
        else this.#incremental.secretChanged(namespace, name);
        this.#scheduleRebuild();
      },
      informer: opts.informer,
    });
    // A new count for a user with a quota: write it to their status.usage.
    opts.usage?.onScanned(() => {
      for (const key of this.#incremental.keys()) {
        const parsed = this.#parsed.get(key)?.result;
        if (parsed && 'user' in parsed && parsed.user.quota) this.#incremental.touch(key);
      }
      this.#scheduleRebuild();
    });
    this.#access = opts.checkAccess
      ? new AccessChecks({ check: opts.checkAccess, onResult: (key) => {
          this.#incremental.touch(key);
          this.#scheduleRebuild();
        }, log: opts.log, recheckMs: opts.accessRecheckMs })
      : undefined;
    this.#users = new ResilientInformer<SftpUserResource>({
      kubeConfig: opts.kubeConfig,
      path: sftpUsersPath(opts.namespace),
      list: () => this.#api.listSftpUsers(opts.namespace),
      what: opts.namespace ? `SftpUsers in namespace ${opts.namespace}` : 'SftpUsers in every namespace',
      log: opts.log,
      onEvent: (event, obj) => {
        const key = objectKey(obj.metadata);
        if (event === 'delete') {
          this.#forget(key);
        } else {
          this.#status?.touch(key);
          this.#incremental.upsert(obj, this.#parse(obj));
        }
        this.#scheduleRebuild();
      },
      onStateChange: () => {
        this.#resync();
        this.#scheduleRebuild();
      },
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
          // Access checks run on the leader only, so every verdict may change.
          this.#incremental.touchAll();
          this.#allVerdictsNext = true;
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
    return this.#incremental.verdicts.get(key)?.ready;
  }

  // get/all/onChange delegate to PublishedUsers, as DirectorySource's do: a deliberate repeat of
  // three one-line methods, so each source implements UserSource itself.
  get(username: string): User | undefined {
    return this.#table.get(username);
  }

  all(): User[] {
    return this.#table.all();
  }

  onChange(listener: (username: string) => void): () => void {
    return this.#table.onChange(listener);
  }

  /** Stops watching and releases the lease (so another replica writes status at once). */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#status?.close();
    this.#access?.close();
    await Promise.all([this.#elector?.stop(), this.#users.stop(), this.#secrets.stop()]);
    this.#table.close();
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

  #parse(resource: SftpUserResource): ParseSftpUserResult {
    const key = objectKey(resource.metadata);
    const m = resource.metadata;
    const version = `${m.uid ?? ''}:${m.generation ?? m.resourceVersion ?? ''}`;
    const cached = this.#parsed.get(key);
    if (cached?.version === version) return cached.result;
    const result = validateSftpUser(resource, { defaultBucket: this.#opts.defaultBucket, source: `kube ${key}` });
    this.#parsed.set(key, { version, result });
    return result;
  }

  /** A resource is gone: from the table, the parse cache and the access checks. */
  #forget(key: string): void {
    const resource = this.#incremental.resource(key);
    if (resource) this.#removed.push(resource);
    this.#incremental.remove(key);
    this.#parsed.delete(key);
    this.#access?.forget(key);
  }

  /** Reconciles the table with the informer's whole cache (first list, relist, recovery). */
  #resync(): void {
    if (!this.#users.synced) return;
    const resources = this.#users.list();
    const keys = new Set<string>();
    for (const resource of resources) {
      const key = objectKey(resource.metadata);
      keys.add(key);
      if (this.#incremental.resource(key) !== resource) this.#incremental.upsert(resource, this.#parse(resource));
    }
    for (const key of [...this.#incremental.keys()]) if (!keys.has(key)) this.#forget(key);
  }

  #rebuild(): void {
    if (!this.#users.synced) return;
    this.#secrets.watch(this.#incremental.namespacesWithSecretRefs());
    const changes = this.#incremental.flush({
      secrets: this.#secrets.view(),
      // Only the status-writing replica checks access: the result is for the status.
      access: (key, user) => (this.leading ? this.#access?.result(key, user) : undefined),
    });
    // Listeners hear of every change; the first load is not logged user by user.
    this.#table.apply(changes.users, { notify: true, log: this.#ready });

    const changed: { resource: SftpUserResource; ready: DesiredReady }[] = [];
    for (const [key, v] of changes.verdicts) {
      const resource = this.#incremental.resource(key);
      if (!v || !resource) {
        this.#status?.want(key, undefined);
        continue;
      }
      const parsed = this.#parsed.get(key)?.result;
      const username = this.#opts.usage && parsed && 'user' in parsed && parsed.user.quota ? parsed.user.username : undefined;
      const usage = username !== undefined && v.ready?.status === 'True' ? this.#opts.usage?.usageOf(username) : undefined;
      this.#status?.want(key, v.ready && usage ? { ...v.ready, usage } : v.ready);
      if (v.ready) changed.push({ resource, ready: v.ready });
    }
    const removed = this.#removed;
    this.#removed = [];
    if (this.leading && this.#opts.onVerdicts) {
      if (this.#allVerdictsNext) {
        const all: { resource: SftpUserResource; ready: DesiredReady }[] = [];
        for (const [key, v] of this.#incremental.verdicts) {
          const resource = this.#incremental.resource(key);
          if (resource && v.ready) all.push({ resource, ready: v.ready });
        }
        this.#opts.onVerdicts(all);
      } else if (changed.length || removed.length) {
        this.#opts.onVerdicts(changed, { removed });
      }
      this.#allVerdictsNext = false;
    }

    if (!this.#ready && this.#incremental.pending === 0) {
      this.#ready = true;
      this.#log.info({ users: this.#incremental.users.size, resources: this.#incremental.verdicts.size }, 'SftpUsers loaded');
      for (const wake of this.#readyWaiters) wake();
      this.#readyWaiters.clear();
    }
  }
}
