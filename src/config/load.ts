/**
 * Reads the configuration once: one optional YAML file, then S3SFTP_* env vars
 * on top, then defaults. Everything is validated in one pass so an operator
 * sees every problem at once, and the result is deep-frozen.
 *
 * KEYS below is the single source of truth for key names, defaults, env var
 * names and docs; describeConfigKeys() exposes it for generated docs.
 */

import { readFileSync } from 'node:fs';
import { isIP, isIPv6 } from 'node:net';
import { parseDocument } from 'yaml';
import type { Config } from './types.ts';
import { formatSize, parseDuration, parseSize } from './units.ts';

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

type Parsed = { value: unknown } | { error: string };

interface KeySpec {
  key: string;
  doc: string;
  default: ConfigDefault;
  /** Parses a raw value from YAML (any type) or from env (always a string). */
  parse: (raw: unknown) => Parsed;
  /** Never echo the value in error messages. */
  secret?: boolean;
}

// ---------------------------------------------------------------------------
// Field parsers. Each returns an error phrased to follow the value:
// `<key>: "<value>" <error>`.

function str(check?: (s: string) => string | undefined): (raw: unknown) => Parsed {
  return (raw) => {
    if (typeof raw !== 'string') return { error: 'must be a string' };
    const problem = check?.(raw);
    return problem ? { error: problem } : { value: raw };
  };
}

function int(min: number, max: number): (raw: unknown) => Parsed {
  return (raw) => {
    const n = typeof raw === 'string' && /^\s*-?\d+\s*$/.test(raw) ? Number(raw) : raw;
    if (typeof n !== 'number' || !Number.isSafeInteger(n)) {
      const range = max === Number.MAX_SAFE_INTEGER ? `of at least ${min}` : `from ${min} to ${max}`;
      return { error: `is not a whole number; use an integer ${range}` };
    }
    if (n < min) return { error: `is too small; use at least ${min}` };
    if (n > max) return { error: `is too big; use at most ${max}` };
    return { value: n };
  };
}

/** One of a fixed set of values; `labels` explain numeric modes in the message. */
function choice(values: readonly (string | number)[], labels?: readonly string[]): (raw: unknown) => Parsed {
  const allowed = values.map((v, i) => {
    const shown = v === '' ? '"" (empty)' : String(v);
    return labels?.[i] ? `${shown} (${labels[i]})` : shown;
  });
  const list = allowed.length > 1 ? `${allowed.slice(0, -1).join(', ')} or ${allowed.at(-1)}` : (allowed[0] ?? '');
  return (raw) => {
    for (const v of values) {
      if (raw === v || (typeof v === 'number' && typeof raw === 'string' && raw.trim() === String(v))) {
        return { value: v };
      }
    }
    return { error: `is not allowed; use ${list}` };
  };
}

function bool(raw: unknown): Parsed {
  if (typeof raw === 'boolean') return { value: raw };
  if (typeof raw === 'string') {
    const s = raw.trim().toLowerCase();
    if (['true', '1', 'yes', 'on'].includes(s)) return { value: true };
    if (['false', '0', 'no', 'off'].includes(s)) return { value: false };
  }
  return { error: 'is not a boolean; use true or false' };
}

function size(min: number, minWhy: string, max?: number, maxWhy?: string): (raw: unknown) => Parsed {
  return (raw) => {
    const r = parseSize(raw);
    if ('error' in r) return r;
    if (r.value < min) return { error: `is too small; use at least ${formatSize(min)} (${minWhy})` };
    if (max !== undefined && r.value > max) {
      return { error: `is too big; use at most ${formatSize(max)} (${maxWhy})` };
    }
    return r;
  };
}

/** A list of non-empty strings; env (and a plain YAML string) give it comma-separated. */
function stringList(raw: unknown): Parsed {
  const items = typeof raw === 'string' ? raw.split(',').map((s) => s.trim()).filter((s) => s !== '') : raw;
  if (!Array.isArray(items)) return { error: 'must be a list of strings (comma-separated in env)' };
  for (const [i, item] of items.entries()) {
    if (typeof item !== 'string' || item.trim() === '') {
      return { error: `has an invalid entry at index ${i}; every entry must be a non-empty string` };
    }
  }
  return { value: items.map((s: string) => s.trim()) };
}

