/** The start-up check of the Kubernetes API (server.ts turns its answer into a StartupError). */
import { describeError, httpStatus, type KubeApi } from './api.ts';

const KUBE_PROBE_TIMEOUT_MS = 15_000;

/**
 * Why the Kubernetes API cannot serve users (cause and fix in one sentence), or undefined. One list
 * of SftpUsers before the informers start, so that an unreachable API server, a missing CRD or
 * missing RBAC stops the start-up instead of leaving a pod that never gets ready.
 */
export async function probeKubernetes(api: KubeApi, namespace: string, server: string, timeoutMs = KUBE_PROBE_TIMEOUT_MS): Promise<string | undefined> {
  const where = namespace ? `in namespace ${namespace}` : 'in every namespace';
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(Object.assign(new Error(`no answer within ${timeoutMs / 1000} s`), { code: 'ETIMEDOUT' })), timeoutMs);
  });
  try {
    await Promise.race([api.listSftpUsers(namespace), timeout]);
    return undefined;
  } catch (err) {
    const status = httpStatus(err);
    if (status === undefined) {
      return `cannot reach the Kubernetes API at ${server} (${describeError(err)}); check users.kubernetes.kubeconfig (or KUBECONFIG) and that the API server is reachable from here`;
    }
    const fix =
      status === 404
        ? 'the SftpUser CRD is not installed; kubectl apply -f crds/sftpusers.s3sftp.io.yaml'
        : status === 401 || status === 403
          ? `the server may not list SftpUsers ${where}; grant its service account get, list and watch on sftpusers.s3sftp.io (the Helm chart's RBAC does)`
          : 'see the API server logs';
    return `listing SftpUsers ${where} failed (HTTP ${status}); ${fix}`;
  } finally {
    clearTimeout(timer);
  }
}

