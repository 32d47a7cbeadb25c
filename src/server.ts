/**
 * Wires the pieces together. This is the only module that creates concrete
 * classes (S3 client and storage, user sources, SSH server); everything else
 * receives its dependencies.
 */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { hostname } from 'node:os';
import type { Logger } from 'pino';
import { Registry } from 'prom-client';
import type { Config } from './config/types.ts';
import type { User, UserSource } from './users/user.ts';
import { checkBucket } from './storage/s3/client.ts';
import { ClientPool } from './storage/s3/client-pool.ts';
import { checkUserAndFolders, folderLocations, type AccessCheck, type AccessUser } from './users/access.ts';
import { S3Storage } from './storage/s3/s3-storage.ts';
import type { Clock } from './storage/s3/upload-pipeline.ts';
import { MountedStorage } from './storage/mounts.ts';
import { MtimeCache } from './storage/s3/mtime-cache.ts';
import { READ_AHEAD_BYTES, ReadAheadBudget } from './storage/s3/read-ahead.ts';
import { ListingIndexStore } from './storage/s3/listing-index.ts';
import { ChangeLog, DirectoryPeers } from './storage/s3/directory-memory.ts';
import { DirectoryHints } from './storage/s3/directory-hints.ts';
import { UploadRegistry } from './storage/s3/upload-registry.ts';
import { TempUploads } from './storage/s3/temp-uploads.ts';
import { effectiveSse, serverSse, type SseSettings, withEncryption } from './storage/s3/encryption.ts';
import { loadCrdSchema } from './users/crd-schema.ts';
import { DirectorySource } from './users/directory-source.ts';
import { EmptySource } from './users/empty-source.ts';
import { MergedSource, type NamedSource } from './users/merged-source.ts';
import { loadHostKeys } from './ssh/host-keys.ts';
import { SshServer } from './ssh/server.ts';
import { Metrics } from './metrics/metrics.ts';
import { startMetricsListener } from './metrics/http.ts';
import { instrumentS3Client } from './metrics/s3-requests.ts';
import { UploadJanitor } from './storage/s3/janitor.ts';
import { hardening } from './ssh/hardening.ts';
import { LeaderOnly } from './leader-only.ts';
import { ShortenableDelay } from './shortenable-delay.ts';
import { UsageTrackers } from './storage/quota.ts';
import { scanPrefixUsage } from './storage/s3/usage.ts';
import { BandwidthLimiter } from './session/bandwidth.ts';
import { registerQuotaMetrics } from './metrics/quota.ts';
import { withUserLimits } from './session/user-limits.ts';
import { FlowControl } from './sftp/flow-control.ts';
import { UploadBudget } from './storage/upload-budget.ts';
import { RequestLimiter } from './storage/s3/request-limiter.ts';
import { limitMetrics } from './metrics/limits.ts';
import { listingMetrics } from './metrics/listing.ts';

/**
 * A start-up failure, said in one line that names the cause and the fix. `configuration` failures
 * (a setting, a host key, the users directory, the bucket or credentials it names) exit 2; the rest
 * (a port in use, S3 or Kubernetes unreachable) exit 1, since the same settings may work later.
 */
export class StartupError extends Error {
  override name = 'StartupError';
  readonly exitCode: 1 | 2;
  constructor(message: string, options: { cause?: unknown; configuration: boolean }) {
    super(message, { cause: options.cause });
    this.exitCode = options.configuration ? 2 : 1;
  }
}

/** What was started so far, closed in reverse order when a later step fails. */
class StartedParts {
  readonly #parts: { what: string; close: () => unknown }[] = [];

  add(what: string, close: () => unknown): void {
    this.#parts.push({ what, close });
  }

  async closeAll(log: Logger): Promise<void> {
    for (const { what, close } of this.#parts.reverse()) {
      try {
        log.debug({ part: what }, `closing ${what} after a failed start-up`);
        await close();
      } catch (err) {
        log.debug({ err, what }, 'closing after a failed start-up failed');
      }
    }
    this.#parts.length = 0;
  }
}

export interface RunningServer {
  ssh: AddressInfo;
  /** The /metrics, /healthz, /readyz listener. */
  metrics: AddressInfo;
  users: UserSource;
  /** Whether a user can reach their storage (role assumable, bucket listable); for SftpUser status. */
  checkUserAccess(user: User): Promise<AccessCheck>;
  /** Why /readyz answers 503, or undefined when ready. */
  notReadyReason(): string | undefined;
  /**
   * Graceful stop (SIGTERM): not ready from now on, no new connections;
   * uploads in flight get `graceMs` to finish, then the rest are aborted.
   * Follow with close(). Calling it again can only shorten the grace period.
   */
  drain(graceMs: number): Promise<void>;
  close(): Promise<void>;
}