const LISTEN_HINT = 'use host:port, e.g. 0.0.0.0:2022 or [::1]:2022';

function listen(raw: unknown): Parsed {
  if (typeof raw === 'number') return { error: `is only a port; ${LISTEN_HINT}` };
  if (typeof raw !== 'string') return { error: `must be a string; ${LISTEN_HINT}` };
  const text = raw.trim();
  let host: string;
  let port: string;
  const bracketed = /^\[([^\]]*)\]:(.*)$/.exec(text);
  if (bracketed) {
    host = bracketed[1] ?? '';
    port = bracketed[2] ?? '';
    if (!isIPv6(host)) return { error: `has an invalid IPv6 address in brackets; ${LISTEN_HINT}` };
  } else {
    const colon = text.lastIndexOf(':');
    if (colon < 0) return { error: `has no port; ${LISTEN_HINT}` };
    host = text.slice(0, colon);
    port = text.slice(colon + 1);
    if (host.includes(':')) return { error: `has an IPv6 address without brackets; write it as [${host}]:${port}` };
    if (host === '') return { error: `has no host; use 0.0.0.0:${port || 2022} to listen on every interface` };
    if (!/^[A-Za-z0-9.-]+$/.test(host)) return { error: `has an invalid host; ${LISTEN_HINT}` };
  }
  if (!/^\d{1,5}$/.test(port) || Number(port) > 65535) {
    return { error: 'has an invalid port; use a port from 0 to 65535 (0 picks a free one)' };
  }
  return { value: { host, port: Number(port) } };
}

function bucketName(s: string): string | undefined {
  if (/^s3:\/\//i.test(s)) return 'is a URL; write only the bucket name, e.g. my-bucket';
  if (s.includes('/')) return `contains "/"; write only the bucket name and give users a keyPrefix instead`;
  if (/\s/.test(s)) return 'contains whitespace; bucket names never do';
  return undefined;
}

function endpointUrl(s: string): string | undefined {
  if (s === '') return undefined;
  let url: URL;
  try {
    url = new URL(s);
  } catch {
    return 'is not a URL; use e.g. https://s3.example.com or http://minio:9000, or "" for AWS';
  }
  // new URL('minio:9000') parses with protocol "minio:", so check the scheme explicitly.
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    return 'must start with http:// or https://, e.g. http://minio:9000';
  }
  return undefined;
}

/** 0 (off), or old enough that no upload still running on another replica can be mistaken for abandoned. */
function abandonedUploadAge(raw: unknown): Parsed {
  const r = parseDuration(raw);
  if ('error' in r || r.value === 0 || r.value >= 3_600_000) return r;
  return { error: 'is too small; use at least 1h (uploads still running would be aborted), or 0s to turn the clean-up off' };
}

/** A Kubernetes namespace name (DNS label), or "" for the documented fallback. */
function namespaceName(s: string): string | undefined {
  if (s === '' || (s.length <= 63 && /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(s))) return undefined;
  return 'is not a namespace name; use lower-case letters, digits and "-" (at most 63), or "" for the default';
}

/** An IAM role ARN (any partition; S3-compatible stores with STS use their own, e.g. arn:minio:iam:::role/x), or "". */
function roleArn(s: string): string | undefined {
  if (s === '' || /^arn:[\w-]+:iam::\d*:role\/[\w+=,.@/-]+$/.test(s)) return undefined;
  return 'is not an IAM role ARN; use e.g. arn:aws:iam::123456789012:role/s3sftp, or "" for none';
}

/** STS accepts 15 minutes to 12 hours. */
function roleDuration(raw: unknown): Parsed {
  const r = parseDuration(raw);
  if ('error' in r) return r;
  if (r.value < 15 * 60_000) return { error: 'is too short; STS issues credentials for at least 15m' };
  if (r.value > 12 * 3_600_000) return { error: 'is too long; STS issues credentials for at most 12h' };
  if (r.value % 1000 !== 0) return { error: 'is not a whole number of seconds' };
  return r;
}

