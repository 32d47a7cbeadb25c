/**
 * The user table as a pure function of what the informers hold: SftpUser resources and the
 * Secrets of the namespaces they reference. No timers, no I/O: the controller calls it on every
 * rebuild, and unit tests call it directly.
 *
 * Rules: a resource whose spec is invalid yields no user (InvalidSpec); two resources with the same
 * username are ranked oldest creationTimestamp first, then namespace/name, and only the first one
 * is served (UsernameConflict for the rest); a password in a Secret is resolved from the cache (a
 * namespace not listed yet leaves the verdict pending); a failed access check keeps the user
 * loaded but not Ready.
 */
import { passwordHashAlgorithm } from '../auth/password.ts';
import { parseCustomerKey } from '../config/sse.ts';
import type { AccessCheck } from '../users/access.ts';
import { validateSftpUser, type ParseSftpUserResult, type PasswordSecretRef } from '../users/sftp-user.ts';
import type { User } from '../users/user.ts';
import { createdAt, objectKey, type DesiredReady, type SecretResource, type SftpUserResource } from './sftp-user-resource.ts';

/** The API server limits a condition message to 32768 characters; keep them readable. */
const MAX_MESSAGE = 4096;

/**
 * The Secrets of one namespace as the controller sees them: listed (by name), still being listed,
 * or refused with an HTTP status.
 */
export type NamespaceSecrets =
  | { listed: true; get(name: string): SecretResource | undefined }
  | { listed: false; errorStatus?: number };

/**
 * The verdict for one resource: the user it yields (if any) and its Ready condition, which is
 * undefined while a Secret it needs is not listed yet.
 */
export interface Verdict {
  user?: User;
  ready?: DesiredReady;
}

export interface UserTableInput {
  resources: readonly SftpUserResource[];
  /** By namespace; a namespace missing here has no Secret informer yet (pending). */
  secrets: ReadonlyMap<string, NamespaceSecrets>;
  /** The server's s3.bucket, for users that name none. */
  defaultBucket: string;
  /** Validates one resource; the controller passes a per-generation cache of validateSftpUser. */
  parse?: (resource: SftpUserResource) => ParseSftpUserResult;
  /** The last access check of a resource's user, undefined while unknown (or not checked here). */
  access?: (key: string, user: User) => AccessCheck | undefined;
  /** The previous table, to keep serving a user while its Secrets are being listed. */
  previous?: ReadonlyMap<string, User>;
}

export interface UserTable {
  /** By username. */
  users: Map<string, User>;
  /** By "namespace/name", in ranking order. */
  verdicts: Map<string, Verdict>;
  /** Resources whose verdict waits for a Secret listing. */
  pending: number;
}

/** Oldest first, then namespace/name: the order in which resources claim usernames. */
export function rankResources(resources: readonly SftpUserResource[]): SftpUserResource[] {
  return [...resources].sort(
    (a, b) => createdAt(a.metadata) - createdAt(b.metadata) || objectKey(a.metadata).localeCompare(objectKey(b.metadata)),
  );
}

/** The namespaces whose Secrets some valid resource references. */
export function namespacesWithSecretRefs(parsed: readonly { resource: SftpUserResource; result: ParseSftpUserResult }[]): Set<string> {
  const needed = new Set<string>();
  for (const { resource, result } of parsed) {
    if (!('error' in result) && (result.passwordSecretRef || result.sseKeySecretRef)) needed.add(resource.metadata.namespace ?? '');
  }
  return needed;
}