/** What tests may inject; production passes nothing. */
export interface StartOptions {
  /** The clock of each session's S3 storage (its 5 s memories, docs/adr/0019); default the system clock. */
  storageClock?: Clock;
}

export async function startServer(config: Config, log: Logger, options: StartOptions = {}): Promise<RunningServer> {
  const started = new StartedParts();
  try {
    return await start(config, log, started, options);
  } catch (err) {
    await started.closeAll(log);
    throw err;
  }
}

async function start(config: Config, log: Logger, started: StartedParts, options: StartOptions): Promise<RunningServer> {
  const registry = new Registry();
  const metrics = new Metrics({ registry, perUserLabels: config.metrics.perUserLabels, perUserLabelLimit: config.metrics.perUserLabelLimit });
  const state = { bucketChecked: false, users: undefined as UserSource | undefined, draining: false };
  const notReadyReason = (): string | undefined => {
    if (state.draining) return 'shutting down';
    if (!state.bucketChecked) return 'checking the bucket';
    if (!state.users?.ready) return 'loading users';
    return undefined;
  };
  // Before anything listens: a bad key is a configuration error, found without side effects.
  const hostKeys = await loadHostKeys(config.hostKeys, config.dataDir).catch((err: unknown) => {
    throw hostKeyError(err, config);
  });
  // The schema users are checked against, compiled before any network work (it takes a moment).
  if (config.users.directory || config.users.kubernetes.enabled) {
    try {
      loadCrdSchema();
    } catch (err) {
      throw new StartupError(`cannot load the SftpUser schema that users are checked against: ${(err as Error).message}; the installation is incomplete (crds/ must sit beside src/ or dist/)`, {
        cause: err,
        configuration: false,
      });
    }
  }
  // Then the probes' listener, so they are answered while the bucket is checked and users load.
  const { host: metricsHost, port: metricsPort } = config.metrics.listen;
  const http = await startMetricsListener({
    registry,
    host: metricsHost,
    port: metricsPort,
    notReadyReason,
    log: log.child({ component: 'metrics' }),
  }).catch((err: unknown) => {
    throw listenError(err, `${metricsHost}:${metricsPort}`, 'metrics.listen', 'S3SFTP_METRICS_LISTEN');
  });
  started.add('metrics listener', () => http.close());
  // One client per (role, region, endpoint); `client` is the server's own.
  const clients = new ClientPool({
    config: config.s3,
    log,
    onClient: (c) => instrumentS3Client(c, (operation, outcome, seconds) => metrics.s3Request(operation, outcome, seconds)),
  });
  started.add('S3 clients', () => clients.destroy());
  const client = clients.default;
  try {
    await checkBucket(client, config.s3.bucket);
  } catch (err) {
    throw bucketError(err, config.s3.bucket);
  }
  state.bucketChecked = true;
  // spec.quota usage (counted at a user's first session), also for the SftpUser status.
  const quotas = new UsageTrackers({ ...config.quota, log: log.child({ component: 'quota' }) });
  started.add('quota trackers', () => quotas.stop());
  // Until the janitor exists, remember the latest verdict of the Lease.
  let leading = !config.users.kubernetes.enabled;
  let janitor: LeaderOnly | undefined;
  const onLeadingChange = (now: boolean) => {
    leading = now;
    janitor?.setLeading(now);
  };
  const users = await openUsers(config, log, (user) => checkUserAndFolders(clients, user), onLeadingChange, quotas);
  started.add('user sources', () => users.close());
  state.users = users;
  metrics.countUsersWith(() => users.all().length);
  // Server-side encryption (storage/s3/encryption.ts): the SSE-C key file is read once, here.
  let sse: SseSettings;
  try {
    sse = serverSse(config.s3.sse, (path) => readFileSync(path));
  } catch (err) {
    throw new StartupError(`${(err as Error).message}; set s3.sse.customerKeyFile to a file holding a base64 32-byte key`, { cause: err, configuration: true });
  }
  const uploads = new UploadRegistry();
  // Uploads through a temporary name (storage/s3/temp-uploads.ts); parked ones are stored before the clients close.
  const tempSuffixes = config.uploads.tempSuffixes ?? [];
  const tempWindowMs = config.uploads.tempRenameWindowMs ?? 0;
  const tempUploads =
    tempSuffixes.length > 0 && tempWindowMs > 0
      ? new TempUploads({ suffixes: tempSuffixes, windowMs: tempWindowMs, log: log.child({ component: 'temp-uploads' }) })
      : undefined;
  if (tempUploads) started.add('parked uploads', () => tempUploads.flush());
  const mtimeCache = new MtimeCache();
  // Stored mtimes of listed directories, kept in the bucket for every replica (docs/adr/0020).
  const listingIndex = config.listing.index ? new ListingIndexStore({ log: log.child({ component: 'listing-index' }) }) : undefined;
  listingMetrics(registry, mtimeCache, listingIndex);
  // Changes made through this server, so every session's held directory listings see them (docs/adr/0019).
  const changeLog = new ChangeLog();
  // Held listings of one user's sessions answer each other (rclone lists on one connection, removes on others).
  const directoryPeers = new DirectoryPeers();
  const directoryHints = new DirectoryHints();
  const storeScope = (location: AccessUser) => [location.s3.endpoint ?? '', location.s3.region ?? '', location.s3.roleArn ?? ''].join('|');
  // Small files fetched before a session reading a directory in order opens them (docs/adr/0021).
  const readAheadBudget = new ReadAheadBudget(READ_AHEAD_BYTES);
  // Bounded memory and fair S3 access (docs/security.md): every upload's part buffers are reserved from one budget.
  const uploadBudget = new UploadBudget(config.sftp.uploadMemoryBudget);
  const limitsMetrics = limitMetrics(registry, uploadBudget, readAheadBudget);
  const flowControl = new FlowControl({ maxQueuedWriteBytes: config.sftp.maxQueuedWriteBytes, events: limitsMetrics.flow });
  const requestLimiter = new RequestLimiter({
    perSession: config.s3.maxRequestsPerSession,
    perUser: config.s3.maxRequestsPerUser,
    onWait: limitsMetrics.requestWaited,
  });
  const uploadEvents = metrics.uploadEvents();
  // The bandwidth buckets (server-wide and per user) and the quota gauges.
  registerQuotaMetrics(registry, quotas, config.metrics.perUserLabels);
  const bandwidth = new BandwidthLimiter({ server: config.bandwidth });
  // Connection limits, defender, password pool and algorithms (docs/security.md).
  const guard = hardening(config, users, registry, log);
  const ssh = new SshServer({
    hostKeys,
    users,
    setstatMode: config.setstatMode,
    log,
    ...guard.options,
    flowControl,
    events: { ...metrics.serverEvents(), ...guard.events },
    proxyTrustedCIDRs: config.proxyProtocol.trustedCIDRs,
    keepalive: config.keepalive,
    storageFor: (user) => {
      const storageLog = log.child({ user: user.username, component: 'storage' });
      // The home, and one storage per virtual folder (its own bucket, prefix, role and region).
      const s3Storage = (location: AccessUser, scope = storeScope(location)) => new S3Storage({
        // The user's encryption applies to the home and to every folder.
        client: withEncryption(clients.forSession(location, storageLog), effectiveSse(sse, user.s3.sse, (path) => readFileSync(path))),
        bucket: location.s3.bucket,
        // What one user's session learnt of an object answers another's only through the same store and role.
        storeScope: scope,
        endpoint: location.s3.endpoint ?? '',
        directoryPeers: directoryPeers.group([user.username, scope, location.s3.bucket].join('\u0000')),
        keyPrefix: location.s3.keyPrefix,
        config: location.s3.storageClass ? { ...config.s3, storageClass: location.s3.storageClass } : config.s3,
        renameMode: config.renameMode,
        renameMaxObjects: config.renameMaxObjects,
        uploads,
        events: uploadEvents,
        uploadBudget,
        log: storageLog,
        resume: config.uploads.resume,
        storeChecksums: config.uploads.checksums,
        listingMtime: config.listing.mtime,
        ...(tempUploads ? { tempUploads } : {}),
        ...(options.storageClock ? { clock: options.storageClock } : {}),
        mtimeCache,
        directoryHints,
        changeLog,
        readAheadBudget,
        ...(listingIndex ? { listingIndex } : {}),
      });
      const home = s3Storage(user);
      const storage = user.folders?.length
        ? new MountedStorage({
            home,
            mounts: user.folders.map((f) => ({ path: f.path, storage: s3Storage({ username: user.username, s3: f.s3 }) })),
            homeListable: user.permissions.has('list'),
            log: storageLog,
          })
        : home;
      // Quota usage is scanned from the home prefix; writes into folders are counted as they happen.
      const scan = () => scanPrefixUsage(clients.forSession(user, storageLog), user.s3.bucket, user.s3.keyPrefix);
      // Called once per session: each gets its own cap on S3 requests, under its user's (request-limiter.ts).
      return requestLimiter.forSession(user.username, withUserLimits(storage, user, { quotas, bandwidth, scan }));
    },
  });
  started.add('SSH server', () => ssh.close());
  const address = await ssh.listen(config.listen.port, config.listen.host).catch((err: unknown) => {
    throw listenError(err, `${config.listen.host}:${config.listen.port}`, 'listen', 'S3SFTP_LISTEN');
  });
  // One replica cleans up: the one holding the status-writer Lease (every one, alone, outside Kubernetes).
  janitor =
    config.s3.abandonedUploadAgeMs > 0
      ? new LeaderOnly({
          name: 'abandoned-upload janitor',
          log: log.child({ component: 'janitor' }),
          make: () =>
            new UploadJanitor({
              client,
              locations: () => users.all().flatMap((u): AccessUser[] => [u, ...folderLocations(u)]),
              clientFor: (user) => clients.clientFor(user),
              maxAgeMs: config.s3.abandonedUploadAgeMs,
              isLive: (bucket, key) => uploads.get(bucket, key) !== undefined,
              log: log.child({ component: 'janitor' }),
            }),
        })
      : undefined;
  janitor?.setLeading(leading);
  const shutdownDelay = new ShortenableDelay();
  log.info(
    {
      address: `${address.address}:${address.port}`,
      metrics: `${http.address.address}:${http.address.port}`,
      bucket: config.s3.bucket,
      users: users.all().length,
    },
    's3sftp listening',
  );
  return {
    ssh: address,
    metrics: http.address,
    users,
    checkUserAccess: (user) => checkUserAndFolders(clients, user),
    notReadyReason,
    async drain(graceMs) {
      state.draining = true;
      // /readyz answers 503 from now on; keep accepting until the balancer has noticed.
      await shutdownDelay.wait(graceMs === 0 ? 0 : config.shutdownDelayMs);
      await ssh.drain(graceMs);
    },
    async close() {
      state.draining = true;
      await janitor?.close();
      quotas.stop();
      await ssh.close();
      await tempUploads?.flush();
      await users.close();
      await http.close();
      clients.destroy();
    },
  };
}

