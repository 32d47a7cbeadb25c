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
    let first: string | undefined;
    if (!('error' in result)) {
      first = owner.get(result.user.username);
      if (first === undefined) owner.set(result.user.username, key);
    }
    verdicts.set(key, judge(resource, result, first, input));
  }
  const users = new Map<string, User>();
  let pending = 0;
  for (const v of verdicts.values()) {
    if (v.user) users.set(v.user.username, v.user);
    if (!v.ready) pending++;
  }
  return { users, verdicts, pending };
}

/** What judge() reads besides the resource: the same for the whole table and the incremental one. */
type JudgeContext = Pick<UserTableInput, 'secrets' | 'access' | 'previous'>;

/**
 * The verdict for one resource, given whether an older resource already holds its username
 * (`ownedBy`, that resource's key). The one place the rules of the module comment are applied.
 */
function judge(resource: SftpUserResource, result: ParseSftpUserResult, ownedBy: string | undefined, input: JudgeContext): Verdict {
  const key = objectKey(resource.metadata);
  const generation = resource.metadata.generation ?? 0;
  const ready = (status: 'True' | 'False', reason: DesiredReady['reason'], message: string): DesiredReady => ({
    status,
    reason,
    message: truncate(message),
    observedGeneration: generation,
  });
  if ('error' in result) return { ready: ready('False', 'InvalidSpec', result.error) };
  const username = result.user.username;
  if (ownedBy !== undefined) {
    const message = `username ${username} is already used by SftpUser ${ownedBy}, which is older; set a different spec.username`;
    return { ready: ready('False', 'UsernameConflict', message) };
  }
  const namespace = resource.metadata.namespace ?? '';
  const resolved = resolvePassword(namespace, result.passwordSecretRef, input.secrets.get(namespace));
  if (resolved === undefined) {
    // Keep serving what this resource gave before until its Secrets are listed.
    const previous = input.previous?.get(username);
    return { user: previous?.source === result.user.source ? previous : undefined };
  }
  if ('reason' in resolved) return { ready: ready('False', resolved.reason, resolved.message) };
  if (result.user.s3.sse?.customerKeyFile) {
    // A path on the server's own filesystem is not for resources anyone with create rights can write.
    const message = 'spec.s3.sse.customerKeyFile: works only for SftpUser files (users.directory); in Kubernetes keep the key in a Secret and use spec.s3.sse.customerKeySecretRef';
    return { ready: ready('False', 'InvalidSpec', message) };
  }
  // spec.s3.sse.customerKeySecretRef: the SSE-C key, resolved like the password (issue 13).
  const sseKey = resolveSseKey(namespace, result.sseKeySecretRef, input.secrets.get(namespace));
  if (sseKey === undefined) {
    const previous = input.previous?.get(username);
    return { user: previous?.source === result.user.source ? previous : undefined };
  }
  if ('reason' in sseKey) return { ready: ready('False', sseKey.reason, sseKey.message) };
  let user: User = resolved.hash === undefined ? result.user : Object.freeze({ ...result.user, passwordHash: resolved.hash });
  if (sseKey.key) {
    user = Object.freeze({ ...user, s3: Object.freeze({ ...user.s3, sse: Object.freeze({ ...user.s3.sse, customerKey: sseKey.key }) }) });
  }
  const notes = [...result.warnings.map((w) => `it ${w}`), ...(user.disabled ? ['it is disabled, so logins are refused'] : [])];
  const access = input.access?.(key, user);
  if (access && !access.ok) return { user, ready: ready('False', access.reason, access.message) };
  return { user, ready: ready('True', 'Loaded', `loaded as user ${username}${notes.length ? `; ${notes.join('; ')}` : ''}`) };
}

interface Entry {
  key: string;
  resource: SftpUserResource;
  result: ParseSftpUserResult;
  /** The username this resource claims; undefined when its spec is invalid. */
  username: string | undefined;
  /** "namespace/secret" of every Secret it references. */
  secretRefs: string[];
}

