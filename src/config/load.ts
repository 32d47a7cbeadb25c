/**
 * Reads the configuration once: one optional YAML file, then S3SFTP_* env vars
 * on top, then defaults. Everything is validated in one pass so an operator
 * sees every problem at once, and the result is deep-frozen.
 *
 * KEYS below is the single source of truth for key names, defaults, env var
 * names and docs; describeConfigKeys() exposes it for generated docs. The
 * parts live beside it: parsers.ts (value parsers), validators.ts (checks
 * shared with SftpUser resources), sources.ts (the file and env),
 * key-names.ts (unknown-key suggestions), errors.ts (ConfigError).
 */

import { ConfigError, type ConfigProblem } from './errors.ts';
import { KeyNames } from './key-names.ts';
import {
  abandonedUploadAge,
  bool,
  choice,
  cidrList,
  int,
  listen,
  namespaceName,
  nonEmpty,
  orEmpty,
  roleDuration,
  size,
  str,
  stringList,
  type Parsed,
} from './parsers.ts';
import { envName, rawValue, readConfigFile } from './sources.ts';
import type { Config } from './types.ts';
import { formatSize, parseDuration, parseSize } from './units.ts';
import { bucketNameProblem, endpointProblem, regionProblem, roleArnProblem, storageClassProblem } from './validators.ts';
import { DEFAULT_CIPHERS, DEFAULT_HOST_KEY_ALGORITHMS, DEFAULT_KEX, DEFAULT_MACS } from '../ssh/crypto-policy.ts';
import { SSE_MODES, sseProblems } from './sse.ts';

export { ConfigError, type ConfigProblem } from './errors.ts';

/** Where a loaded config comes from; `env` is usually process.env. */
export interface LoadConfigOptions {
  file?: string;
  env: Record<string, string | undefined>;
}

/** A default as it would be written in the YAML file; undefined means the key is required. */
export type ConfigDefault = string | number | boolean | readonly string[] | undefined;

/** One documented key, for generated docs. */
export interface ConfigKeyDescription {
  key: string;
  env: string;
  default: ConfigDefault;
  required: boolean;
  doc: string;
}

