/** The user model shared by every user source and by the SSH/SFTP layers. */

/** What a user may do; "*" in a resource expands to all of them. */
export const PERMISSIONS = [
  'list',
  'download',
  'upload',
  'overwrite',
  'delete',
  'rename',
  'create_dirs',
] as const;

export type Permission = (typeof PERMISSIONS)[number];

/** One loaded, validated SftpUser. Immutable once built. */
export interface User {
  username: string;
  disabled: boolean;
  /** bcrypt ($2a$/$2b$/$2y$) or argon2id hash; undefined disables passwords. */
  passwordHash?: string;
  /** OpenSSH authorized_keys lines, already validated. */
  publicKeys: string[];
  s3: {
    /** Bucket for this user; the server default when the resource leaves it empty. */
    bucket: string;
    /** The user's chroot: "" or a prefix ending in "/". */
    keyPrefix: string;
    /** Region of the bucket when it differs from the server's s3.region; unset: the server's. */
    region?: string;
    /** Endpoint URL of the store that holds the bucket; unset: the server's s3.endpoint. */
    endpoint?: string;
    /** Storage class of this user's uploads; unset: the server's s3.storageClass. */
    storageClass?: string;
    /** IAM role assumed for this user's S3 requests; unset: the server's own credentials. */
    roleArn?: string;
    /** spec.s3.sse: encryption overrides; unset fields fall back to the server's s3.sse. */
    sse?: UserSse;
  };
  permissions: ReadonlySet<Permission>;
  /** spec.allowedCIDRs: the source addresses this user may log in from; undefined or empty: any. */
  allowedCIDRs?: readonly string[];
  /** Where this user came from, for logs ("file users/alice.yaml", "kube ns/alice"). */
  source: string;
}

/** spec.s3.sse as loaded; the SSE-C key is resolved by the source (Secret) or read at session start (file). */
export interface UserSse {
  mode?: 'none' | 'AES256' | 'aws:kms' | 'aws:kms:dsse';
  kmsKeyId?: string;
  bucketKeyEnabled?: boolean;
  /** YAML users only: a file holding the SSE-C key as base64. */
  customerKeyFile?: string;
  /** The SSE-C key, resolved from customerKeySecretRef. */
  customerKey?: Buffer;
}

/** The optional spec.s3 fields, for code that copies or compares them. */
export const USER_S3_OPTIONAL = ['region', 'endpoint', 'storageClass', 'roleArn'] as const;

/**
 * True when two users would authenticate and behave the same (source included), so a
 * reload that produces an equal user is not reported as a change.
 */
export function sameUser(a: User, b: User): boolean {
  return (
    a.username === b.username &&
    a.disabled === b.disabled &&
    a.passwordHash === b.passwordHash &&
    a.source === b.source &&
    a.s3.bucket === b.s3.bucket &&
    a.s3.keyPrefix === b.s3.keyPrefix &&
    USER_S3_OPTIONAL.every((k) => a.s3[k] === b.s3[k]) &&
    sameSse(a.s3.sse, b.s3.sse) &&
    a.publicKeys.length === b.publicKeys.length &&
    a.publicKeys.every((k, i) => k === b.publicKeys[i]) &&
    (a.allowedCIDRs ?? []).join() === (b.allowedCIDRs ?? []).join() &&
    a.permissions.size === b.permissions.size &&
    [...a.permissions].every((p) => b.permissions.has(p))
  );
}

/** A source of users: the directory watcher, the Kubernetes controller, or both merged. */
export interface UserSource {
  /** The current user with this name, or undefined. */
  get(username: string): User | undefined;
  /** All users currently loaded. */
  all(): User[];
  /** True once the first full load has been applied. */
  readonly ready: boolean;
  /** Called after every change; `username` names the user that changed. */
  onChange(listener: (username: string) => void): () => void;
  close(): Promise<void>;
}

function sameSse(a: UserSse | undefined, b: UserSse | undefined): boolean {
  if (!a || !b) return a === b;
  return (
    a.mode === b.mode &&
    a.kmsKeyId === b.kmsKeyId &&
    a.bucketKeyEnabled === b.bucketKeyEnabled &&
    a.customerKeyFile === b.customerKeyFile &&
    (a.customerKey?.toString('base64') ?? '') === (b.customerKey?.toString('base64') ?? '')
  );
}