/**
 * users.directory and users.kubernetes, merged when both are set (files win on duplicate names).
 * client-node is loaded only when users.kubernetes is enabled.
 */
async function openUsers(
  config: Config,
  log: Logger,
  checkAccess: (user: User) => Promise<AccessCheck>,
  onLeadingChange: (leading: boolean) => void,
  usage?: UsageTrackers,
): Promise<UserSource> {
  const sources: NamedSource[] = [];
  const { directory, kubernetes } = config.users;
  if (directory) {
    const source = await DirectorySource.open({ directory, defaultBucket: config.s3.bucket, log: log.child({ component: 'users' }) }).catch(
      (err: unknown) => {
        throw new StartupError(`${(err as Error).message}; create it, or set users.directory (S3SFTP_USERS_DIRECTORY) to the directory of SftpUser files`, {
          cause: err,
          configuration: true,
        });
      },
    );
    sources.push({ name: 'users.directory', source });
  }
  if (kubernetes.enabled) {
    try {
      const { loadKubeConfig, contextNamespace, createKubeApi } = await import('./kube/api.ts');
      const { probeKubernetes } = await import('./kube/probe.ts');
      const { KubeUserSource } = await import('./kube/controller.ts');
      const { EventRecorder, kubeEventSink } = await import('./kube/events.ts');
      let kubeConfig;
      try {
        kubeConfig = loadKubeConfig(kubernetes.kubeconfig);
      } catch (err) {
        throw new StartupError(
          `users.kubernetes: cannot load the Kubernetes client configuration (${(err as Error).message}); set users.kubernetes.kubeconfig or KUBECONFIG, or run in a pod with a service account`,
          { cause: err, configuration: true },
        );
      }
      const leaseNamespace = kubernetes.leaseNamespace || contextNamespace(kubeConfig) || kubernetes.namespace;
      if (!leaseNamespace) {
        throw new StartupError(
          'users.kubernetes.leaseNamespace: not set, POD_NAMESPACE is empty and neither the kubeconfig context nor users.kubernetes.namespace names a namespace; set one of them (the namespace for the status-writer Lease)',
          { configuration: true },
        );
      }
      const api = createKubeApi(kubeConfig);
      const unusable = await probeKubernetes(api, kubernetes.namespace, kubeConfig.getCurrentCluster()?.server ?? 'the API server');
      if (unusable) throw new StartupError(`users.kubernetes: ${unusable}`, { configuration: false });
      const identity = `${hostname()}-${randomUUID().slice(0, 8)}`;
      const kubeLog = log.child({ component: 'kube' });
      const events = new EventRecorder({ sink: kubeEventSink(kubeConfig), instance: identity, log: kubeLog });
      const source = new KubeUserSource({
        kubeConfig,
        api,
        identity,
        onVerdicts: (verdicts, changes) => events.observe(verdicts, changes),
        namespace: kubernetes.namespace,
        defaultBucket: config.s3.bucket,
        leaseNamespace,
        lease: { durationMs: kubernetes.leaseDurationMs, renewIntervalMs: kubernetes.leaseRenewIntervalMs },
        onLeadingChange,
        checkAccess,
        ...(usage ? { usage } : {}),
        log: kubeLog,
      }).start();
      sources.push({ name: 'users.kubernetes', source });
    } catch (err) {
      await Promise.all(sources.map(({ source }) => source.close()));
      throw err;
    }
  }
  const [only] = sources;
  if (!only) {
    log.warn('no user source configured (users.directory is empty and users.kubernetes.enabled is false): nobody can log in');
    return new EmptySource();
  }
  return sources.length === 1 ? only.source : new MergedSource(sources, log.child({ component: 'users' }));
}

