/**
 * Validates one SftpUser resource (from a YAML file or the Kubernetes API)
 * and turns it into a User. Every problem is reported with the field it is in
 * and how to fix it; nothing here throws.
 */

import ssh2 from 'ssh2';
import type { ParsedKey } from 'ssh2';
import { passwordHashAlgorithm } from '../auth/password.ts';
import { bucketNameProblem, endpointProblem, regionProblem, roleArnProblem, storageClassProblem } from '../config/validators.ts';
import { crdSchemaProblems } from './crd-schema.ts';
import { PERMISSIONS, type Folder, type Permission, type User, type UserSse } from './user.ts';
import { SSE_MODES, sseProblems } from '../config/sse.ts';
import { parseCidr } from '../ssh/cidr.ts';

const { utils } = ssh2;

export const API_VERSION = 's3sftp.io/v1alpha1';
export const KIND = 'SftpUser';

/** Case-sensitive, lower case only: one login name maps to exactly one resource. */
export const USERNAME_RE = /^[a-z0-9][a-z0-9._-]{0,62}$/;

/** What parseSftpUser needs from its caller. */
export interface ParseSftpUserOptions {
  /** The server's s3.bucket, used when spec.s3.bucket is empty. */
  defaultBucket: string;
  /** Where the resource came from, copied to User.source for logs. */
  source: string;
}

/** spec.passwordSecretRef: where a Kubernetes Secret in the resource's namespace keeps the hash. */
export interface PasswordSecretRef {
  name: string;
  /** Key in the Secret's data; "passwordHash" when the resource leaves it out. */
  key: string;
}

/**
 * A valid user (with `warnings` worth logging, e.g. it cannot log in), or an
 * error naming each bad field and its fix, joined by "; ". With
 * `passwordSecretRef`, `user.passwordHash` is unset: the caller resolves the
 * Secret and adds the hash (only the Kubernetes source can).
 */
export type ParseSftpUserResult =
  | { user: User; warnings: string[]; passwordSecretRef?: PasswordSecretRef; sseKeySecretRef?: PasswordSecretRef }
  | { error: string };

const TOP_FIELDS = ['apiVersion', 'kind', 'metadata', 'spec', 'status'];
const SPEC_FIELDS = ['username', 'disabled', 'passwordHash', 'passwordSecretRef', 'publicKeys', 's3', 'permissions', 'allowedCIDRs', 'folders', 'quota', 'bandwidth'];
const S3_FIELDS = ['bucket', 'keyPrefix', 'region', 'endpoint', 'storageClass', 'roleArn', 'sse'];
const SECRET_REF_FIELDS = ['name', 'key'];
const DEFAULT_SECRET_KEY = 'passwordHash';

/** A Kubernetes object name (DNS subdomain), as Secrets have. */
const SECRET_NAME_RE = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const SECRET_KEY_RE = /^[-._a-zA-Z0-9]+$/;

/**
 * The optional spec.s3 strings, checked as the server's own s3.* settings are (config/validators.ts);
 * the CRD carries the same rules. Empty means "the server's setting".
 */
const S3_OPTIONAL_RULES: Record<'region' | 'endpoint' | 'storageClass' | 'roleArn', (s: string) => string | undefined> = {
  region: regionProblem,
  endpoint: endpointProblem,
  storageClass: storageClassProblem,
  roleArn: roleArnProblem,
};

