/** The validated, frozen server configuration. See config/load.ts for defaults and env vars. */

export type SetstatMode = 0 | 1 | 2;
export type RenameMode = 0 | 1;
export type ChecksumMode = 'when_required' | 'when_supported';

/** Transfer tuning for one direction. */
export interface TransferConfig {
  /** Bytes per part (upload: the first parts; sizes grow later, see storage/s3/part-size.ts). */
  partSize: number;
  /** Parts in flight at once. */
  concurrency: number;
  /** Time limit for one part request in milliseconds; 0 derives one from the part size. */
  partMaxTimeMs: number;
}

export interface S3Config {
  bucket: string;
  region: string;
  endpoint: string;
  forcePathStyle: boolean;
  storageClass: string;
  acl: string;
  /**
   * Static keys (all "" for the AWS default chain), and a role assumed on top of them (roleArn "" for
   * none) with its sts:ExternalId, session name and session duration. See storage/s3/credentials.ts.
   */
  credentials: {
    accessKeyId: string;
    secretAccessKey: string;
    sessionToken: string;
    roleArn: string;
    externalId: string;
    sessionName: string;
    durationMs: number;
  };
  /** Request checksums: AWS's default is when_supported; some S3-compatible stores need when_required. */
  requestChecksum: ChecksumMode;
  upload: TransferConfig;
  /** readAheadFiles: small files fetched before a session reading a directory in order opens them (storage/s3/read-ahead.ts). */
  download: TransferConfig & { readAheadFiles: number };
  /** Server-side encryption of new objects (storage/s3/encryption.ts); users may override it. */
  sse?: SseConfig;
}

/** s3.sse.*: the server's encryption settings; the SSE-C key file is read at start. */
export interface SseConfig {
  mode: 'none' | 'AES256' | 'aws:kms' | 'aws:kms:dsse';
  kmsKeyId: string;
  bucketKeyEnabled: boolean;
  /** "" for no SSE-C. */
  customerKeyFile: string;
}

/** users.kubernetes: SftpUser resources from the Kubernetes API. */
export interface KubernetesUsersConfig {
  enabled: boolean;
  /** "" for every namespace. */
  namespace: string;
  /** A kubeconfig path; "" for KUBECONFIG, ~/.kube/config or in-cluster. */
  kubeconfig: string;
  /** Namespace of the status-writer Lease; "" when neither the key nor POD_NAMESPACE sets it. */
  leaseNamespace: string;
  /** How long the Lease outlives a leader that stopped renewing it. */
  leaseDurationMs: number;
  /** How often the leader renews (and the others check) the Lease. */
  leaseRenewIntervalMs: number;
}

export interface Config {
  /** host:port to listen on for SSH. */
  listen: { host: string; port: number };
  hostKeys: string[];
  dataDir: string;
  setstatMode: SetstatMode;
  renameMode: RenameMode;
  renameMaxObjects: number;
  /** After SIGTERM, how long running uploads may finish before they are aborted (milliseconds). */
  shutdownGracePeriodMs: number;
  /** After SIGTERM, how long the listener stays open while /readyz answers 503 (milliseconds). */
  shutdownDelayMs: number;
  /** Load balancers whose PROXY protocol header is accepted; empty: PROXY protocol off. */
  proxyProtocol: { trustedCIDRs: string[] };
  /** SSH keepalives: sent after intervalMs of client silence (0: off); countMax unanswered end the connection. */
  keepalive: { intervalMs: number; countMax: number };
  /** abandonedUploadAgeMs: multipart uploads older than this are aborted by the janitor; 0 turns it off. */
  /** maxRequestsPerSession/User: storage operations in flight per session and per user (storage/s3/request-limiter.ts). */
  s3: S3Config & { abandonedUploadAgeMs: number; maxRequestsPerSession: number; maxRequestsPerUser: number };
  users: { directory: string; kubernetes: KubernetesUsersConfig };
  /** Resumed uploads allowed; MD5/SHA-1/SHA-256 stored with uploads. */
  uploads: { resume: boolean; checksums: boolean; tempSuffixes?: string[]; tempRenameWindowMs?: number };
  /** Bounded memory per SFTP session and per server (sftp/flow-control.ts). */
  sftp: { maxQueuedWriteBytes: number; uploadMemoryBudget: number };
  /** What directory listings report as a file's mtime; whether per-directory indexes of stored mtimes are kept in the bucket (docs/adr/0020). */
  listing: { mtime: 'metadata' | 'lastModified'; index: boolean };
  /** quota.*: how usage for spec.quota is counted. */
  quota: { rescanIntervalMs: number; scanConcurrency: number };
  /** bandwidth.*: server-wide caps in KiB/s; 0 is unlimited. */
  bandwidth: { uploadKiBps: number; downloadKiBps: number };
  /** The HTTP listener for /metrics, /healthz and /readyz, and whether per-user labels are added. */
  metrics: { listen: { host: string; port: number }; perUserLabels: boolean; perUserLabelLimit: number };
  log: { level: 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal' | 'silent' };
  ssh: SshLimitsConfig;
  auth: AuthConfig;
  defender: DefenderConfig;
}

/** ssh.*: connection limits, login grace time and the algorithms offered (docs/security.md). */
export interface SshLimitsConfig {
  /** 0 turns the grace time off. */
  loginGraceTimeMs: number;
  maxUnauthenticated: number;
  maxUnauthenticatedPerSource: number;
  /** 0: no limit. */
  maxConnectionsPerUser: number;
  /** 0: no limit. */
  maxConnectionsPerSource: number;
  maxChannelsPerConnection: number;
  algorithms: { kex: string[]; hostKey: string[]; cipher: string[]; mac: string[] };
}

/** auth.*: the password verification pool. */
export interface AuthConfig {
  verifyConcurrency: number;
  verifyQueue: number;
}

/** defender.*: per-source scores and bans. */
export interface DefenderConfig {
  enabled: boolean;
  threshold: number;
  observationTimeMs: number;
  banTimeMs: number;
  trustedCIDRs: string[];
}
