/**
 * EventRecorder (src/kube/events.ts): which Ready changes become Events, and the rate limits.
 * The clock is injected; the sink collects what would be sent.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventRecorder, type EventRecord } from '../../src/kube/events.ts';
import type { DesiredReady, SftpUserResource } from '../../src/kube/sftp-user-resource.ts';

function resource(name: string, ready?: { status: 'True' | 'False'; reason: string }): SftpUserResource {
  return {
    apiVersion: 's3sftp.io/v1alpha1',
    kind: 'SftpUser',
    metadata: { name, namespace: 'sftp', uid: `uid-${name}`, resourceVersion: '7', generation: 1 },
    spec: {},
    ...(ready ? { status: { conditions: [{ type: 'Ready', status: ready.status, reason: ready.reason, message: '', lastTransitionTime: '', observedGeneration: 1 }] } } : {}),
  } as unknown as SftpUserResource;
}

const ok: DesiredReady = { status: 'True', reason: 'Loaded', message: 'loaded as user a', observedGeneration: 1 };
const missing: DesiredReady = { status: 'False', reason: 'SecretNotFound', message: 'Secret a-pw does not exist', observedGeneration: 1 };
const conflict: DesiredReady = { status: 'False', reason: 'UsernameConflict', message: 'username a is taken', observedGeneration: 1 };

function recorder(opts: { perMinute?: number } = {}) {
  const sent: EventRecord[] = [];
  const warnings: string[] = [];
  let now = 1_000_000;
  const r = new EventRecorder({
    sink: async (e) => void sent.push(e),
    instance: 'pod-1',
    log: { info: () => {}, warn: (_o, m) => void warnings.push(m) },
    now: () => now,
    ...opts,
  });
  return { r, sent, warnings, advance: (ms: number) => (now += ms) };
}

test('a Ready transition becomes one events.k8s.io/v1 Event on the resource', () => {
  const { r, sent } = recorder();
  r.observe([{ resource: resource('a', { status: 'True', reason: 'Loaded' }), ready: missing }]);
  assert.equal(sent.length, 1);
  const e = sent[0]?.body;
  assert.equal(sent[0]?.namespace, 'sftp');
  assert.equal(e?.type, 'Warning');
  assert.equal(e?.reason, 'SecretNotFound');
  assert.equal(e?.reportingController, 's3sftp.io/s3sftp');
  assert.equal(e?.reportingInstance, 'pod-1');
  assert.match(e?.note ?? '', /^Ready=False: Secret a-pw does not exist/);
  assert.deepEqual(e?.regarding, { apiVersion: 's3sftp.io/v1alpha1', kind: 'SftpUser', name: 'a', namespace: 'sftp', uid: 'uid-a', resourceVersion: '7' });
  assert.match(e?.metadata?.name ?? '', /^a\.[0-9a-f]{16}$/);
  assert.match(String(e?.eventTime), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
});

test('nothing is recorded when the verdict matches the status already on the resource or the last one seen', () => {
  const { r, sent } = recorder();
  r.observe([{ resource: resource('a', { status: 'True', reason: 'Loaded' }), ready: ok }]);
  r.observe([{ resource: resource('a', { status: 'True', reason: 'Loaded' }), ready: ok }]);
  assert.equal(sent.length, 0);
  // A new reason while still False is news (a conflict after a missing Secret).
  r.observe([{ resource: resource('a'), ready: missing }]);
  r.observe([{ resource: resource('a'), ready: conflict }]);
  r.observe([{ resource: resource('a'), ready: ok }]);
  assert.deepEqual(sent.map((e) => `${e.body.type} ${e.body.reason}`), ['Warning SecretNotFound', 'Warning UsernameConflict', 'Normal Loaded']);
});

test('a flapping resource repeats a reason at most once per repeat interval', () => {
  const { r, sent, advance } = recorder();
  for (let i = 0; i < 5; i++) {
    r.observe([{ resource: resource('a'), ready: missing }]);
    r.observe([{ resource: resource('a'), ready: ok }]);
  }
  assert.equal(sent.length, 2);
  advance(10 * 60_000);
  r.observe([{ resource: resource('a'), ready: missing }]);
  assert.equal(sent.length, 3);
});

test('at most perMinute events in all; the dropped ones are counted in the log', () => {
  const { r, sent, warnings, advance } = recorder({ perMinute: 5 });
  r.observe(Array.from({ length: 20 }, (_, i) => ({ resource: resource(`u${i}`), ready: missing })));
  assert.equal(sent.length, 5);
  advance(60_000);
  r.observe([{ resource: resource('late'), ready: missing }]);
  assert.equal(sent.length, 6);
  assert.deepEqual(warnings, ['events not recorded in the last minute (rate limit)']);
});
