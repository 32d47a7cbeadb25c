/**
 * Wires the pieces together. This is the only module that creates concrete
 * classes (S3 client and storage, user sources, SSH server); everything else
 * receives its dependencies.
 */
import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { hostname } from 'node:os';
import type { Logger } from 'pino';
import { Registry } from 'prom-client';
import type { Config } from './config/types.ts';
import type { User, UserSource } from './users/user.ts';
import { checkBucket } from './storage/s3/client.ts';
import { ClientPool, type AccessCheck } from './storage/s3/client-pool.ts';
import { S3Storage } from './storage/s3/s3-storage.ts';
import { UploadRegistry } from './storage/s3/upload-registry.ts';
import { DirectorySource } from './users/directory-source.ts';
import { EmptySource } from './users/empty-source.ts';
import { MergedSource, type NamedSource } from './users/merged-source.ts';
import { loadHostKeys } from './ssh/host-keys.ts';
import { SshServer } from './ssh/server.ts';
import { Metrics } from './metrics/metrics.ts';
import { startMetricsListener } from './metrics/http.ts';
import { instrumentS3Client } from './metrics/s3-requests.ts';
import { UploadJanitor } from './storage/s3/janitor.ts';
import { LeaderOnly } from './leader-only.ts';
import { ShortenableDelay } from './shortenable-delay.ts';

/** A start-up failure the operator must fix (exit code 2), as opposed to a crash. */
export class StartupError extends Error {
  override name = 'StartupError';
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

export async function startServer(config: Config, log: Logger): Promise<RunningServer> {
  const registry = new Registry();
  const metrics = new Metrics({ registry, perUserLabels: config.metrics.perUserLabels, perUserLabelLimit: config.metrics.perUserLabelLimit });
  const state = { bucketChecked: false, users: undefined as UserSource | undefined, draining: false };
  const notReadyReason = (): string | undefined => {
    if (state.draining) return 'shutting down';
    if (!state.bucketChecked) return 'checking the bucket';
    if (!state.users?.ready) return 'loading users';
    return undefined;
  };
  // First, so probes are answered while the bucket is checked and users load.
  const { host: metricsHost, port: metricsPort } = config.metrics.listen;
  const http = await startMetricsListener({
    registry,
    host: metricsHost,
    port: metricsPort,
    notReadyReason,
    log: log.child({ component: 'metrics' }),
  }).catch((err: unknown) => {
    throw new StartupError(`cannot listen on ${metricsHost}:${metricsPort} (metrics.listen): ${(err as Error).message}`, { cause: err });
  });
  // One client per (role, region, endpoint); `client` is the server's own.
  const clients = new ClientPool({
    config: config.s3,
    log,
    onClient: (c) => instrumentS3Client(c, (operation, outcome, seconds) => metrics.s3Request(operation, outcome, seconds)),
  });
  const client = clients.default;
  try {
    await checkBucket(client, config.s3.bucket);
  } catch (err) {
    clients.destroy();
    await http.close();
    throw new StartupError((err as Error).message, { cause: err });
  }
  state.bucketChecked = true;
  // Until the janitor exists, remember the latest verdict of the Lease.
  let leading = !config.users.kubernetes.enabled;
  let janitor: LeaderOnly | undefined;
  const onLeadingChange = (now: boolean) => {
    leading = now;
    janitor?.setLeading(now);
  };
  const users = await openUsers(config, log, (user) => clients.checkUserAccess(user), onLeadingChange).catch(async (err: unknown) => {
    clients.destroy();
    await http.close();
    throw err;
  });
  state.users = users;
  metrics.countUsersWith(() => users.all().length);
  const uploads = new UploadRegistry();
  const uploadEvents = metrics.uploadEvents();
  const ssh = new SshServer({
    hostKeys: await loadHostKeys(config.hostKeys, config.dataDir),
    users,
    setstatMode: config.setstatMode,
    log,
    events: metrics.serverEvents(),
    proxyTrustedCIDRs: config.proxyProtocol.trustedCIDRs,
    keepalive: config.keepalive,
    storageFor: (user) => {
      const storageLog = log.child({ user: user.username, component: 'storage' });
      return new S3Storage({
        client: clients.forSession(user, storageLog),
        bucket: user.s3.bucket,
        keyPrefix: user.s3.keyPrefix,
        config: user.s3.storageClass ? { ...config.s3, storageClass: user.s3.storageClass } : config.s3,
        renameMode: config.renameMode,
        renameMaxObjects: config.renameMaxObjects,
        uploads,
        events: uploadEvents,
        log: storageLog,
      });
    },
  });
  const address = await ssh.listen(config.listen.port, config.listen.host);
  // One replica cleans up: the one holding the status-writer Lease (every one, alone, outside Kubernetes).
  janitor =
    config.s3.abandonedUploadAgeMs > 0
      ? new LeaderOnly({
          name: 'abandoned-upload janitor',
          log: log.child({ component: 'janitor' }),
          make: () =>
            new UploadJanitor({
              client,
              locations: () => users.all(),
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
    checkUserAccess: (user) => clients.checkUserAccess(user),
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
      await ssh.close();
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
): Promise<UserSource> {
  const sources: NamedSource[] = [];
  const { directory, kubernetes } = config.users;
  if (directory) {
    sources.push({
      name: 'users.directory',
      source: await DirectorySource.open({ directory, defaultBucket: config.s3.bucket, log: log.child({ component: 'users' }) }),
    });
  }
  if (kubernetes.enabled) {
    try {
      const { loadKubeConfig, contextNamespace } = await import('./kube/api.ts');
      const { KubeUserSource } = await import('./kube/controller.ts');
      const { EventRecorder, kubeEventSink } = await import('./kube/events.ts');
      let kubeConfig;
      try {
        kubeConfig = loadKubeConfig(kubernetes.kubeconfig);
      } catch (err) {
        throw new StartupError(`users.kubernetes: cannot load the Kubernetes client configuration: ${(err as Error).message}`, { cause: err });
      }
      const leaseNamespace = kubernetes.leaseNamespace || contextNamespace(kubeConfig) || kubernetes.namespace;
      if (!leaseNamespace) {
        throw new StartupError(
          'users.kubernetes.leaseNamespace: not set, POD_NAMESPACE is empty and the kubeconfig context names no namespace; set one of them (the namespace for the status-writer Lease)',
        );
      }
      const identity = `${hostname()}-${randomUUID().slice(0, 8)}`;
      const kubeLog = log.child({ component: 'kube' });
      const events = new EventRecorder({ sink: kubeEventSink(kubeConfig), instance: identity, log: kubeLog });
      const source = new KubeUserSource({
        kubeConfig,
        identity,
        onVerdicts: (verdicts) => events.observe(verdicts),
        namespace: kubernetes.namespace,
        defaultBucket: config.s3.bucket,
        leaseNamespace,
        lease: { durationMs: kubernetes.leaseDurationMs, renewIntervalMs: kubernetes.leaseRenewIntervalMs },
        onLeadingChange,
        checkAccess,
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