/** What one flush() changed: the users and verdicts to publish (undefined: gone). */
export interface UserTableChanges {
  users: Map<string, User | undefined>;
  verdicts: Map<string, Verdict | undefined>;
}

/**
 * The same table as computeUserTable, kept up to date one resource at a time: a change to one
 * SftpUser or Secret re-judges only the resources it can affect (those claiming the same
 * username, those referencing the Secret), so an update costs the same with 10 users or 10,000.
 * The controller tells it what changed and calls flush(); unit tests hold it to computeUserTable.
 */
export class IncrementalUserTable {
  readonly #entries = new Map<string, Entry>();
  /** Valid resources by the username they claim, in ranking order (oldest first). */
  readonly #claims = new Map<string, Entry[]>();
  /** Resource keys by "namespace/secret" they reference. */
  readonly #bySecret = new Map<string, Set<string>>();
  /** Resource keys with any Secret reference, by namespace. */
  readonly #byNamespace = new Map<string, Set<string>>();
  readonly #verdicts = new Map<string, Verdict>();
  readonly #users = new Map<string, User>();
  /** Usernames whose claimants need judging again. */
  readonly #dirtyNames = new Set<string>();
  /** Invalid resources (no username) to judge again, and removed keys to report. */
  readonly #dirtyKeys = new Set<string>();
  #pending = 0;

  /** By username. */
  get users(): ReadonlyMap<string, User> {
    return this.#users;
  }

  /** By "namespace/name". */
  get verdicts(): ReadonlyMap<string, Verdict> {
    return this.#verdicts;
  }

  /** Resources whose verdict waits for a Secret listing (as of the last flush). */
  get pending(): number {
    return this.#pending;
  }