/** A list of IPv4/IPv6 CIDR blocks (a bare address is a /32 or /128); comma-separated in env. */
function cidrList(raw: unknown): Parsed {
  const r = stringList(raw);
  if ('error' in r) return r;
  for (const item of r.value as string[]) {
    if (!isCidr(item)) return { error: `has "${item}", which is not a CIDR block; use e.g. 10.0.0.0/8 or fd00::/8` };
  }
  return r;
}

function isCidr(s: string): boolean {
  const [address = '', bits, ...rest] = s.split('/');
  const family = isIP(address);
  if (family === 0 || rest.length > 0) return false;
  if (bits === undefined) return true;
  return /^\d{1,3}$/.test(bits) && Number(bits) <= (family === 4 ? 32 : 128);
}

const nonEmpty = (what: string) => (s: string) => (s.trim() === '' ? `must not be empty; ${what}` : undefined);

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
    default: 0,
    doc: 'What SETSTAT does: 0 chmod/chown/chtimes fail; 1 every setstat is ignored; 2 ignore only what S3 cannot store.',
    parse: choice([0, 1, 2], ['chmod/chown/chtimes fail', 'ignore every setstat', 'ignore only what S3 cannot store']),
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
    parse: str(bucketName),
  },
  {
    key: 's3.region',
    default: 'us-east-1',
    doc: 'Region of the bucket; S3-compatible stores usually accept any value.',
    parse: str((s) => (s.trim() === '' || /\s/.test(s) ? 'must be a region name without spaces, e.g. us-east-1' : undefined)),
  },
  {
    key: 's3.endpoint',
    default: '',
    doc: 'Endpoint URL of an S3-compatible store (e.g. http://minio:9000); empty for AWS.',
    parse: str(endpointUrl),
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
    parse: str((s) =>
      /^[A-Z0-9_]*$/.test(s) ? undefined : 'is not a storage class name; use upper case like STANDARD_IA, or "" for the default',
    ),
  },
  {
    key: 's3.acl',
    default: '',
    doc: `Canned ACL for new objects: ${CANNED_ACLS.filter((a) => a).join(', ')}; empty sends none.`,
    parse: choice(CANNED_ACLS),
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
    parse: str(roleArn),
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
    doc: 'Namespace of the Lease s3sftp-status-writer that picks the one replica writing SftpUser status; empty uses POD_NAMESPACE, then the namespace of the in-cluster service account (or kubeconfig context).',
    parse: str(namespaceName),
  },
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

/** S3SFTP_ + the dotted path upper-cased with dots as underscores: s3.upload.partSize → S3SFTP_S3_UPLOAD_PARTSIZE. */
function envName(key: string): string {
  return `S3SFTP_${key.split('.').join('_').toUpperCase()}`;
}

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
// Reading the file.

const LEAVES = new Set(KEYS.map((k) => k.key));
const GROUPS = new Set(KEYS.flatMap((k) => k.key.split('.').slice(0, -1).map((_, i, a) => a.slice(0, i + 1).join('.'))));

function isMapping(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function levenshtein(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      cur[j] = Math.min((prev[j] ?? 0) + 1, (cur[j - 1] ?? 0) + 1, (prev[j - 1] ?? 0) + cost);
    }
    prev = cur;
  }
  return prev[b.length] ?? 0;
}

/** Known keys an unknown one was most likely meant to be: near spellings, or the same name at another level. */
function suggestKeys(path: string): string[] {
  const known = [...LEAVES, ...GROUPS];
  const closest = (distance: (k: string) => number, limit: number): string[] => {
    let best: string[] = [];
    let bestDistance = limit + 1;
    for (const k of known) {
      const d = distance(k);
      if (d > limit) continue;
      if (d < bestDistance) [best, bestDistance] = [[k], d];
      else if (d === bestDistance) best.push(k);
    }
    return best;
  };
  const lower = path.toLowerCase();
  const near = closest((k) => levenshtein(lower, k.toLowerCase()), Math.max(1, Math.floor(path.length / 4)));
  if (near.length > 0) return near;
  // A key put at the wrong level, e.g. top-level "bucket" for "s3.bucket".
  const leaf = (path.split('.').at(-1) ?? '').toLowerCase();
  return closest((k) => levenshtein(leaf, (k.split('.').at(-1) ?? '').toLowerCase()), leaf.length >= 6 ? 1 : 0);
}