interface KeySpec {
  key: string;
  doc: string;
  default: ConfigDefault;
  /** Parses a raw value from YAML (any type) or from env (always a string). */
  parse: (raw: unknown) => Parsed;
  /** Never echo the value in error messages. */
  secret?: boolean;
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null) {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

const MiB = 2 ** 20;
const GiB = 2 ** 30;

const CANNED_ACLS = [
  '',
  'private',
  'public-read',
  'public-read-write',
  'authenticated-read',
  'aws-exec-read',
  'bucket-owner-read',
  'bucket-owner-full-control',
] as const;

const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;

function transferKeys(dir: 'upload' | 'download'): KeySpec[] {
  const up = dir === 'upload';
  return [
    {
      key: `s3.${dir}.partSize`,
      default: up ? '16MiB' : '8MiB',
      doc: up
        ? 'Size of the first parts of a multipart upload (later parts grow so large files fit in 10000 parts). 5MiB to 5GiB.'
        : 'Size of each ranged GET when reading a file. At least 64KiB.',
      parse: up
        ? size(5 * MiB, "S3's minimum part size", 5 * GiB, "S3's maximum part size")
        : size(64 * 1024, 'smaller ranges cost more requests than they save'),
    },
    {
      key: `s3.${dir}.concurrency`,
      default: 4,
      doc: `Parts ${up ? 'uploaded' : 'downloaded'} at once per open file. 1 to 64.`,
      parse: int(1, 64),
    },
    {
      key: `s3.${dir}.partMaxTime`,
      default: '0s',
      doc: 'Time limit for one part request before it is retried; 0s derives one from the part size.',
      parse: parseDuration,
    },
  ];
}

/** An algorithm list for the SSH handshake: names only, at least one. */
function algorithmList(raw: unknown): Parsed {
  const list = stringList(raw);
  if ('error' in list) return list;
  if ((list.value as string[]).length === 0) return { error: 'is empty; name at least one algorithm' };
  return list;
}

function hardeningKeys(): KeySpec[] {
  const algos = (name: string, what: string, list: readonly string[]): KeySpec => ({
    key: `ssh.${name}`,
    default: list,
    doc: `${what} the server offers, in order of preference (comma-separated in env). The defaults leave out SHA-1, CBC and small groups; see docs/security.md.`,
    parse: algorithmList,
  });
  return [
    {
      key: 'ssh.loginGraceTime',
      default: '30s',
      doc: 'A connection that has not authenticated this long after it opened is closed (OpenSSH: LoginGraceTime). 0s turns it off.',
      parse: parseDuration,
    },
    {
      key: 'ssh.maxUnauthenticated',
      default: 100,
      doc: 'Connections that have not authenticated yet, server-wide; more are closed at once.',
      parse: int(1, 1_000_000),
    },
    {
      key: 'ssh.maxUnauthenticatedPerSource',
      default: 20,
      doc: 'Connections from one source address that have not authenticated yet; more are closed at once.',
      parse: int(1, 1_000_000),
    },
    {
      key: 'ssh.maxConnectionsPerUser',
      default: 0,
      doc: 'Authenticated connections one user may have open at once, on this replica; 0 for no limit.',
      parse: int(0, 1_000_000),
    },
    {
      key: 'ssh.maxConnectionsPerSource',
      default: 0,
      doc: 'Authenticated connections one source address may have open at once, on this replica; 0 for no limit.',
      parse: int(0, 1_000_000),
    },
    {
      key: 'ssh.maxChannelsPerConnection',
      default: 10,
      doc: 'SFTP and SCP channels one connection may have open at once (OpenSSH: MaxSessions); more are refused.',
      parse: int(1, 10_000),
    },
    algos('kex', 'Key exchange algorithms', DEFAULT_KEX),
    algos('hostKeyAlgorithms', 'Host key signature algorithms', DEFAULT_HOST_KEY_ALGORITHMS),
    algos('ciphers', 'Ciphers', DEFAULT_CIPHERS),
    algos('macs', 'MAC algorithms', DEFAULT_MACS),
    {
      key: 'auth.verifyConcurrency',
      default: 2,
      doc: 'Password hashes (argon2id, bcrypt) verified at once; further logins queue, so guessing cannot take every core.',
      parse: int(1, 256),
    },
    {
      key: 'auth.verifyQueue',
      default: 64,
      doc: 'Password logins that may wait for auth.verifyConcurrency; beyond it an attempt fails at once as a failed login.',
      parse: int(0, 100_000),
    },
    {
      key: 'defender.enabled',
      default: true,
      doc: 'Score failed logins and protocol abuse per source address and ban sources that pass defender.threshold.',
      parse: bool,
    },
    {
      key: 'defender.threshold',
      default: 15,
      doc: 'Score at which a source is banned: a failed login scores 1; a connection closed for a limit, the login grace time or a protocol error scores 3.',
      parse: int(1, 1_000_000),
    },
    {
      key: 'defender.observationTime',
      default: '10m',
      doc: 'How long a score counts towards a ban.',
      parse: parseDuration,
    },
    {
      key: 'defender.banTime',
      default: '15m',
      doc: 'How long a banned source is refused (its connections are closed before the SSH handshake).',
      parse: parseDuration,
    },
    {
      key: 'defender.trustedCIDRs',
      default: [],
      doc: 'Addresses or CIDRs never scored nor banned, e.g. a monitoring probe or a partner\'s NAT (comma-separated in env).',
      parse: cidrList,
    },
  ];
}

/** Every configuration key, in file order. Defaults are written as they would appear in YAML. */
const KEYS: readonly KeySpec[] = deepFreeze([
  {
    key: 'listen',
    default: '0.0.0.0:2022',
    doc: 'Address for the SSH server, host:port ([::1]:2022 for IPv6). Port 0 picks a free port.',
    parse: listen,
  },
  {
    key: 'hostKeys',
    default: [],
    doc: 'Paths to SSH host private keys. If empty, an ed25519 key is generated once in dataDir and reused. Comma-separated in env.',
    parse: stringList,
  },
  {
    key: 'dataDir',
    default: '/var/lib/s3sftp',
    doc: 'Directory for state the server keeps between restarts (the generated host key).',
    parse: str(nonEmpty('use a writable directory such as /var/lib/s3sftp')),
  },
  {
    key: 'setstatMode',
    default: 2,
    doc: 'What SETSTAT does: 2 (default) keep modification times, ignore permissions and owner; 0 keep times, refuse a request that changes permissions or owner; 1 ignore every setstat.',
    parse: choice([0, 1, 2], ['refuse permission and owner changes', 'ignore every setstat', 'keep times, ignore what S3 cannot store']),
  },
  {
    key: 'renameMode',
    default: 0,
    doc: 'Renaming a non-empty directory: 0 fails; 1 copies and deletes object by object (not atomic).',
    parse: choice([0, 1], ['renaming a non-empty directory fails', 'rename object by object']),
  },
  {
    key: 'renameMaxObjects',
    default: 10000,
    doc: 'With renameMode 1, the most objects one directory rename may move; larger renames fail before starting.',
    parse: int(1, Number.MAX_SAFE_INTEGER),
  },
  {
    key: 'shutdownGracePeriod',
    default: '25s',
    doc: 'After SIGTERM: how long the server, which stops accepting connections and reports not ready, lets running uploads finish before it closes them.',
    parse: parseDuration,
  },
  {
    key: 'shutdownDelay',
    default: '0s',
    doc: 'After SIGTERM: how long the server keeps accepting connections while /readyz already answers 503, so that a load balancer health-checking /readyz stops sending new clients first. 0s closes the listener at once (on Kubernetes the pod\'s preStop sleep plays this part).',
    parse: parseDuration,
  },
  {
    key: 'proxyProtocol.trustedCIDRs',
    default: [],
    doc: 'Addresses of load balancers allowed to send a PROXY protocol (v1 or v2) header, as CIDR blocks; connections from them must start with one, and logs, audit lines, metrics and per-IP rules see the client address it carries. Connections from elsewhere are served as they come, and a PROXY header from them is refused. Empty turns PROXY protocol off. Comma-separated in env.',
    parse: cidrList,
  },
  {
    key: 'keepalive.interval',
    default: '60s',
    doc: 'Send an SSH keepalive after this long without traffic from the client (keeps idle sessions alive through load balancers that drop idle flows, e.g. the AWS NLB after 350 s); 0s turns keepalives off.',
    parse: parseDuration,
  },
  {
    key: 'keepalive.countMax',
    default: 3,
    doc: 'Keepalives in a row the client may leave unanswered; the connection is ended after about interval x (countMax + 1) of silence from the client.',
    parse: int(1, 1000),
  },
  {
    key: 's3.bucket',
    default: undefined,
    doc: 'Bucket that holds the files (required). Users may name another bucket in their resource.',
    parse: str(bucketNameProblem),
  },
  {
    key: 's3.region',
    default: 'us-east-1',
    doc: 'Region of the bucket; S3-compatible stores usually accept any value.',
    parse: str(regionProblem),
  },
  {
    key: 's3.endpoint',
    default: '',
    doc: 'Endpoint URL of an S3-compatible store (e.g. http://minio:9000); empty for AWS.',
    parse: str(orEmpty(endpointProblem, 'AWS')),
  },
  {
    key: 's3.forcePathStyle',
    default: false,
    doc: 'Address the bucket as endpoint/bucket instead of bucket.endpoint (most S3-compatible stores need true).',
    parse: bool,
  },
  {
    key: 's3.storageClass',
    default: '',
    doc: 'Storage class for new objects (e.g. STANDARD_IA, INTELLIGENT_TIERING); empty for the bucket default.',
    parse: str(orEmpty(storageClassProblem, 'the bucket default')),
  },
  {
    key: 's3.acl',
    default: '',
    doc: `Canned ACL for new objects: ${CANNED_ACLS.filter((a) => a).join(', ')}; empty sends none.`,
    parse: choice(CANNED_ACLS),
  },
  // Server-side encryption (issue 13): see storage/s3/encryption.ts and docs/configuration.md.
  {
    key: 's3.sse.mode',
    default: 'none',
    doc: 'Server-side encryption of new objects: none (the bucket default applies), AES256 (SSE-S3), aws:kms (SSE-KMS) or aws:kms:dsse; sent on every PutObject, CreateMultipartUpload and CopyObject. Users may override it in spec.s3.sse.',
    parse: choice(SSE_MODES),
  },
  {
    key: 's3.sse.kmsKeyId',
    default: '',
    doc: 'KMS key id, ARN or alias for aws:kms and aws:kms:dsse; empty uses the account\'s AWS-managed key (aws/s3). The server\'s role needs kms:GenerateDataKey and kms:Decrypt on it.',
    parse: str(),
  },
  {
    key: 's3.sse.bucketKeyEnabled',
    default: false,
    doc: 'With aws:kms, use an S3 Bucket Key (far fewer KMS requests and costs).',
    parse: bool,
  },
  {
    key: 's3.sse.customerKeyFile',
    default: '',
    doc: 'SSE-C: path of a file holding a 32-byte AES-256 key as base64 (openssl rand -base64 32); every request that reads or writes an object carries it. Needs s3.sse.mode none. Objects written without the key cannot be read with it, and the reverse.',
    parse: str(),
  },
  {
    key: 's3.credentials.accessKeyId',
    default: '',
    doc: 'Static access key id. Set both keys or neither; with neither, the AWS default credential chain is used.',
    parse: str(),
    secret: true,
  },
  {
    key: 's3.credentials.secretAccessKey',
    default: '',
    doc: 'Static secret access key, paired with accessKeyId.',
    parse: str(),
    secret: true,
  },
  {
    key: 's3.credentials.sessionToken',
    default: '',
    doc: 'Session token for temporary static credentials; needs both keys.',
    parse: str(),
    secret: true,
  },
  {
    key: 's3.credentials.roleArn',
    default: '',
    doc: 'IAM role to assume (sts:AssumeRole) with the credentials found (static keys, IRSA, Pod Identity, instance role), e.g. a role in the bucket\'s account; empty uses those credentials directly. Users with spec.s3.roleArn assume their role with this one.',
    parse: str(orEmpty(roleArnProblem, 'none')),
  },
  {
    key: 's3.credentials.externalId',
    default: '',
    doc: 'sts:ExternalId sent when assuming s3.credentials.roleArn (not for users\' roles), if the role\'s trust policy requires one.',
    parse: str((s) => (s === '' || /^[\w+=,.@:/-]{2,1224}$/.test(s) ? undefined : 'is not an external id; use 2 to 1224 letters, digits or +=,.@:/-')),
  },
  {
    key: 's3.credentials.sessionName',
    default: 's3sftp',
    doc: 'Role session name for every role the server assumes (shown in CloudTrail).',
    parse: str((s) => (/^[\w+=,.@-]{2,64}$/.test(s) ? undefined : 'is not a role session name; use 2 to 64 letters, digits or +=,.@-')),
  },
  {
    key: 's3.credentials.duration',
    default: '1h',
    doc: 'Lifetime of assumed-role credentials, 15m to 12h; renewed 5 minutes before they expire. Above 1h the role\'s maximum session duration must allow it, and STS refuses it for role chaining (credentials that come from a role themselves, as with IRSA or Pod Identity).',
    parse: roleDuration,
  },
  {
    key: 's3.requestChecksum',
    default: 'when_required',
    doc: 'When to send request checksums: when_required (works with most S3-compatible stores) or when_supported (the AWS SDK default).',
    parse: choice(['when_required', 'when_supported']),
  },
  {
    key: 's3.abandonedUploadAge',
    default: '24h',
    doc: 'Multipart uploads older than this (left by a crashed server) are aborted, so their parts stop costing storage. At least 1h (keep it above the longest upload); 0s turns this off.',
    parse: abandonedUploadAge,
  },
  ...transferKeys('upload'),
  ...transferKeys('download'),
  {
    key: 's3.download.readAheadFiles',
    default: 8,
    doc: 'Small files (up to 1 MiB) fetched ahead when a session opens the files of a directory one after another in name order (`get dir/*`, mget), so each costs no S3 round trip at OPEN. 0 to 64; 0 turns it off.',
    parse: int(0, 64),
  },
  {
    key: 's3.maxRequestsPerSession',
    default: 16,
    doc: 'Storage operations (stat, listing page, ranged read, rename...) one SFTP/SCP session may have in flight; more wait in that session\'s queue, so one session cannot take the shared S3 socket pool.',
    parse: int(1, 1024),
  },
  {
    key: 's3.maxRequestsPerUser',
    default: 32,
    doc: 'Storage operations all sessions of one user may have in flight on this replica (see s3.maxRequestsPerSession).',
    parse: int(1, 4096),
  },
  {
    key: 'sftp.maxQueuedWriteBytes',
    default: '32MiB',
    doc: 'WRITE data one SFTP session may have received and not yet answered; above it the server stops reading the channel (the SSH window stays closed) until uploads catch up.',
    parse: size(1 * MiB, 'smaller stalls every upload'),
  },
  {
    key: 'sftp.uploadMemoryBudget',
    default: '1GiB',
    doc: 'Upload part memory of the whole server: every part buffer is reserved from it before it is filled, and an upload that finds it spent waits (its WRITE replies are delayed, so the client slows down) instead of the pod running out of memory.',
    parse: size(1 * MiB, 'too small to hold any part'),
  },
  {
    key: 'uploads.resume',
    default: true,
    doc: 'Resumed uploads (sftp reput, lftp put -c, WinSCP/FileZilla resume) continue an existing file: its bytes are copied inside S3 and the client sends only the rest. false refuses a resume; clients then upload again from the start.',
    parse: bool,
  },
  {
    key: 'uploads.checksums',
    default: true,
    doc: 'Compute MD5, SHA-1 and SHA-256 of an upload that fits one part (a single PutObject) as it streams and store them with the object, so md5sum/sha1sum/sha256sum (rclone check) answer without reading the file. Larger (multipart) files are hashed when asked, by reading them once inside S3: storing their hashes would need a copy of the object onto itself while the client waits for CLOSE.',
    parse: bool,
  },
  // Uploads through a temporary name (issue 13): see storage/s3/temp-uploads.ts and docs/adr/0017.
  {
    key: 'uploads.tempSuffixes',
    default: ['.filepart'],
    doc: 'Names ending in one of these (WinSCP\'s .filepart) are temporary: the upload is written towards the name without the suffix, and the RENAME that follows the upload costs no server-side copy. Empty turns this off (comma-separated in env).',
    parse: stringList,
  },
  {
    key: 'uploads.tempRenameWindow',
    default: '2s',
    doc: 'How long a closed upload to a temporary name waits for its rename before it is stored at the temporary name (which then costs one copy). 0s turns the feature off.',
    parse: parseDuration,
  },
  {
    key: 'listing.mtime',
    default: 'metadata',
    doc: 'Modification time in directory listings: metadata reports the stored mtime, as stat does (one HeadObject per file, cached); lastModified reports S3\'s LastModified with no extra requests, which makes sync tools see stored times as changes.',
    parse: choice(['metadata', 'lastModified']),
  },
  {
    key: 'listing.index',
    default: true,
    doc: 'Keep a small index per listed directory in the bucket (under .s3sftp/listing-index/, hidden from users) recording the stored mtimes a listing found, so the next listing of that directory, on any replica or after a restart, needs one GetObject instead of a HeadObject per file. Only with listing.mtime metadata; written after a complete listing that HEADed 32 files or more.',
    parse: bool,
  },
  // Quotas and bandwidth limits (spec.quota, spec.bandwidth; docs/sftpuser.md).
  {
    key: 'quota.rescanInterval',
    default: '10m',
    doc: 'How often the usage of a user with spec.quota is counted again from S3, so files changed outside s3sftp are seen; between scans the server counts its own uploads and deletes. A user idle for a whole interval is counted again at their next session. 0s: only then.',
    parse: parseDuration,
  },
  {
    key: 'quota.scanConcurrency',
    default: 4,
    doc: 'Usage scans (one flat S3 listing of a user\'s prefix, started at the user\'s first session) running at once. 1 to 64.',
    parse: int(1, 64),
  },
  {
    key: 'bandwidth.uploadKiBps',
    default: 0,
    doc: 'Server-wide cap on upload throughput in KiB/s, shared by all sessions (SFTP and SCP); 0: unlimited. spec.bandwidth limits one user on top of it.',
    parse: int(0, 10_000_000),
  },
  {
    key: 'bandwidth.downloadKiBps',
    default: 0,
    doc: 'Server-wide cap on download throughput in KiB/s, shared by all sessions (SFTP and SCP); 0: unlimited.',
    parse: int(0, 10_000_000),
  },
  {
    key: 'users.directory',
    default: '',
    doc: 'Directory of SftpUser YAML files (*.yaml, *.yml), watched for changes; empty for none.',
    parse: str(),
  },
  {
    key: 'users.kubernetes.enabled',
    default: false,
    doc: 'Serve the SftpUser resources of the cluster the server runs in (and the Secrets they reference). Combinable with users.directory, whose users win on duplicate names.',
    parse: bool,
  },
  {
    key: 'users.kubernetes.namespace',
    default: '',
    doc: 'Namespace whose SftpUser resources are served; empty for every namespace.',
    parse: str(namespaceName),
  },
  {
    key: 'users.kubernetes.kubeconfig',
    default: '',
    doc: 'Path of a kubeconfig file for reaching the Kubernetes API from outside the cluster; empty uses KUBECONFIG, ~/.kube/config, or the in-cluster service account.',
    parse: str(),
  },
  {
    key: 'users.kubernetes.leaseNamespace',
    default: '',
    doc: 'Namespace of the Lease s3sftp-status-writer that picks the one replica writing SftpUser status; empty uses POD_NAMESPACE, then the namespace of the kubeconfig context (in a pod, the service account\'s), then users.kubernetes.namespace.',
    parse: str(namespaceName),
  },
  // Hardening (issue 11): connection limits, login grace time, crypto policy, password
  // verification pool and the defender. See docs/security.md.
  ...hardeningKeys(),
  {
    key: 'users.kubernetes.leaseDuration',
    default: '15s',
    doc: 'How long the status-writer Lease stays with a replica that stopped renewing it (crashed) before another replica takes over. At least 2s.',
    parse: (raw) => {
      const r = parseDuration(raw);
      return 'error' in r || r.value >= 2000 ? r : { error: 'is too short; use at least 2s' };
    },
  },
  {
    key: 'users.kubernetes.leaseRenewInterval',
    default: '5s',
    doc: 'How often the replica holding the status-writer Lease renews it, and the others check it. Below a third of leaseDuration.',
    parse: (raw) => {
      const r = parseDuration(raw);
      return 'error' in r || r.value >= 100 ? r : { error: 'is too short; use at least 100ms' };
    },
  },
  {
    key: 'metrics.listen',
    default: '0.0.0.0:9090',
    doc: 'Address for the HTTP listener of /metrics (Prometheus), /healthz and /readyz, host:port.',
    parse: listen,
  },
  {
    key: 'metrics.perUserLabels',
    default: false,
    doc: 'Add a `user` label to per-user metrics (transfers, bytes and s3sftp_sessions_active). Every user then adds series; see perUserLabelLimit.',
    parse: bool,
  },
  {
    key: 'metrics.perUserLabelLimit',
    default: 100,
    doc: 'With perUserLabels: how many distinct users get their own label value; users seen after that are counted as user="other", so the number of series stays bounded.',
    parse: int(1, 100_000),
  },
  {
    key: 'log.level',
    default: 'info',
    doc: `Log level: ${LOG_LEVELS.join(', ')}.`,
    parse: choice(LOG_LEVELS),
  },
]);

/** Every key with its env var, default and doc, in file order. */
export function describeConfigKeys(): ConfigKeyDescription[] {
  return KEYS.map((k) => ({
    key: k.key,
    env: envName(k.key),
    default: k.default,
    required: k.default === undefined,
    doc: k.doc,
  }));
}

// ---------------------------------------------------------------------------

const NAMES = new KeyNames(KEYS.map((k) => k.key));

function show(raw: unknown, secret: boolean | undefined): string {
  if (secret) return 'the value';
  const text = typeof raw === 'string' ? JSON.stringify(raw) : (JSON.stringify(raw) ?? String(raw));
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}


/**
 * Loads and validates the configuration: file (optional) < env < nothing;
 * defaults fill what neither sets. Throws ConfigError listing every problem.
 */
export function loadConfig(options: LoadConfigOptions): Config {
  const problems: ConfigProblem[] = [];
  const fromFile = options.file !== undefined ? readConfigFile(options.file, NAMES, problems) : new Map<string, unknown>();
  const values = new Map<string, unknown>();

  for (const spec of KEYS) {
    const found = rawValue(spec.key, spec.default === undefined, fromFile, options.env);
    if ('missing' in found && spec.default === undefined) {
      problems.push({ key: spec.key, message: `is required; set it in the config file or ${envName(spec.key)}` });
      continue;
    }
    const raw = 'missing' in found ? spec.default : found.raw;
    const env = 'missing' in found ? undefined : found.env;
    const parsed = spec.parse(raw);
    if ('error' in parsed) {
      const message = `${show(raw, spec.secret)} ${parsed.error}`;
      problems.push(env ? { key: spec.key, env, message } : { key: spec.key, message });
    } else {
      values.set(spec.key, parsed.value);
    }
  }

  const creds = {
    accessKeyId: values.get('s3.credentials.accessKeyId'),
    secretAccessKey: values.get('s3.credentials.secretAccessKey'),
    sessionToken: values.get('s3.credentials.sessionToken'),
  };
  if (typeof creds.accessKeyId === 'string' && typeof creds.secretAccessKey === 'string') {
    if ((creds.accessKeyId === '') !== (creds.secretAccessKey === '')) {
      problems.push({
        key: 's3.credentials',
        message: 'set both accessKeyId and secretAccessKey, or neither to use the AWS default credential chain',
      });
    } else if (creds.accessKeyId === '' && creds.sessionToken) {
      problems.push({ key: 's3.credentials.sessionToken', message: 'is set without accessKeyId and secretAccessKey; set all three' });
    }
  }
  if (values.get('s3.credentials.externalId') && values.get('s3.credentials.roleArn') === '') {
    problems.push({ key: 's3.credentials.externalId', message: 'is set without s3.credentials.roleArn; it is only sent when assuming that role' });
  }

  const leaseMs = values.get('users.kubernetes.leaseDuration');
  const renewMs = values.get('users.kubernetes.leaseRenewInterval');
  if (typeof leaseMs === 'number' && typeof renewMs === 'number' && renewMs * 3 > leaseMs) {
    problems.push({
      key: 'users.kubernetes.leaseRenewInterval',
      message: `is more than a third of users.kubernetes.leaseDuration; a leader would lose the Lease after one missed renewal. Use at most ${Math.floor(leaseMs / 3)}ms`,
    });
  }

  // Server-side encryption: fields that only make sense together (storage/s3/encryption.ts).
  if (values.has('s3.sse.mode') && values.has('s3.sse.kmsKeyId') && values.has('s3.sse.bucketKeyEnabled')) {
    for (const message of sseProblems(
      {
        mode: values.get('s3.sse.mode') as string,
        kmsKeyId: values.get('s3.sse.kmsKeyId') as string,
        bucketKeyEnabled: values.get('s3.sse.bucketKeyEnabled') as boolean,
        hasCustomerKey: values.get('s3.sse.customerKeyFile') !== '',
      },
      's3.sse.',
    )) {
      const [key, ...rest] = message.split(': ');
      problems.push({ key: key!, message: rest.join(': ') });
    }
  }
  if (problems.length > 0) throw new ConfigError(problems);

  const get = <T>(key: string): T => values.get(key) as T;
  const transfer = (dir: 'upload' | 'download') => ({
    partSize: get<number>(`s3.${dir}.partSize`),
    concurrency: get<number>(`s3.${dir}.concurrency`),
    partMaxTimeMs: get<number>(`s3.${dir}.partMaxTime`),
  });
  const config: Config = {
    listen: get('listen'),
    hostKeys: get('hostKeys'),
    dataDir: get('dataDir'),
    setstatMode: get('setstatMode'),
    renameMode: get('renameMode'),
    renameMaxObjects: get('renameMaxObjects'),
    shutdownGracePeriodMs: get('shutdownGracePeriod'),
    shutdownDelayMs: get('shutdownDelay'),
    proxyProtocol: { trustedCIDRs: get('proxyProtocol.trustedCIDRs') },
    keepalive: { intervalMs: get('keepalive.interval'), countMax: get('keepalive.countMax') },
    s3: {
      bucket: get('s3.bucket'),
      region: get('s3.region'),
      endpoint: get('s3.endpoint'),
      forcePathStyle: get('s3.forcePathStyle'),
      storageClass: get('s3.storageClass'),
      acl: get('s3.acl'),
      credentials: {
        accessKeyId: get('s3.credentials.accessKeyId'),
        secretAccessKey: get('s3.credentials.secretAccessKey'),
        sessionToken: get('s3.credentials.sessionToken'),
        roleArn: get('s3.credentials.roleArn'),
        externalId: get('s3.credentials.externalId'),
        sessionName: get('s3.credentials.sessionName'),
        durationMs: get('s3.credentials.duration'),
      },
      requestChecksum: get('s3.requestChecksum'),
      upload: transfer('upload'),
      download: { ...transfer('download'), readAheadFiles: get<number>('s3.download.readAheadFiles') },
      abandonedUploadAgeMs: get('s3.abandonedUploadAge'),
      maxRequestsPerSession: get('s3.maxRequestsPerSession'),
      maxRequestsPerUser: get('s3.maxRequestsPerUser'),
      sse: {
        mode: get('s3.sse.mode'),
        kmsKeyId: get('s3.sse.kmsKeyId'),
        bucketKeyEnabled: get('s3.sse.bucketKeyEnabled'),
        customerKeyFile: get('s3.sse.customerKeyFile'),
      },
    },
    sftp: { maxQueuedWriteBytes: get('sftp.maxQueuedWriteBytes'), uploadMemoryBudget: get('sftp.uploadMemoryBudget') },
    users: {
      directory: get('users.directory'),
      kubernetes: {
        enabled: get('users.kubernetes.enabled'),
        namespace: get('users.kubernetes.namespace'),
        kubeconfig: get('users.kubernetes.kubeconfig'),
        // The Downward API's usual name for the pod's namespace; not an S3SFTP_ key.
        leaseNamespace: get<string>('users.kubernetes.leaseNamespace') || (options.env.POD_NAMESPACE ?? ''),
        leaseDurationMs: get('users.kubernetes.leaseDuration'),
        leaseRenewIntervalMs: get('users.kubernetes.leaseRenewInterval'),
      },
    },
    ssh: {
      loginGraceTimeMs: get('ssh.loginGraceTime'),
      maxUnauthenticated: get('ssh.maxUnauthenticated'),
      maxUnauthenticatedPerSource: get('ssh.maxUnauthenticatedPerSource'),
      maxConnectionsPerUser: get('ssh.maxConnectionsPerUser'),
      maxConnectionsPerSource: get('ssh.maxConnectionsPerSource'),
      maxChannelsPerConnection: get('ssh.maxChannelsPerConnection'),
      algorithms: { kex: get('ssh.kex'), hostKey: get('ssh.hostKeyAlgorithms'), cipher: get('ssh.ciphers'), mac: get('ssh.macs') },
    },
    auth: { verifyConcurrency: get('auth.verifyConcurrency'), verifyQueue: get('auth.verifyQueue') },
    defender: {
      enabled: get('defender.enabled'),
      threshold: get('defender.threshold'),
      observationTimeMs: get('defender.observationTime'),
      banTimeMs: get('defender.banTime'),
      trustedCIDRs: get('defender.trustedCIDRs'),
    },
    uploads: {
      resume: get('uploads.resume'),
      checksums: get('uploads.checksums'),
      tempSuffixes: get('uploads.tempSuffixes'),
      tempRenameWindowMs: get('uploads.tempRenameWindow'),
    },
    listing: { mtime: get('listing.mtime'), index: get('listing.index') },
    quota: { rescanIntervalMs: get('quota.rescanInterval'), scanConcurrency: get('quota.scanConcurrency') },
    bandwidth: { uploadKiBps: get('bandwidth.uploadKiBps'), downloadKiBps: get('bandwidth.downloadKiBps') },
        metrics: { listen: get('metrics.listen'), perUserLabels: get('metrics.perUserLabels'), perUserLabelLimit: get('metrics.perUserLabelLimit') },
    log: { level: get('log.level') },
  };
  return deepFreeze(config);
}
