import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Registry } from 'prom-client';
import { Metrics } from '../../src/metrics/metrics.ts';
import { requestOutcome } from '../../src/metrics/s3-requests.ts';
import { parsePrometheusText } from '../support/prometheus.ts';

async function exposition(registry: Registry) {
  return parsePrometheusText(await registry.metrics());
}

test('without perUserLabels the transfer counters have no user label; with it they do', async () => {
  for (const perUserLabels of [false, true]) {
    const registry = new Registry();
    const metrics = new Metrics({ registry, perUserLabels, processMetrics: false });
    metrics.serverEvents().transferDone?.({ user: 'ann', direction: 'upload', path: '/a', bytes: 10, seconds: 1, ok: true });
    const m = await exposition(registry);
    const series = m.matching('s3sftp_transfers_total', { direction: 'upload', outcome: 'success' }).filter((s) => s.value > 0);
    assert.equal(series.length, 1);
    assert.equal(series[0]?.labels.user, perUserLabels ? 'ann' : undefined);
    assert.equal(m.value('s3sftp_transfer_bytes_total', { direction: 'upload' }), 10);
    assert.equal(m.has('process_cpu_user_seconds_total'), false, 'processMetrics: false');
  }
});

test('pending bytes and parts in flight follow the upload events', async () => {
  const registry = new Registry();
  const metrics = new Metrics({ registry, processMetrics: false });
  const up = metrics.uploadEvents();
  up.onBuffered?.(100);
  up.onBuffered?.(50);
  up.onPartStart?.(100);
  let m = await exposition(registry);
  assert.equal(m.value('s3sftp_upload_pending_bytes'), 150);
  assert.equal(m.value('s3sftp_upload_parts_in_flight'), 1);
  up.onPartDone?.(100, 2, true);
  up.onStored?.(100);
  up.onDiscarded?.(50);
  up.onCommit?.(0.5);
  m = await exposition(registry);
  assert.equal(m.value('s3sftp_upload_pending_bytes'), 0);
  assert.equal(m.value('s3sftp_upload_parts_in_flight'), 0);
  assert.equal(m.value('s3sftp_s3_part_upload_duration_seconds_sum'), 2);
  assert.equal(m.value('s3sftp_upload_completion_lag_seconds_count'), 1);
});

test('users loaded is read at scrape time; sessions and logins are counted', async () => {
  const registry = new Registry();
  const metrics = new Metrics({ registry, processMetrics: false });
  let users = 3;
  metrics.countUsersWith(() => users);
  const ev = metrics.serverEvents();
  ev.sessionOpened?.();
  ev.authAttempt?.({ method: 'password', ok: false });
  assert.equal((await exposition(registry)).value('s3sftp_users_loaded'), 3);
  users = 4;
  ev.sessionClosed?.();
  const m = await exposition(registry);
  assert.equal(m.value('s3sftp_users_loaded'), 4);
  assert.equal(m.value('s3sftp_sessions_active'), 0);
  assert.equal(m.value('s3sftp_auth_attempts_total', { method: 'password', outcome: 'failure' }), 1);
});

test('S3 request outcomes: answers S3 gives as asked are successes, cancellations are not counted', () => {
  const sdkError = (status: number) => Object.assign(new Error('x'), { $metadata: { httpStatusCode: status } });
  const abort = (reason: string) => Object.assign(new Error('Request aborted'), { name: 'AbortError', cause: { name: reason } });
  assert.equal(requestOutcome(sdkError(404)), 'success');
  assert.equal(requestOutcome(sdkError(412)), 'success');
  assert.equal(requestOutcome(sdkError(403)), 'failure');
  assert.equal(requestOutcome(sdkError(503)), 'failure');
  assert.equal(requestOutcome(Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' })), 'failure');
  assert.equal(requestOutcome(abort('TimeoutError')), 'failure', 'our deadline ran out: S3 was too slow');
  assert.equal(requestOutcome(abort('AbortError')), undefined, 'cancelled because the transfer was abandoned');
});

test('with perUserLabels, s3sftp_sessions_active has a user label, capped at perUserLabelLimit with "other"', async () => {
  const registry = new Registry();
  const metrics = new Metrics({ registry, perUserLabels: true, perUserLabelLimit: 2, processMetrics: false });
  const events = metrics.serverEvents();
  for (const user of ['ann', 'bob', 'cy', 'dee', 'ann']) events.sessionOpened?.(user);
  events.sessionClosed?.('dee');
  events.transferDone?.({ user: 'cy', direction: 'upload', path: '/a', bytes: 5, seconds: 1, ok: true });
  const sessions = (await registry.getSingleMetric('s3sftp_sessions_active')?.get())?.values ?? [];
  const byUser = Object.fromEntries(sessions.map((v) => [v.labels.user, v.value]));
  assert.deepEqual(byUser, { ann: 2, bob: 1, other: 1 });
  const transfers = (await registry.getSingleMetric('s3sftp_transfers_total')?.get())?.values ?? [];
  assert.deepEqual(transfers.map((v) => v.labels.user), ['other']);
});