function isMapping(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function unknownFields(obj: Record<string, unknown>, known: string[], path: string, problems: string[]): void {
  for (const name of Object.keys(obj)) {
    if (known.includes(name)) continue;
    const near = known.find((k) => k.toLowerCase() === name.toLowerCase());
    problems.push(
      `${path}${name}: is not a known field; ${near ? `did you mean ${near}?` : `use only ${known.join(', ')}`}`,
    );
  }
}

/** Checks a key prefix and adds the trailing "/"; returns an error sentence instead if it is unsafe. */
function normalizeKeyPrefix(prefix: string): { value: string } | { error: string } {
  if (prefix === '') return { value: '' };
  if (prefix.startsWith('/')) return { error: 'must not start with "/"; S3 keys are relative, e.g. users/alice/' };
  if (/[\u0000-\u001f\u007f]/.test(prefix)) return { error: 'must not contain control characters' };
  if (prefix.includes('//')) return { error: 'must not contain "//"; empty path segments are not allowed' };
  const segments = prefix.replace(/\/$/, '').split('/');
  if (segments.some((s) => s === '.' || s === '..')) {
    return { error: 'must not contain "." or ".." segments; name the directory directly, e.g. users/alice/' };
  }
  const value = prefix.endsWith('/') ? prefix : `${prefix}/`;
  // S3 keys are at most 1024 bytes; leave most of that for the user's own paths.
  if (Buffer.byteLength(value) > 512) return { error: 'is longer than 512 bytes; S3 keys are limited to 1024' };
  return { value };
}

/**
 * Verdicts of publicKeyProblem by key line. Parsing a key is most of validating a resource, and a
 * resource is validated again on every new generation (an edit of any other field), so 10,000
 * users under a stream of edits would re-parse the same lines all day. Bounded; oldest go first.
 */
const keyLineVerdicts = new Map<string, string | undefined>();
const KEY_LINE_CACHE_LIMIT = 50_000;

/** Why this authorized-key line is unusable, or undefined if it is a valid public key. */
function publicKeyProblem(line: string): string | undefined {
  if (keyLineVerdicts.has(line)) return keyLineVerdicts.get(line);
  const problem = parsePublicKeyProblem(line);
  if (keyLineVerdicts.size >= KEY_LINE_CACHE_LIMIT) {
    const oldest = keyLineVerdicts.keys().next();
    if (!oldest.done) keyLineVerdicts.delete(oldest.value);
  }
  keyLineVerdicts.set(line, problem);
  return problem;
}

function parsePublicKeyProblem(line: string): string | undefined {
  const example = 'paste one line of a .pub file, e.g. "ssh-ed25519 AAAA... alice@laptop"';
  // Say it plainly (and never echo it back): a private key was pasted where a public one belongs.
  if (/PRIVATE KEY|PuTTY-User-Key-File/.test(line)) {
    return `is a private key; remove it (and consider it leaked), then ${example}`;
  }
  if (/\n/.test(line.trim())) return `holds more than one line; put one key per list entry`;
  let parsed = utils.parseKey(line) as ParsedKey | ParsedKey[] | Error;
  if (Array.isArray(parsed)) parsed = parsed[0] ?? new Error('no key');
  if (parsed instanceof Error) {
    const first = line.trim().split(/\s+/)[0] ?? '';
    if (first !== '' && !/^(ssh-|ecdsa-|sk-)/.test(first)) {
      return `starts with "${first.slice(0, 40)}"; authorized_keys options are not supported, ${example}`;
    }
    return `is not a valid public key (${parsed.message}); ${example}`;
  }
  if (parsed.isPrivateKey()) return `is a private key; remove it (and consider it leaked), then ${example}`;
  return undefined;
}

function stringOrEmpty(v: unknown): boolean {
  return v === undefined || v === null || typeof v === 'string';
}

/**
 * Validates an SftpUser resource (already parsed from YAML/JSON) and builds
 * the User. Username defaults to metadata.name; spec.s3.keyPrefix is required
 * (use "" for the whole bucket) so a forgotten prefix never means "everything".
 */
export function parseSftpUser(doc: unknown, opts: ParseSftpUserOptions): ParseSftpUserResult {
  if (!isMapping(doc)) return { error: 'is not a mapping; an SftpUser has apiVersion, kind, metadata and spec' };
  const problems: string[] = [];

  if (doc.apiVersion !== API_VERSION) {
    problems.push(`apiVersion: ${JSON.stringify(doc.apiVersion ?? null)} is not supported; use ${API_VERSION}`);
  }
  if (doc.kind !== KIND) problems.push(`kind: ${JSON.stringify(doc.kind ?? null)} is not supported; use ${KIND}`);
  // A wrong kind means this is some other resource: its fields are not ours to judge.
  if (problems.length > 0) return { error: problems.join('; ') };
  unknownFields(doc, TOP_FIELDS, '', problems);

  const metadata = doc.metadata;
  const name = isMapping(metadata) ? metadata.name : undefined;
  if (!isMapping(metadata)) problems.push('metadata: is missing; add metadata: { name: <username> }');
  else if (typeof name !== 'string' || name === '') problems.push('metadata.name: is missing; add the user\'s name');

  const spec = doc.spec;
  if (!isMapping(spec)) {
    problems.push('spec: is missing; add spec with at least s3.keyPrefix and permissions');
    return { error: problems.join('; ') };
  }
  unknownFields(spec, SPEC_FIELDS, 'spec.', problems);

  // username
  let username = '';
  if (spec.username !== undefined && spec.username !== null && spec.username !== '') {
    if (typeof spec.username !== 'string') problems.push('spec.username: must be a string');
    else username = spec.username;
  } else if (typeof name === 'string') {
    username = name;
  }
  if (username !== '' && !USERNAME_RE.test(username)) {
    const field = spec.username ? 'spec.username' : 'metadata.name (used as the username)';
    problems.push(
      `${field}: ${JSON.stringify(username)} is not a valid username; use 1-63 lower-case letters, digits, ".", "_" or "-", starting with a letter or digit`,
    );
  }

  // disabled
  if (spec.disabled !== undefined && spec.disabled !== null && typeof spec.disabled !== 'boolean') {
    problems.push('spec.disabled: must be true or false');
  }
  const disabled = spec.disabled === true;

  // passwordHash
  let passwordHash: string | undefined;
  if (!stringOrEmpty(spec.passwordHash)) {
    problems.push('spec.passwordHash: must be a string; generate one with `s3sftp hash-password`');
  } else if (typeof spec.passwordHash === 'string' && spec.passwordHash !== '') {
    if (passwordHashAlgorithm(spec.passwordHash) === undefined) {
      // Do not echo it: it may be a plain-text password pasted by mistake.
      problems.push(
        'spec.passwordHash: is not a bcrypt ($2a$/$2b$/$2y$) or argon2id ($argon2id$) hash; generate one with `s3sftp hash-password`',
      );
    } else {
      passwordHash = spec.passwordHash;
    }
  }

  // passwordSecretRef
  let passwordSecretRef: PasswordSecretRef | undefined;
  const ref = spec.passwordSecretRef;
  if (ref !== undefined && ref !== null) {
    const refProblems: string[] = [];
    if (!isMapping(ref)) {
      refProblems.push('spec.passwordSecretRef: must be a mapping, e.g. { name: alice-password, key: passwordHash }');
    } else {
      unknownFields(ref, SECRET_REF_FIELDS, 'spec.passwordSecretRef.', refProblems);
      if (typeof ref.name !== 'string' || ref.name === '') {
        refProblems.push('spec.passwordSecretRef.name: is required; name the Secret that holds the password hash');
      } else if (ref.name.length > 253 || !SECRET_NAME_RE.test(ref.name)) {
        refProblems.push(`spec.passwordSecretRef.name: ${JSON.stringify(ref.name)} is not a Secret name; use lower-case letters, digits, "-" and "."`);
      }
      let key = DEFAULT_SECRET_KEY;
      if (ref.key !== undefined && ref.key !== null) {
        if (typeof ref.key !== 'string' || ref.key.length > 253 || !SECRET_KEY_RE.test(ref.key)) {
          refProblems.push(`spec.passwordSecretRef.key: ${JSON.stringify(ref.key)} is not a Secret key; use letters, digits, "-", "_" and ".", or leave it out for ${DEFAULT_SECRET_KEY}`);
        } else {
          key = ref.key;
        }
      }
      if (refProblems.length === 0) passwordSecretRef = { name: ref.name as string, key };
    }
    problems.push(...refProblems);
    if (typeof spec.passwordHash === 'string' && spec.passwordHash !== '') {
      problems.push('spec.passwordSecretRef: set either passwordHash or passwordSecretRef, not both');
    }
  }

  // publicKeys
  const publicKeys: string[] = [];
  if (spec.publicKeys !== undefined && spec.publicKeys !== null) {
    if (!Array.isArray(spec.publicKeys)) {
      problems.push('spec.publicKeys: must be a list, e.g. ["ssh-ed25519 AAAA... alice@laptop"]');
    } else {
      for (const [i, line] of spec.publicKeys.entries()) {
        if (typeof line !== 'string') {
          problems.push(`spec.publicKeys[${i}]: must be a string`);
          continue;
        }
        const problem = publicKeyProblem(line);
        if (problem) problems.push(`spec.publicKeys[${i}]: ${problem}`);
        else publicKeys.push(line.trim());
      }
    }
  }

  // s3
  let bucket = opts.defaultBucket;
  let keyPrefix = '';
  const s3Optional: Partial<Record<keyof typeof S3_OPTIONAL_RULES, string>> = {};
  const s3 = spec.s3;
  if (!isMapping(s3)) {
    problems.push('spec.s3.keyPrefix: is required; set the user\'s directory, e.g. users/alice/ (or "" for the whole bucket)');
  } else {
    unknownFields(s3, S3_FIELDS, 'spec.s3.', problems);
    if (!stringOrEmpty(s3.bucket)) problems.push('spec.s3.bucket: must be a string');
    else if (typeof s3.bucket === 'string' && s3.bucket !== '') {
      const problem = bucketNameProblem(s3.bucket);
      if (problem) problems.push(`spec.s3.bucket: ${JSON.stringify(s3.bucket)} ${problem}`);
      else bucket = s3.bucket;
    }
    if (s3.keyPrefix === undefined || s3.keyPrefix === null) {
      problems.push('spec.s3.keyPrefix: is required; set the user\'s directory, e.g. users/alice/ (or "" for the whole bucket)');
    } else if (typeof s3.keyPrefix !== 'string') {
      problems.push('spec.s3.keyPrefix: must be a string, e.g. users/alice/');
    } else {
      const r = normalizeKeyPrefix(s3.keyPrefix);
      if ('error' in r) problems.push(`spec.s3.keyPrefix: ${JSON.stringify(s3.keyPrefix)} ${r.error}`);
      else keyPrefix = r.value;
    }
    for (const [field, check] of Object.entries(S3_OPTIONAL_RULES) as [keyof typeof S3_OPTIONAL_RULES, (s: string) => string | undefined][]) {
      const value = s3[field];
      if (value === undefined || value === null || value === '') continue;
      if (typeof value !== 'string') {
        problems.push(`spec.s3.${field}: must be a string, or leave it empty for the server's setting`);
        continue;
      }
      const problem = check(value);
      if (problem) problems.push(`spec.s3.${field}: ${JSON.stringify(value.slice(0, 80))} ${problem}, or leave it empty for the server's setting`);
      else s3Optional[field] = value;
    }
  }
  const sse = isMapping(s3) && s3.sse !== undefined && s3.sse !== null ? parseSse(s3.sse, problems) : undefined;

  // permissions
  const permissions = new Set<Permission>();
  const allowed = `use ["*"] or a subset of ${PERMISSIONS.join(', ')}`;
  if (spec.permissions === undefined || spec.permissions === null) {
    problems.push(`spec.permissions: is required; ${allowed}`);
  } else if (!Array.isArray(spec.permissions)) {
    problems.push(`spec.permissions: must be a list; ${allowed}`);
  } else {
    for (const [i, p] of spec.permissions.entries()) {
      if (p === '*') PERMISSIONS.forEach((q) => permissions.add(q));
      else if ((PERMISSIONS as readonly unknown[]).includes(p)) permissions.add(p as Permission);
      else problems.push(`spec.permissions[${i}]: ${JSON.stringify(p)} is not a permission; ${allowed}`);
    }
  }

  // allowedCIDRs (optional): where this user may log in from
  const allowedCIDRs: string[] = [];
  if (spec.allowedCIDRs !== undefined && spec.allowedCIDRs !== null) {
    if (!Array.isArray(spec.allowedCIDRs)) problems.push('spec.allowedCIDRs: must be a list, e.g. ["203.0.113.0/24", "2001:db8::/32"]');
    else {
      for (const [i, c] of spec.allowedCIDRs.entries()) {
        if (typeof c === 'string' && parseCidr(c)) allowedCIDRs.push(c.trim());
        else problems.push(`spec.allowedCIDRs[${i}]: ${JSON.stringify(c)} is not an address or CIDR; use e.g. 203.0.113.0/24 or 2001:db8::/32`);
      }
    }
  }

  // folders (optional): virtual folders mounted in the user's tree
  const folders = parseFolders(spec.folders, { bucket, keyPrefix, ...s3Optional }, problems);
  // quota and bandwidth (optional): limits on storage and transfer rates
  const quota = parseLimits(spec.quota, 'spec.quota', QUOTA_FIELDS, problems);
  const bandwidth = parseLimits(spec.bandwidth, 'spec.bandwidth', BANDWIDTH_FIELDS, problems);

  if (problems.length > 0) return { error: problems.join('; ') };

  const warnings: string[] = [];
  if (!passwordHash && !passwordSecretRef && publicKeys.length === 0) {
    warnings.push('has neither spec.passwordHash nor spec.publicKeys, so it cannot log in');
  }
  if (permissions.size === 0) warnings.push('has an empty spec.permissions list, so it can log in but do nothing');

  const user: User = Object.freeze({
    username,
    disabled,
    ...(passwordHash !== undefined ? { passwordHash } : {}),
    publicKeys: Object.freeze(publicKeys) as string[],
    s3: Object.freeze({ bucket, keyPrefix, ...s3Optional, ...(sse?.sse ? { sse: Object.freeze(sse.sse) } : {}) }),
    permissions,
    ...(allowedCIDRs.length > 0 ? { allowedCIDRs: Object.freeze(allowedCIDRs) } : {}),
    ...(folders.length > 0 ? { folders: Object.freeze(folders) } : {}),
    ...(quota ? { quota } : {}),
    ...(bandwidth ? { bandwidth } : {}),
    source: opts.source,
  });
  return {
    user,
    warnings,
    ...(passwordSecretRef ? { passwordSecretRef } : {}),
    ...(sse?.secretRef ? { sseKeySecretRef: sse.secretRef } : {}),
  };
}

const SSE_FIELDS = ['mode', 'kmsKeyId', 'bucketKeyEnabled', 'customerKeySecretRef', 'customerKeyFile'];
const DEFAULT_SSE_SECRET_KEY = 'key';

/**
 * spec.s3.sse (issue 13): the fields set, checked together as the server's s3.sse is
 * (config/sse.ts). The SSE-C key itself comes later: from the Secret (Kubernetes source) or the
 * file (read at session start).
 */
function parseSse(raw: unknown, problems: string[]): { sse?: UserSse; secretRef?: PasswordSecretRef } | undefined {
  const where = 'spec.s3.sse.';
  if (!isMapping(raw)) {
    problems.push('spec.s3.sse: must be a mapping, e.g. { mode: aws:kms, kmsKeyId: alias/sftp }');
    return undefined;
  }
  const before = problems.length;
  unknownFields(raw, SSE_FIELDS, where, problems);
  const sse: UserSse = {};
  if (raw.mode !== undefined && raw.mode !== null && raw.mode !== '') {
    if (typeof raw.mode !== 'string' || !(SSE_MODES as readonly string[]).includes(raw.mode)) {
      problems.push(`${where}mode: ${JSON.stringify(raw.mode)} is not a mode; use ${SSE_MODES.join(', ')}, or leave it out for the server's setting`);
    } else sse.mode = raw.mode as UserSse['mode'];
  }
  if (raw.kmsKeyId !== undefined && raw.kmsKeyId !== null && raw.kmsKeyId !== '') {
    if (typeof raw.kmsKeyId !== 'string') problems.push(`${where}kmsKeyId: must be a string`);
    else sse.kmsKeyId = raw.kmsKeyId;
  }
  if (raw.bucketKeyEnabled !== undefined && raw.bucketKeyEnabled !== null) {
    if (typeof raw.bucketKeyEnabled !== 'boolean') problems.push(`${where}bucketKeyEnabled: must be true or false`);
    else sse.bucketKeyEnabled = raw.bucketKeyEnabled;
  }
  if (raw.customerKeyFile !== undefined && raw.customerKeyFile !== null && raw.customerKeyFile !== '') {
    if (typeof raw.customerKeyFile !== 'string') problems.push(`${where}customerKeyFile: must be a path`);
    else sse.customerKeyFile = raw.customerKeyFile;
  }
  let secretRef: PasswordSecretRef | undefined;
  const ref = raw.customerKeySecretRef;
  if (ref !== undefined && ref !== null) {
    if (!isMapping(ref) || typeof ref.name !== 'string' || ref.name.length > 253 || !SECRET_NAME_RE.test(ref.name)) {
      problems.push(`${where}customerKeySecretRef: name the Secret that holds the key, e.g. { name: alice-sse, key: key }`);
    } else if (ref.key !== undefined && ref.key !== null && (typeof ref.key !== 'string' || !SECRET_KEY_RE.test(ref.key))) {
      problems.push(`${where}customerKeySecretRef.key: ${JSON.stringify(ref.key)} is not a Secret key; use letters, digits, "-", "_" and ".", or leave it out for ${DEFAULT_SSE_SECRET_KEY}`);
    } else {
      unknownFields(ref, SECRET_REF_FIELDS, `${where}customerKeySecretRef.`, problems);
      secretRef = { name: ref.name, key: typeof ref.key === 'string' ? ref.key : DEFAULT_SSE_SECRET_KEY };
    }
    if (sse.customerKeyFile) problems.push(`${where}customerKeySecretRef: set either customerKeySecretRef or customerKeyFile, not both`);
  }
  // Only the fields this resource sets are judged here; the server's defaults are checked at start.
  problems.push(
    ...sseProblems(
      {
        mode: sse.mode ?? (secretRef || sse.customerKeyFile ? 'none' : 'AES256'),
        kmsKeyId: sse.mode && !sse.mode.startsWith('aws:kms') ? (sse.kmsKeyId ?? '') : '',
        bucketKeyEnabled: sse.mode !== undefined && sse.mode !== 'aws:kms' ? (sse.bucketKeyEnabled ?? false) : false,
        hasCustomerKey: secretRef !== undefined || sse.customerKeyFile !== undefined,
      },
      where,
    ).filter((p) => !p.startsWith(`${where}mode: "AES256"`)),
  );
  if (sse.kmsKeyId !== undefined && !/^[\w:/+=,.@-]{1,2048}$/.test(sse.kmsKeyId)) {
    problems.push(`${where}kmsKeyId: is not a KMS key id, ARN or alias (e.g. alias/sftp or arn:aws:kms:eu-west-1:111122223333:key/...)`);
  }
  if (problems.length > before) return undefined;
  return { sse, ...(secretRef ? { secretRef } : {}) };
}

const QUOTA_FIELDS = { maxBytes: 'e.g. 10737418240 for 10 GiB', maxFiles: 'e.g. 10000' };
const BANDWIDTH_FIELDS = { uploadKiBps: 'e.g. 1024 for 1 MiB/s', downloadKiBps: 'e.g. 1024 for 1 MiB/s' };

/**
 * spec.quota or spec.bandwidth: a mapping of non-negative whole numbers, 0 meaning no limit.
 * Undefined when absent or when every limit is 0.
 */
function parseLimits(value: unknown, path: string, fields: Record<string, string>, problems: string[]): Readonly<Record<string, number>> | undefined {
  if (value === undefined || value === null) return undefined;
  if (!isMapping(value)) {
    problems.push(`${path}: must be a mapping with ${Object.keys(fields).join(' and/or ')}`);
    return undefined;
  }
  unknownFields(value, Object.keys(fields), `${path}.`, problems);
  const out: Record<string, number> = {};
  for (const [field, example] of Object.entries(fields)) {
    const v = value[field];
    if (v === undefined || v === null) continue;
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
      problems.push(`${path}.${field}: ${JSON.stringify(v)} is not a whole number of at least 0; use ${example}, or 0 for no limit`);
    } else if (v > 0) out[field] = v;
  }
  return Object.keys(out).length > 0 ? Object.freeze(out) : undefined;
}

