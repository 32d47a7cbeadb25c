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
  /**
   * spec.folders: parts of the user's tree kept elsewhere (virtual folders), each with its own bucket,
   * prefix, identity and permissions; undefined or empty: none. Never nested in one another.
   */
  folders?: readonly Folder[];
  /** spec.allowedCIDRs: the source addresses this user may log in from; undefined or empty: any. */
  allowedCIDRs?: readonly string[];
  /** spec.quota: limits on what the user stores; unset or 0: no limit. */
  quota?: { maxBytes?: number; maxFiles?: number };
  /** spec.bandwidth: the user's transfer rates in KiB/s, all sessions together; unset or 0: unlimited. */
  bandwidth?: { uploadKiBps?: number; downloadKiBps?: number };
  /** Where this user came from, for logs ("file users/alice.yaml", "kube ns/alice"). */
  source: string;
}

/** One virtual folder: a mount point in the user's tree backed by its own S3 location. */
export interface Folder {
  /** Absolute, normalised, never "/": "/inbound", "/partners/acme". */
  path: string;
  /** Where the folder's files live, with the user's own settings filled in for fields it leaves unset. */
  s3: User['s3'];
  /** What the user may do inside the folder, instead of the home's permissions. */
  permissions: ReadonlySet<Permission>;
}

/**
 * The permissions that apply at a normalised path: those of the folder the path is in (the mount
 * point itself included), else the home's. A parent of a mount point ("/" for /outbound) can always
 * be listed, so a user without "list" in the home can still find their folders; the listing then
 * shows the mount points only (MountedStorage's homeListable).
 */
export function permissionsAt(user: Pick<User, 'permissions' | 'folders'>, path: string): ReadonlySet<Permission> {
  const folder = folderAt(user, path);
  if (folder) return folder.permissions;
  if (user.permissions.has('list') || !isFolderParent(user, path)) return user.permissions;
  return new Set([...user.permissions, 'list']);
}

/** True when a folder's mount point lies below `path` (normalised). */
export function isFolderParent(user: Pick<User, 'folders'>, path: string): boolean {
  return (user.folders ?? []).some((f) => f.path.startsWith(path === '/' ? '/' : `${path}/`));
}

/** The folder a normalised path lies in (its mount point included), or undefined for the home. */
export function folderAt(user: Pick<User, 'folders'>, path: string): Folder | undefined {
  return user.folders?.find((f) => path === f.path || path.startsWith(`${f.path}/`));
}

function sameSet<T>(a: ReadonlySet<T>, b: ReadonlySet<T>): boolean {
  return a.size === b.size && [...a].every((x) => b.has(x));
}

function sameFolders(a: readonly Folder[] = [], b: readonly Folder[] = []): boolean {
  return (
    a.length === b.length &&
    a.every((f, i) => {
      const g = b[i] as Folder;
      return (
        f.path === g.path &&
        f.s3.bucket === g.s3.bucket &&
        f.s3.keyPrefix === g.s3.keyPrefix &&
        USER_S3_OPTIONAL.every((k) => f.s3[k] === g.s3[k]) &&
        sameSet(f.permissions, g.permissions)
      );
    })
  );
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
    sameLimits(a.quota, b.quota) &&
    sameLimits(a.bandwidth, b.bandwidth) &&
    a.permissions.size === b.permissions.size &&
    [...a.permissions].every((p) => b.permissions.has(p)) &&
    sameFolders(a.folders, b.folders)
  );
}

/** True when two optional limit objects (spec.quota, spec.bandwidth) hold the same values. */
function sameLimits(a: Readonly<Record<string, number | undefined>> | undefined, b: Readonly<Record<string, number | undefined>> | undefined): boolean {
  const keys = new Set([...Object.keys(a ?? {}), ...Object.keys(b ?? {})]);
  return [...keys].every((k) => a?.[k] === b?.[k]);
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
