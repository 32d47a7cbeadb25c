/**
 * One Secret informer per namespace where some SftpUser has spec.passwordSecretRef, started when
 * the first such user appears there and stopped when the last one goes. A per-namespace informer,
 * rather than one field-selected watch per referenced Secret, keeps one connection per namespace
 * however many users there are, and needs no RBAC on Secrets in namespaces without password
 * references; the price is that it caches every Secret of those namespaces
 * (docs/adr/0008-kubernetes-users.md).
 */
import type { KubeConfig } from '@kubernetes/client-node';
import { secretsPath, type KubeApi } from './api.ts';
import { ResilientInformer, type InformerLogger, type ResilientInformerOptions } from './informer.ts';
import type { SecretResource } from './sftp-user-resource.ts';
import type { NamespaceSecrets } from './user-table.ts';

export interface SecretInformersOptions {
  kubeConfig: KubeConfig;
  api: KubeApi;
  log: InformerLogger;
  /** A Secret changed (`name`), or the namespace's listing did (no name: synced, failed, recovered). */
  onChange: (namespace: string, name?: string) => void;
  informer?: Pick<ResilientInformerOptions<SecretResource>, 'restartDelayMs' | 'maxReconnectDelayMs'>;
}

export class SecretInformers {
  readonly #o: SecretInformersOptions;
  readonly #informers = new Map<string, ResilientInformer<SecretResource>>();

  constructor(opts: SecretInformersOptions) {
    this.#o = opts;
  }

  /** Watches exactly these namespaces from now on. */
  watch(namespaces: ReadonlySet<string>): void {
    for (const [namespace, informer] of this.#informers) {
      if (namespaces.has(namespace)) continue;
      this.#informers.delete(namespace);
      void informer.stop();
    }
    for (const namespace of namespaces) {
      if (this.#informers.has(namespace)) continue;
      const informer = new ResilientInformer<SecretResource>({
        kubeConfig: this.#o.kubeConfig,
        path: secretsPath(namespace),
        list: () => this.#o.api.listSecrets(namespace),
        what: `Secrets in namespace ${namespace}`,
        log: this.#o.log,
        onEvent: (_event, secret) => this.#o.onChange(namespace, secret.metadata?.name ?? ''),
        onStateChange: () => this.#o.onChange(namespace),
        ...this.#o.informer,
      });
      this.#informers.set(namespace, informer);
      informer.start();
    }
  }

  /** What each watched namespace's cache holds, for computeUserTable. */
  view(): Map<string, NamespaceSecrets> {
    const view = new Map<string, NamespaceSecrets>();
    for (const [namespace, informer] of this.#informers) {
      view.set(
        namespace,
        informer.synced
          ? { listed: true, get: (name) => informer.get(name, namespace) }
          : { listed: false, errorStatus: informer.lastError?.status },
      );
    }
    return view;
  }

  async stop(): Promise<void> {
    const informers = [...this.#informers.values()];
    this.#informers.clear();
    await Promise.all(informers.map((i) => i.stop()));
  }
}