/**
 * The one validation of an SftpUser, for a YAML file and for a resource from the Kubernetes API
 * alike: accepted only if both the CRD's schema (what `kubectl apply` admits) and the server's own
 * checks accept it. When the server's checks refuse it, their messages are given, since they name
 * the fix; else the schema's.
 */
export function validateSftpUser(doc: unknown, opts: ParseSftpUserOptions): ParseSftpUserResult {
  const result = parseSftpUser(doc, opts);
  if ('error' in result) return result;
  const structural = crdSchemaProblems(doc);
  return structural.length > 0 ? { error: structural.join('; ') } : result;
}

// ---- spec.folders ----------------------------------------------------------------------------------

const FOLDER_FIELDS = ['path', 'bucket', 'keyPrefix', 'region', 'endpoint', 'roleArn', 'permissions'];
/** At most this many folders per user: each is a mount the session routes through, and the CRD's CEL cost is quadratic in it. */
export const MAX_FOLDERS = 32;
const MAX_FOLDER_PATH = 256;

/** Why a folder path is unusable as a mount point, or undefined. It must already be in normalised form: no guessing what was meant. */
function folderPathProblem(path: string): string | undefined {
  if (!path.startsWith('/')) return 'must be absolute, e.g. /inbound';
  if (path === '/') return 'must not be "/"; the home is there (spec.s3)';
  if (/[\u0000-\u001f\u007f]/.test(path)) return 'must not contain control characters';
  if (path.length > MAX_FOLDER_PATH) return `is longer than ${MAX_FOLDER_PATH} characters`;
  const segments = path.slice(1).split('/');
  if (segments.some((s) => s === '')) return 'must not contain "//" or end with "/"; write it as e.g. /inbound';
  if (segments.some((s) => s === '.' || s === '..')) return 'must not contain "." or ".." segments; write it as e.g. /inbound';
  return undefined;
}