function hostKeyError(err: unknown, config: Config): StartupError {
  const e = err as NodeJS.ErrnoException;
  const which = config.hostKeys.length > 0 ? 'hostKeys (S3SFTP_HOSTKEYS)' : `dataDir ${config.dataDir} (S3SFTP_DATADIR)`;
  const why =
    e.code === 'ENOENT' ? `${e.path ?? 'a host key'} does not exist`
    : e.code === 'EACCES' || e.code === 'EPERM' || e.code === 'EROFS' ? `${e.path ?? 'a host key'} is not accessible (${e.code})`
    : e.code ? `${e.path ?? 'a host key'}: ${e.code}`
    : e.message;
  const fix =
    config.hostKeys.length > 0
      ? 'list readable OpenSSH or PEM private keys in hostKeys (S3SFTP_HOSTKEYS), or leave it empty to generate one in dataDir'
      : `make ${config.dataDir} writable (the generated host key is kept there), or list keys in hostKeys`;
  return new StartupError(`host keys: ${why}; ${fix} (from ${which})`, { cause: err, configuration: true });
}

function listenError(err: unknown, address: string, key: string, env: string): StartupError {
  const code = (err as NodeJS.ErrnoException).code;
  const why =
    code === 'EADDRINUSE' ? 'the address is already in use'
    : code === 'EACCES' ? 'permission denied (ports below 1024 need privileges)'
    : code === 'EADDRNOTAVAIL' ? 'no interface has this address'
    : (err as Error).message;
  return new StartupError(`cannot listen on ${address} (${key}): ${why}; stop the other process or set ${key} (${env}) to a free address`, {
    cause: err,
    // A wrong address is a setting; a port taken by another process may be free on the next start.
    configuration: code === 'EADDRNOTAVAIL' || code === 'EACCES',
  });
}

function bucketError(err: unknown, bucket: string): StartupError {
  const message = (err as Error).message;
  if (/^cannot reach endpoint/.test(message)) {
    return new StartupError(`${message}; check s3.endpoint (S3SFTP_S3_ENDPOINT) and that the store is reachable from here`, { cause: err, configuration: false });
  }
  if (/does not exist$/.test(message)) {
    return new StartupError(`${message}; create it, or set s3.bucket (S3SFTP_S3_BUCKET) to an existing bucket`, { cause: err, configuration: true });
  }
  // Credentials refused, access denied, wrong region: the settings must change.
  return new StartupError(message.includes(bucket) || message.includes('credentials') ? message : `bucket ${bucket}: ${message}`, {
    cause: err,
    configuration: true,
  });
}