  /** Namespaces where some valid resource references a Secret. */
  namespacesWithSecretRefs(): Set<string> {
    return new Set(this.#byNamespace.keys());
  }

  /** Keys of every resource held. */
  keys(): IterableIterator<string> {
    return this.#entries.keys();
  }

  /** The resource held for a key. */
  resource(key: string): SftpUserResource | undefined {
    return this.#entries.get(key)?.resource;
  }

  /** A resource was added or changed; `result` is its validation. */
  upsert(resource: SftpUserResource, result: ParseSftpUserResult): void {
    const key = objectKey(resource.metadata);
    const old = this.#entries.get(key);
    if (old) this.#unindex(old);
    const namespace = resource.metadata.namespace ?? '';
    const valid = !('error' in result);
    const refs = valid ? [result.passwordSecretRef, result.sseKeySecretRef].flatMap((r) => (r ? [`${namespace}/${r.name}`] : [])) : [];
    const entry: Entry = { key, resource, result, username: valid ? result.user.username : undefined, secretRefs: refs };
    this.#entries.set(key, entry);
    this.#index(entry);
  }

  /** A resource was deleted. */
  remove(key: string): void {
    const old = this.#entries.get(key);
    if (!old) return;
    this.#unindex(old);
    this.#entries.delete(key);
  }

  /** A Secret changed (or was deleted): judge again the resources that reference it. */
  secretChanged(namespace: string, name: string): void {
    for (const key of this.#bySecret.get(`${namespace}/${name}`) ?? []) this.touch(key);
  }

  /** A namespace's Secrets were listed, or their listing failed: judge its referencing resources again. */
  namespaceChanged(namespace: string): void {
    for (const key of this.#byNamespace.get(namespace) ?? []) this.touch(key);
  }

  /** Judge one resource again (an access check result, a usage count). */
  touch(key: string): void {
    const entry = this.#entries.get(key);
    if (!entry) return;
    if (entry.username === undefined) this.#dirtyKeys.add(key);
    else this.#dirtyNames.add(entry.username);
  }

  /** Judge every resource again (this replica started or stopped running access checks). */
  touchAll(): void {
    for (const key of this.#entries.keys()) this.touch(key);
  }

  /**
   * Judges what changed since the last flush and returns the users and verdicts that differ.
   * `secrets` and `access` are read as computeUserTable reads them; the previous user of a
   * pending resource is this table's own.
   */
  flush(input: Omit<JudgeContext, 'previous'>): UserTableChanges {
    const changes: UserTableChanges = { users: new Map(), verdicts: new Map() };
    const context: JudgeContext = { ...input, previous: this.#users };
    const setVerdict = (key: string, verdict: Verdict | undefined) => {
      const before = this.#verdicts.get(key);
      if (before && !before.ready) this.#pending--;
      if (verdict) {
        this.#verdicts.set(key, verdict);
        if (!verdict.ready) this.#pending++;
      } else {
        this.#verdicts.delete(key);
      }
      if (before !== verdict) changes.verdicts.set(key, verdict);
    };
    for (const key of this.#dirtyKeys) {
      const entry = this.#entries.get(key);
      if (!entry) setVerdict(key, undefined);
      else if (entry.username === undefined) setVerdict(key, judge(entry.resource, entry.result, undefined, context));
    }
    this.#dirtyKeys.clear();
    for (const username of this.#dirtyNames) {
      const claimants = this.#claims.get(username) ?? [];
      let user: User | undefined;
      for (const [i, entry] of claimants.entries()) {
        const verdict = judge(entry.resource, entry.result, i === 0 ? undefined : claimants[0]?.key, context);
        if (i === 0) user = verdict.user;
        setVerdict(entry.key, verdict);
      }
      const before = this.#users.get(username);
      if (user) this.#users.set(username, user);
      else this.#users.delete(username);
      if (before !== user) changes.users.set(username, user);
    }
    this.#dirtyNames.clear();
    return changes;
  }

  #index(entry: Entry): void {
    const namespace = entry.resource.metadata.namespace ?? '';
    if (entry.username === undefined) {
      this.#dirtyKeys.add(entry.key);
      return;
    }
    this.#dirtyNames.add(entry.username);
    const claimants = this.#claims.get(entry.username) ?? [];
    // Insert in ranking order: oldest creationTimestamp first, then namespace/name.
    const at = createdAt(entry.resource.metadata);
    let i = 0;
    while (i < claimants.length) {
      const other = claimants[i] as Entry;
      const d = createdAt(other.resource.metadata) - at || other.key.localeCompare(entry.key);
      if (d > 0) break;
      i++;
    }
    claimants.splice(i, 0, entry);
    this.#claims.set(entry.username, claimants);
    for (const ref of entry.secretRefs) addTo(this.#bySecret, ref, entry.key);
    if (entry.secretRefs.length) addTo(this.#byNamespace, namespace, entry.key);
  }

  #unindex(entry: Entry): void {
    const namespace = entry.resource.metadata.namespace ?? '';
    // Removed keys are reported by the next flush; a key upserted again is judged again there.
    this.#dirtyKeys.add(entry.key);
    if (entry.username === undefined) return;
    this.#dirtyNames.add(entry.username);
    const claimants = (this.#claims.get(entry.username) ?? []).filter((e) => e !== entry);
    if (claimants.length) this.#claims.set(entry.username, claimants);
    else this.#claims.delete(entry.username);
    for (const ref of entry.secretRefs) removeFrom(this.#bySecret, ref, entry.key);
    if (entry.secretRefs.length) removeFrom(this.#byNamespace, namespace, entry.key);
  }
}

function addTo(index: Map<string, Set<string>>, at: string, key: string): void {
  let set = index.get(at);
  if (!set) index.set(at, (set = new Set()));
  set.add(key);
}

function removeFrom(index: Map<string, Set<string>>, at: string, key: string): void {
  const set = index.get(at);
  if (!set) return;
  set.delete(key);
  if (set.size === 0) index.delete(at);
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
