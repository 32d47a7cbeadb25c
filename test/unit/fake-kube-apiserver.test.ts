/**
 * The fake API server (test/support/fake-kube-apiserver.ts) keeps the protocol promises the
 * Kubernetes tests rely on, checked over HTTP as a client sees them.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { FakeKubeApiServer } from '../support/fake-kube-apiserver.ts';

let fake: FakeKubeApiServer;
const USERS = '/apis/s3sftp.io/v1alpha1/namespaces/ns/sftpusers';

before(async () => {
  fake = await FakeKubeApiServer.start({ bookmarkIntervalMs: 50 });
});
after(async () => {
  await fake.stop();
});

async function call(method: string, path: string, body?: unknown, type = 'application/json'): Promise<{ status: number; json: Record<string, any> }> {
  const res = await fetch(`${fake.url}${path}`, { method, headers: { 'Content-Type': type }, body: body === undefined ? undefined : JSON.stringify(body) });
  return { status: res.status, json: (await res.json()) as Record<string, any> };
}

/** Reads watch events until `count` arrived or the stream ends (bounded by `timeoutMs`). */
async function watchEvents(query: string, count: number, timeoutMs = 2000): Promise<{ type: string; object: Record<string, any> }[]> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeoutMs);
  const events: { type: string; object: Record<string, any> }[] = [];
  try {
    const res = await fetch(`${fake.url}${USERS}?watch=true&${query}`, { signal: controller.signal });
    assert.equal(res.status, 200);
    let buffered = '';
    for await (const chunk of res.body as AsyncIterable<Uint8Array>) {
      buffered += Buffer.from(chunk).toString('utf8');
      let nl: number;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        events.push(JSON.parse(buffered.slice(0, nl)));
        buffered = buffered.slice(nl + 1);
      }
      if (events.length >= count) break;
    }
  } catch (err) {
    if ((err as Error).name !== 'AbortError') throw err;
  } finally {
    clearTimeout(timer);
    controller.abort();
  }
  return events;
}

describe('fake kube-apiserver', () => {
  test('resourceVersion, generation and the status subresource', async () => {
    const created = await call('POST', USERS, { metadata: { name: 'a' }, spec: { x: 1 }, status: { ignored: true } });
    assert.equal(created.status, 201);
    assert.equal(created.json.metadata.generation, 1);
    assert.equal(created.json.status, undefined, 'create ignores status');
    const rv1 = Number(created.json.metadata.resourceVersion);

    const status = await call('PATCH', `${USERS}/a/status`, { status: { ok: true }, spec: { x: 2 } }, 'application/merge-patch+json');
    assert.equal(status.json.metadata.generation, 1, 'a status write never bumps generation');
    assert.deepEqual(status.json.spec, { x: 1 }, 'a status write changes only status');
    assert.ok(Number(status.json.metadata.resourceVersion) > rv1);

    const same = await call('PATCH', `${USERS}/a/status`, { status: { ok: true } }, 'application/merge-patch+json');
    assert.equal(same.json.metadata.resourceVersion, status.json.metadata.resourceVersion, 'a no-op write changes nothing');

    const spec = await call('PATCH', `${USERS}/a`, { spec: { x: 2 }, status: { ok: false } }, 'application/merge-patch+json');
    assert.equal(spec.json.metadata.generation, 2);
    assert.deepEqual(spec.json.status, { ok: true }, 'the main resource never changes status');

    const stale = await call('PUT', `${USERS}/a`, { metadata: { name: 'a', resourceVersion: String(rv1) }, spec: { x: 3 } });
    assert.equal(stale.status, 409);
    assert.equal(stale.json.kind, 'Status');
    assert.equal(stale.json.reason, 'Conflict');
    assert.equal((await call('POST', USERS, { metadata: { name: 'a' } })).status, 409);
    assert.equal((await call('PATCH', `${USERS}/a`, [{ op: 'add' }], 'application/json-patch+json')).status, 415);

    const list = await call('GET', USERS);
    assert.equal(list.json.metadata.resourceVersion, String(fake.resourceVersion));
    assert.deepEqual(list.json.items.map((i: any) => i.metadata.name), ['a']);
  });

  test('watch: replay after a resourceVersion, bookmarks, and 410 Gone as an ERROR event once compacted', async () => {
    const from = fake.resourceVersion;
    await call('POST', USERS, { metadata: { name: 'b' }, spec: {} });
    await call('DELETE', `${USERS}/b`);
    const events = await watchEvents(`resourceVersion=${from}&allowWatchBookmarks=true`, 3);
    assert.deepEqual(events.map((e) => e.type), ['ADDED', 'DELETED', 'BOOKMARK']);
    assert.equal(events[2]?.object.metadata.resourceVersion, String(fake.resourceVersion));

    fake.compact();
    const gone = await watchEvents(`resourceVersion=${from}`, 2);
    assert.equal(gone.length, 1, 'the stream ends after the ERROR event');
    assert.equal(gone[0]?.type, 'ERROR');
    assert.equal(gone[0]?.object.code, 410);
    assert.equal(gone[0]?.object.reason, 'Expired');
  });
});
