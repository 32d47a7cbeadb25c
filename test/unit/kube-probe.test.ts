/**
 * The start-up check of the Kubernetes API (src/kube/probe.ts) against the fake API server: each
 * way the API can be unusable gets one sentence with the cause and the fix.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createKubeApi, type KubeApi } from '../../src/kube/api.ts';
import { probeKubernetes } from '../../src/kube/probe.ts';
import { FakeKubeApiServer } from '../support/fake-kube-apiserver.ts';

let fake: FakeKubeApiServer;
let api: KubeApi;

before(async () => {
  fake = await FakeKubeApiServer.start();
  api = createKubeApi(fake.kubeConfig('sftp'));
});
after(() => fake?.stop());

test('a reachable API server that lists SftpUsers passes', async () => {
  assert.equal(await probeKubernetes(api, 'sftp', 'fake'), undefined);
  assert.equal(await probeKubernetes(api, '', 'fake'), undefined);
});

test('403 names the missing RBAC and the namespace', async () => {
  fake.failRequests((r) => r.path.includes('sftpusers'), 403, 1);
  const problem = await probeKubernetes(api, 'sftp', 'fake');
  assert.match(problem ?? '', /listing SftpUsers in namespace sftp failed \(HTTP 403\); the server may not list SftpUsers in namespace sftp; grant its service account get, list and watch on sftpusers\.s3sftp\.io/);
});

test('404 says the CRD is not installed and how to install it', async () => {
  fake.failRequests((r) => r.path.includes('sftpusers'), 404, 1);
  assert.match((await probeKubernetes(api, '', 'fake')) ?? '', /in every namespace failed \(HTTP 404\); the SftpUser CRD is not installed; kubectl apply -f crds\/sftpusers\.s3sftp\.io\.yaml/);
});

test('an API server that never answers is reported after the timeout', async () => {
  const silent: KubeApi = { ...api, listSftpUsers: () => new Promise(() => {}) };
  assert.match((await probeKubernetes(silent, '', 'https://10.0.0.1', 20)) ?? '', /cannot reach the Kubernetes API at https:\/\/10\.0\.0\.1 \(ETIMEDOUT\)/);
});