/** spec.folders[i].permissions: a list of permissions or "*". */
function folderPermissions(value: unknown, at: string, problems: string[]): Set<Permission> {
  const permissions = new Set<Permission>();
  const allowed = `use ["*"] or a subset of ${PERMISSIONS.join(', ')}, e.g. [list, download] for a read-only folder`;
  if (!Array.isArray(value) || value.length === 0) {
    problems.push(`${at}.permissions: is required and must be a non-empty list; ${allowed}`);
    return permissions;
  }
  for (const [j, p] of value.entries()) {
    if (p === '*') PERMISSIONS.forEach((q) => permissions.add(q));
    else if ((PERMISSIONS as readonly unknown[]).includes(p)) permissions.add(p as Permission);
    else problems.push(`${at}.permissions[${j}]: ${JSON.stringify(p)} is not a permission; ${allowed}`);
  }
  return permissions;
}

/** One spec.folders entry, with the user's spec.s3 settings filled in for the fields it leaves unset. */
function parseFolder(entry: unknown, at: string, home: User['s3'], problems: string[]): Folder | undefined {
  if (!isMapping(entry)) {
    problems.push(`${at}: must be a mapping, e.g. { path: /inbound, keyPrefix: inbound/alice/, permissions: [list, download] }`);
    return undefined;
  }
  const before = problems.length;
  unknownFields(entry, FOLDER_FIELDS, `${at}.`, problems);
  const path = entry.path;
  if (typeof path !== 'string' || path === '') problems.push(`${at}.path: is required; name the folder's place in the user's tree, e.g. /inbound`);
  else {
    const problem = folderPathProblem(path);
    if (problem) problems.push(`${at}.path: ${JSON.stringify(path.slice(0, 80))} ${problem}`);
  }
  let bucket = home.bucket;
  if (!stringOrEmpty(entry.bucket)) problems.push(`${at}.bucket: must be a string`);
  else if (typeof entry.bucket === 'string' && entry.bucket !== '') {
    const problem = bucketNameProblem(entry.bucket);
    if (problem) problems.push(`${at}.bucket: ${JSON.stringify(entry.bucket)} ${problem}`);
    else bucket = entry.bucket;
  }
  let keyPrefix = '';
  if (typeof entry.keyPrefix !== 'string') {
    problems.push(`${at}.keyPrefix: is required; set the folder's directory in its bucket, e.g. inbound/alice/ (or "" for the whole bucket)`);
  } else {
    const r = normalizeKeyPrefix(entry.keyPrefix);
    if ('error' in r) problems.push(`${at}.keyPrefix: ${JSON.stringify(entry.keyPrefix)} ${r.error}`);
    else keyPrefix = r.value;
  }
  const s3: Record<string, string> = {};
  for (const field of ['region', 'endpoint', 'roleArn'] as const) {
    const value = entry[field];
    if (value === undefined || value === null || value === '') {
      if (home[field] !== undefined) s3[field] = home[field];
      continue;
    }
    if (typeof value !== 'string') problems.push(`${at}.${field}: must be a string, or leave it empty for the user's spec.s3.${field}`);
    else {
      const problem = S3_OPTIONAL_RULES[field](value);
      if (problem) problems.push(`${at}.${field}: ${JSON.stringify(value.slice(0, 80))} ${problem}, or leave it empty for the user's spec.s3.${field}`);
      else s3[field] = value;
    }
  }
  const permissions = folderPermissions(entry.permissions, at, problems);
  if (problems.length > before) return undefined;
  const storageClass = home.storageClass !== undefined ? { storageClass: home.storageClass } : {};
  return Object.freeze({ path: path as string, s3: Object.freeze({ bucket, keyPrefix, ...storageClass, ...s3 }), permissions });
}