/** Computes the user table and each resource's Ready verdict; see the module comment. */
export function computeUserTable(input: UserTableInput): UserTable {
  const parse = input.parse ?? ((r: SftpUserResource) => validateSftpUser(r, { defaultBucket: input.defaultBucket, source: `kube ${objectKey(r.metadata)}` }));
  const verdicts = new Map<string, Verdict>();
  const owner = new Map<string, string>();
  for (const resource of rankResources(input.resources)) {
    const key = objectKey(resource.metadata);
    const result = parse(resource);
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
      const message = `username ${username} is already used by SftpUser ${first}, which is older; set a different spec.username`;
      verdicts.set(key, { ready: ready('False', 'UsernameConflict', message) });
      continue;
    }
    owner.set(username, key);
    const namespace = resource.metadata.namespace ?? '';
    const resolved = resolvePassword(namespace, result.passwordSecretRef, input.secrets.get(namespace));
    if (resolved === undefined) {
      // Keep serving what this resource gave before until its Secrets are listed.
      const previous = input.previous?.get(username);
      verdicts.set(key, { user: previous?.source === result.user.source ? previous : undefined });
      continue;
    }
    if ('reason' in resolved) {
      verdicts.set(key, { ready: ready('False', resolved.reason, resolved.message) });
      continue;
    }
    if (result.user.s3.sse?.customerKeyFile) {
      // A path on the server's own filesystem is not for resources anyone with create rights can write.
      const message = 'spec.s3.sse.customerKeyFile: works only for SftpUser files (users.directory); in Kubernetes keep the key in a Secret and use spec.s3.sse.customerKeySecretRef';
      verdicts.set(key, { ready: ready('False', 'InvalidSpec', message) });
      continue;
    }
    // spec.s3.sse.customerKeySecretRef: the SSE-C key, resolved like the password (issue 13).
    const sseKey = resolveSseKey(namespace, result.sseKeySecretRef, input.secrets.get(namespace));
    if (sseKey === undefined) {
      const previous = input.previous?.get(username);
      verdicts.set(key, { user: previous?.source === result.user.source ? previous : undefined });
      continue;
    }
    if ('reason' in sseKey) {
      verdicts.set(key, { ready: ready('False', sseKey.reason, sseKey.message) });
      continue;
    }
    let user: User = resolved.hash === undefined ? result.user : Object.freeze({ ...result.user, passwordHash: resolved.hash });
    if (sseKey.key) {
      user = Object.freeze({ ...user, s3: Object.freeze({ ...user.s3, sse: Object.freeze({ ...user.s3.sse, customerKey: sseKey.key }) }) });
    }
    const notes = [...result.warnings.map((w) => `it ${w}`), ...(user.disabled ? ['it is disabled, so logins are refused'] : [])];
    const access = input.access?.(key, user);
    if (access && !access.ok) {
      verdicts.set(key, { user, ready: ready('False', access.reason, access.message) });
      continue;
    }
    verdicts.set(key, { user, ready: ready('True', 'Loaded', `loaded as user ${username}${notes.length ? `; ${notes.join('; ')}` : ''}`) });
  }
  const users = new Map<string, User>();
  let pending = 0;
  for (const v of verdicts.values()) {
    if (v.user) users.set(v.user.username, v.user);
    if (!v.ready) pending++;
  }
  return { users, verdicts, pending };
}

/**
 * The password hash from the user's Secret: `{ hash }` (undefined without a reference), a
 * reason why it cannot be had, or undefined while the namespace's Secrets are not listed yet.
 */
export function resolvePassword(
  namespace: string,
  ref: PasswordSecretRef | undefined,
  secrets: NamespaceSecrets | undefined,
): { hash: string | undefined } | { reason: DesiredReady['reason']; message: string } | undefined {
  if (!ref) return { hash: undefined };
  if (!secrets) return undefined;
  const where = `Secret ${ref.name} in namespace ${namespace}`;
  if (!secrets.listed) {
    const status = secrets.errorStatus;
    if (status === 401 || status === 403) {
      return {
        reason: 'SecretUnreadable',
        message: `the server may not list Secrets in namespace ${namespace} (HTTP ${status}); grant its service account get, list and watch on secrets there`,
      };
    }
    return undefined;
  }
  const secret = secrets.get(ref.name);
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

/** The SSE-C key from the user's Secret; same shape of answer as resolvePassword. */
export function resolveSseKey(
  namespace: string,
  ref: PasswordSecretRef | undefined,
  secrets: NamespaceSecrets | undefined,
): { key: Buffer | undefined } | { reason: DesiredReady['reason']; message: string } | undefined {
  if (!ref) return { key: undefined };
  if (!secrets) return undefined;
  const where = `Secret ${ref.name} in namespace ${namespace}`;
  if (!secrets.listed) {
    const status = secrets.errorStatus;
    if (status === 401 || status === 403) {
      return { reason: 'SecretUnreadable', message: `the server may not list Secrets in namespace ${namespace} (HTTP ${status}); grant its service account get, list and watch on secrets there` };
    }
    return undefined;
  }
  const secret = secrets.get(ref.name);
  if (!secret) {
    return {
      reason: 'SecretNotFound',
      message: `${where} (spec.s3.sse.customerKeySecretRef) does not exist; create it, e.g. kubectl create secret generic ${ref.name} --from-literal=${ref.key}="$(openssl rand -base64 32)"`,
    };
  }
  const encoded = secret.data?.[ref.key];
  if (encoded === undefined) {
    return { reason: 'SecretKeyMissing', message: `${where} has no key ${ref.key}; add the SSE-C key under ${ref.key}, or set spec.s3.sse.customerKeySecretRef.key` };
  }
  const parsed = parseCustomerKey(Buffer.from(encoded, 'base64'), `key ${ref.key} of ${where}`);
  if ('error' in parsed) return { reason: 'InvalidSecret', message: parsed.error };
  return { key: parsed.key };
}

function truncate(message: string): string {
  return message.length > MAX_MESSAGE ? `${message.slice(0, MAX_MESSAGE - 3)}...` : message;
}
