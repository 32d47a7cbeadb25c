/**
 * The few Kubernetes API calls the server makes, over client-node: listing SftpUsers and Secrets
 * (for the informers), patching SftpUser status, and reading and writing the status-writer Lease.
 * Everything else in src/kube talks to these narrow functions, so tests can replace them.
 */

import {
  ApiException,
  CoordinationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  PatchStrategy,
  setHeaderOptions,
  type KubernetesListObject,
  type V1Lease,
} from '@kubernetes/client-node';
import { LeaseConflictError, type LeaseApi, type LeaseRecord } from './lease.ts';
import { GROUP, PLURAL, VERSION, type SecretResource, type SftpUserResource } from './sftp-user-resource.ts';

/** Loads a kubeconfig: `path` if set, else KUBECONFIG, ~/.kube/config, or the in-cluster service account. */
export function loadKubeConfig(path: string): KubeConfig {
  const kc = new KubeConfig();
  if (path) kc.loadFromFile(path);
  else kc.loadFromDefault();
  if (!kc.getCurrentCluster()) throw new Error('the kubeconfig names no current cluster');
  return kc;
}

/** The kubeconfig context's namespace (in a pod: the service account's namespace), or "". */
export function contextNamespace(kc: KubeConfig): string {
  return kc.getContextObject(kc.getCurrentContext())?.namespace ?? '';
}

/** The HTTP status of a failed API call (client-node's ApiException, or a watch error), if any. */
export function httpStatus(err: unknown): number | undefined {
  if (err instanceof ApiException) return err.code;
  const e = err as { statusCode?: unknown; code?: unknown } | null;
  if (typeof e?.statusCode === 'number') return e.statusCode;
  if (typeof e?.code === 'number') return e.code;
  return undefined;
}

/** A short description of a failed API call for logs and status messages (never a response body). */
export function describeError(err: unknown): string {
  const status = httpStatus(err);
  if (status !== undefined) return `HTTP ${status}`;
  const e = err as { code?: unknown; message?: unknown; cause?: { code?: unknown; message?: unknown } } | null;
  const code = e?.cause?.code ?? e?.code;
  return typeof code === 'string' ? code : String(e?.message ?? err);
}

/** The calls src/kube makes. */
export interface KubeApi {
  readonly kubeConfig: KubeConfig;
  listSftpUsers(namespace: string): Promise<KubernetesListObject<SftpUserResource>>;
  listSecrets(namespace: string): Promise<KubernetesListObject<SecretResource>>;
  /** JSON merge patch of the status subresource; resolves to the updated object. */
  patchSftpUserStatus(namespace: string, name: string, patch: object): Promise<SftpUserResource>;
  lease(namespace: string, name: string): LeaseApi;
}

/** API paths the informers watch. */
export function sftpUsersPath(namespace: string): string {
  return namespace ? `/apis/${GROUP}/${VERSION}/namespaces/${namespace}/${PLURAL}` : `/apis/${GROUP}/${VERSION}/${PLURAL}`;
}

export function secretsPath(namespace: string): string {
  return `/api/v1/namespaces/${namespace}/secrets`;
}

function toRecord(lease: V1Lease): LeaseRecord {
  const spec = lease.spec ?? {};
  const time = (t: unknown): string | undefined => (t instanceof Date ? t.toISOString() : typeof t === 'string' ? t : undefined);
  return {
    holderIdentity: spec.holderIdentity ?? '',
    leaseDurationSeconds: spec.leaseDurationSeconds ?? 0,
    acquireTime: time(spec.acquireTime),
    renewTime: time(spec.renewTime),
    leaseTransitions: spec.leaseTransitions ?? 0,
    resourceVersion: lease.metadata?.resourceVersion,
  };
}

/** The body of a Lease write. MicroTimes go as the strings microTime() made (client-node passes them through). */
function toLease(namespace: string, name: string, r: LeaseRecord): V1Lease {
  return {
    apiVersion: 'coordination.k8s.io/v1',
    kind: 'Lease',
    metadata: { name, namespace, ...(r.resourceVersion ? { resourceVersion: r.resourceVersion } : {}) },
    spec: {
      holderIdentity: r.holderIdentity,
      leaseDurationSeconds: r.leaseDurationSeconds,
      leaseTransitions: r.leaseTransitions,
      ...(r.acquireTime ? { acquireTime: r.acquireTime as unknown as Date } : {}),
      ...(r.renewTime ? { renewTime: r.renewTime as unknown as Date } : {}),
    },
  } as V1Lease;
}

async function conflictAware<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (err) {
    if (httpStatus(err) === 409) throw new LeaseConflictError('the lease changed since it was read', { cause: err });
    throw err;
  }
}

/** KubeApi over client-node's generated clients. */
export function createKubeApi(kubeConfig: KubeConfig): KubeApi {
  const custom = kubeConfig.makeApiClient(CustomObjectsApi);
  const core = kubeConfig.makeApiClient(CoreV1Api);
  const coordination = kubeConfig.makeApiClient(CoordinationV1Api);
  const mergePatch = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
  return {
    kubeConfig,
    async listSftpUsers(namespace) {
      const list: unknown = namespace
        ? await custom.listNamespacedCustomObject({ group: GROUP, version: VERSION, plural: PLURAL, namespace })
        : await custom.listClusterCustomObject({ group: GROUP, version: VERSION, plural: PLURAL });
      return list as KubernetesListObject<SftpUserResource>;
    },
    async listSecrets(namespace) {
      return (await core.listNamespacedSecret({ namespace })) as unknown as KubernetesListObject<SecretResource>;
    },
    async patchSftpUserStatus(namespace, name, patch) {
      const body: unknown = await custom.patchNamespacedCustomObjectStatus(
        { group: GROUP, version: VERSION, plural: PLURAL, namespace, name, body: patch },
        mergePatch,
      );
      return body as SftpUserResource;
    },
    lease(namespace, name) {
      return {
        async get() {
          try {
            return toRecord(await coordination.readNamespacedLease({ name, namespace }));
          } catch (err) {
            if (httpStatus(err) === 404) return undefined;
            throw err;
          }
        },
        create: (record) =>
          conflictAware(async () => toRecord(await coordination.createNamespacedLease({ namespace, body: toLease(namespace, name, record) }))),
        replace: (record) =>
          conflictAware(async () => toRecord(await coordination.replaceNamespacedLease({ name, namespace, body: toLease(namespace, name, record) }))),
      };
    },
  };
}