/**
 * spec.folders: each a mount point with its own location and permissions. Paths must be distinct
 * and not nested in one another: a path then belongs to exactly one folder (or the home), which is
 * what a user and an operator expect when they ask "which permissions apply here?".
 */
function parseFolders(value: unknown, home: User['s3'], problems: string[]): Folder[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) {
    problems.push('spec.folders: must be a list, e.g. [{ path: /inbound, keyPrefix: inbound/alice/, permissions: [list, download] }]');
    return [];
  }
  if (value.length > MAX_FOLDERS) problems.push(`spec.folders: has ${value.length} entries; at most ${MAX_FOLDERS} are allowed`);
  const folders: Folder[] = [];
  for (const [i, entry] of value.entries()) {
    const folder = parseFolder(entry, `spec.folders[${i}]`, home, problems);
    if (!folder) continue;
    const clash = folders.find((f) => f.path === folder.path || folder.path.startsWith(`${f.path}/`) || f.path.startsWith(`${folder.path}/`));
    if (clash?.path === folder.path) problems.push(`spec.folders[${i}].path: ${folder.path} is listed twice; each folder needs its own path`);
    else if (clash) {
      problems.push(`spec.folders[${i}].path: ${folder.path} and ${clash.path} are nested; folders cannot be nested in one another, mount them side by side`);
    } else folders.push(folder);
  }
  return folders;
}
