/**
 * The SftpUser custom resource as the Kubernetes API serves it (crds/sftpusers.s3sftp.io.yaml),
 * and the Ready condition the server writes into its status. The spec is validated by
 * users/sftp-user.ts; here it stays `unknown` because the API server may hold anything that was
 * admitted before the CRD got stricter.
 */
import type { AccessFailureReason } from '../users/access.ts';

export const GROUP = 's3sftp.io';
export const VERSION = 'v1alpha1';
export const PLURAL = 'sftpusers';
export const KIND = 'SftpUser';

/** The condition type the server owns. */
export const READY = 'Ready';

/** Why a resource is or is not Ready; each False reason tells the owner what to fix. */
export type ReadyReason =
  | 'Loaded'
  | 'InvalidSpec'
  | 'SecretNotFound'
  | 'SecretKeyMissing'
  | 'InvalidSecret'
  | 'SecretUnreadable'
  | 'UsernameConflict'
  // The user's storage cannot be reached (from the server's access check).
  | AccessFailureReason;

/** metav1.ObjectMeta, the parts the server reads. */
export interface ObjectMeta {
  name?: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  /** Typed as client-node types it; watch events and custom-object lists carry the RFC 3339 string. */
  creationTimestamp?: Date;
}

/** metav1.Condition. */
export interface Condition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
  observedGeneration?: number;
  lastTransitionTime: string;
}

/** An SftpUser object from the API (list item or watch event). */
export interface SftpUserResource {
  apiVersion?: string;
  kind?: string;
  metadata: ObjectMeta;
  spec?: unknown;
  status?: { observedGeneration?: number; conditions?: Condition[]; usage?: StatusUsage };
}

/** status.usage: what a user with spec.quota stores, as the server last counted it. */
export interface StatusUsage {
  bytes: number;
  files: number;
}

/** The Ready condition the server wants on a resource, before times are filled in. */
export interface DesiredReady {
  status: 'True' | 'False';
  reason: ReadyReason;
  message: string;
  /** metadata.generation of the spec this verdict is about. */
  observedGeneration: number;
  /** status.usage to write (users with spec.quota whose usage was counted); left as it is when unset. */
  usage?: StatusUsage;
}

/** v1 Secret, the parts the server reads. `data` values are base64. */
export interface SecretResource {
  metadata: ObjectMeta;
  data?: Record<string, string>;
}

/** "namespace/name", the key of a namespaced object in every table here. */
export function objectKey(meta: ObjectMeta): string {
  return `${meta.namespace ?? ''}/${meta.name ?? ''}`;
}

/** The resource's Ready condition, if it has one. */
export function readyCondition(resource: SftpUserResource): Condition | undefined {
  return resource.status?.conditions?.find((c) => c.type === READY);
}

/** True when the resource's status already says what `desired` says (times aside). */
export function statusMatches(resource: SftpUserResource, desired: DesiredReady): boolean {
  const current = readyCondition(resource);
  return (
    current !== undefined &&
    current.status === desired.status &&
    current.reason === desired.reason &&
    current.message === desired.message &&
    current.observedGeneration === desired.observedGeneration &&
    resource.status?.observedGeneration === desired.observedGeneration &&
    (desired.usage === undefined || (resource.status?.usage?.bytes === desired.usage.bytes && resource.status.usage.files === desired.usage.files))
  );
}

/**
 * The merge patch for the status subresource. Conditions of other types are kept (a merge patch
 * replaces lists whole); lastTransitionTime changes only when the status flips.
 */
export function statusPatch(
  resource: SftpUserResource,
  desired: DesiredReady,
  now: Date,
): { status: { observedGeneration: number; conditions: Condition[]; usage?: StatusUsage } } {
  const current = readyCondition(resource);
  const lastTransitionTime = current && current.status === desired.status && current.lastTransitionTime
    ? current.lastTransitionTime
    : rfc3339(now);
  const ready: Condition = {
    type: READY,
    status: desired.status,
    reason: desired.reason,
    message: desired.message,
    observedGeneration: desired.observedGeneration,
    lastTransitionTime,
  };
  const others = (resource.status?.conditions ?? []).filter((c) => c.type !== READY);
  const usage = desired.usage ? { usage: { bytes: desired.usage.bytes, files: desired.usage.files } } : {};
  return { status: { observedGeneration: desired.observedGeneration, conditions: [...others, ready], ...usage } };
}

/** metav1.Time: RFC 3339 with whole seconds, as the API server writes it. */
export function rfc3339(date: Date): string {
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** creationTimestamp in milliseconds; objects without one sort last. */
export function createdAt(meta: ObjectMeta): number {
  const t: unknown = meta.creationTimestamp;
  const ms = t instanceof Date ? t.getTime() : typeof t === 'string' ? Date.parse(t) : Number.NaN;
  return Number.isNaN(ms) ? Number.MAX_SAFE_INTEGER : ms;
}