function childrenOf(prefix: string): string[] {
  const depth = prefix ? prefix.split('.').length : 0;
  return [...new Set([...LEAVES, ...GROUPS].filter((k) => (prefix ? k.startsWith(`${prefix}.`) : true)).map((k) => k.split('.')[depth] ?? ''))];
}

/** Flattens the file's mapping into dotted keys, reporting unknown keys and misplaced mappings. */
function flatten(obj: Record<string, unknown>, prefix: string, out: Map<string, unknown>, problems: ConfigProblem[]): void {
  for (const [name, value] of Object.entries(obj)) {
    const path = prefix ? `${prefix}.${name}` : name;
    if (LEAVES.has(path)) {
      // An empty YAML value (`endpoint:`) means "not set", not null.
      if (value !== null) out.set(path, value);
    } else if (GROUPS.has(path)) {
      if (isMapping(value)) flatten(value, path, out, problems);
      else if (value !== null) {
        problems.push({ key: path, message: `must be a mapping with the keys ${childrenOf(path).join(', ')}` });
      }
    } else {
      const guesses = suggestKeys(path);
      problems.push({
        key: path,
        message: guesses.length > 0
          ? `is not a known key; did you mean ${guesses.join(' or ')}?`
          : `is not a known key; known keys${prefix ? ` in ${prefix}` : ''}: ${childrenOf(prefix).join(', ')}`,
      });
    }
  }
}

function readFile(file: string, problems: ConfigProblem[]): Map<string, unknown> {
  const out = new Map<string, unknown>();
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'does not exist' : code === 'EACCES' ? 'is not readable' : `cannot be read (${code ?? String(err)})`;
    problems.push({ key: '', message: `config file ${file} ${why}` });
    return out;
  }
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    for (const e of doc.errors) problems.push({ key: '', message: `config file ${file} is not valid YAML: ${e.message}` });
    return out;
  }
  const root: unknown = doc.toJS();
  if (root === null || root === undefined) return out;
  if (!isMapping(root)) {
    problems.push({ key: '', message: `config file ${file} must be a YAML mapping (key: value lines)` });
    return out;
  }
  flatten(root, '', out, problems);
  return out;
}

// ---------------------------------------------------------------------------

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
  const fromFile = options.file !== undefined ? readFile(options.file, problems) : new Map<string, unknown>();
  const values = new Map<string, unknown>();

  for (const spec of KEYS) {
    const env = envName(spec.key);
    const envValue = options.env[env];
    // Empty env vars count as unset: compose files and Helm templates render
    // missing values as "", which should fall back to the file or default.
    // Unknown S3SFTP_* vars are deliberately not errors: Kubernetes injects
    // S3SFTP_PORT, S3SFTP_SERVICE_HOST, ... for a Service named s3sftp.
    let raw: unknown;
    let fromEnv = false;
    if (envValue !== undefined && envValue !== '') {
      raw = envValue;
      fromEnv = true;
    } else if (fromFile.has(spec.key) && !(spec.default === undefined && fromFile.get(spec.key) === '')) {
      raw = fromFile.get(spec.key);
    } else if (spec.default === undefined) {
      problems.push({ key: spec.key, message: `is required; set it in the config file or ${env}` });
      continue;
    } else {
      raw = spec.default;
    }
    const parsed = spec.parse(raw);
    if ('error' in parsed) {
      const message = `${show(raw, spec.secret)} ${parsed.error}`;
      problems.push(fromEnv ? { key: spec.key, env, message } : { key: spec.key, message });
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
      download: transfer('download'),
      abandonedUploadAgeMs: get('s3.abandonedUploadAge'),
    },
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
    metrics: { listen: get('metrics.listen'), perUserLabels: get('metrics.perUserLabels'), perUserLabelLimit: get('metrics.perUserLabelLimit') },
    log: { level: get('log.level') },
  };
  return deepFreeze(config);
}
