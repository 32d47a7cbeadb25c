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
  };
  permissions: ReadonlySet<Permission>;
  /** Where this user came from, for logs ("file users/alice.yaml", "kube ns/alice"). */
  source: string;
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
