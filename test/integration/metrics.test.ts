/**
 * What an operator's Prometheus sees: /metrics scraped over HTTP and read as
 * text, after real OpenSSH transfers; /healthz and /readyz. S3 is reached
 * through a bandwidth-limiting proxy so one test can make it slower than the
 * client and watch the upload lag and the bytes waiting in memory.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile, readFile, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { HeadObjectCommand, ListMultipartUploadsCommand } from '@aws-sdk/client-s3';
import type { SwiftS3 } from '../../dev/swift.ts';
import {
  createBucket,
  makeClientKey,
  s3ClientFor,
  s3Server,
  sftpBatch,
  sftpPassword,
  startTestServer,
  type TestServer,
} from '../support/harness.ts';
import { startSlowProxy, type SlowProxy } from '../support/slow-proxy.ts';
import { httpGet, scrape, type Scrape } from '../support/prometheus.ts';

const MiB = 1024 ** 2;
const PART_SIZE = 5 * MiB; // the harness's S3SFTP_S3_UPLOAD_PARTSIZE
const CONCURRENCY = 4; // the default s3.upload.concurrency
const WINDOW = 16 * MiB; // the out-of-order write window
const UNLIMITED = 1024 ** 3;

let s3: SwiftS3;
let proxy: SlowProxy;
let srv: TestServer;
let work: string;
let key: string;

before(async () => {
  s3 = await s3Server();
  proxy = await startSlowProxy({ target: s3.endpoint, bytesPerSecond: UNLIMITED });
  work = await mkdtemp(join(tmpdir(), 's3sftp-metrics-'));
  key = await makeClientKey(work, 'mia');
  srv = await startTestServer({
    s3,
    bucket: await createBucket(s3),
    env: { S3SFTP_S3_ENDPOINT: proxy.endpoint },
    users: [{ username: 'mia', keyFile: key, password: 'right-password', keyPrefix: 'home/mia/' }],
  });
});

after(async () => {
  await srv?.stop();
  await proxy?.close();
  await s3?.stop();
  await rm(work, { recursive: true, force: true });
});

const metricsPort = () => srv.server.metrics.port;

/** Polls until `check` holds on a fresh scrape; fails with the last values after `timeoutMs`. */
async function eventually(check: (m: Scrape) => boolean, what: string, timeoutMs = 10_000): Promise<Scrape> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const m = await scrape(metricsPort());
    if (check(m)) return m;
    if (Date.now() > deadline) assert.fail(`${what} did not happen within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('probes', () => {
  test('/healthz and /readyz answer 200 once the server is up; other paths 404', async () => {
    assert.equal((await httpGet(`http://127.0.0.1:${metricsPort()}/healthz`)).status, 200);
    const ready = await httpGet(`http://127.0.0.1:${metricsPort()}/readyz`);
    assert.equal(ready.status, 200, ready.body);
    assert.equal((await httpGet(`http://127.0.0.1:${metricsPort()}/nope`)).status, 404);
  });

  test('/metrics has the server metrics beside the Node.js process metrics', async () => {
    const m = await scrape(metricsPort());
    assert.ok(m.has('process_cpu_user_seconds_total'), 'default process metrics');
    assert.ok(m.has('nodejs_eventloop_lag_seconds'), 'default Node.js metrics');
    assert.equal(m.types.get('s3sftp_upload_completion_lag_seconds'), 'histogram');
    assert.equal(m.types.get('s3sftp_upload_pending_bytes'), 'gauge');
    assert.equal(m.types.get('s3sftp_transfers_total'), 'counter');
    assert.equal(m.value('s3sftp_users_loaded'), 1);
    // The start-up bucket check went through the instrumented client.
    assert.ok(m.value('s3sftp_s3_requests_total', { operation: 'HeadBucket', outcome: 'success' }) >= 1);
  });
});

describe('after real transfers', () => {
  test('transfer, byte, lag, auth and S3 request metrics match what the clients did', async () => {
    proxy.setRate(UNLIMITED);
    const size = 7 * MiB + 12345; // two parts: a multipart upload
    const data = randomBytes(size);
    await writeFile(join(work, 'up.bin'), data);
    const before = await scrape(metricsPort());

    const denied = await sftpPassword(srv.port, 'mia', 'wrong-password', 'ls\n', { timeoutMs: 30_000 });
    assert.notEqual(denied.code, 0, 'a wrong password is refused');
    const r = await sftpBatch(srv.port, 'mia', key, `put ${join(work, 'up.bin')} /up.bin\nget /up.bin ${join(work, 'down.bin')}\n`);
    assert.equal(r.code, 0, r.stderr);
    assert.ok((await readFile(join(work, 'down.bin'))).equals(data));

    // Session teardown after the client leaves is asynchronous: wait for it.
    const m = await eventually((s) => s.value('s3sftp_sessions_active') === 0, 'sessions_active back to 0');
    const delta = (name: string, labels: Record<string, string> = {}) => m.value(name, labels) - before.value(name, labels);

    assert.equal(delta('s3sftp_transfers_total', { direction: 'upload', outcome: 'success' }), 1);
    assert.equal(delta('s3sftp_transfers_total', { direction: 'download', outcome: 'success' }), 1);
    assert.equal(delta('s3sftp_transfers_total', { outcome: 'failure' }), 0);
    assert.equal(delta('s3sftp_transfer_bytes_total', { direction: 'upload' }), size);
    assert.equal(delta('s3sftp_transfer_bytes_total', { direction: 'download' }), size);
    assert.equal(delta('s3sftp_upload_completion_lag_seconds_count'), 1);
    assert.ok(delta('s3sftp_upload_completion_lag_seconds_sum') > 0);
    assert.equal(delta('s3sftp_s3_part_upload_duration_seconds_count'), 2);

    assert.equal(delta('s3sftp_auth_attempts_total', { method: 'password', outcome: 'failure' }), 1);
    assert.equal(delta('s3sftp_auth_attempts_total', { method: 'publickey', outcome: 'success' }), 1);
    assert.equal(delta('s3sftp_auth_attempts_total', { outcome: 'success', method: 'password' }), 0);

    assert.equal(delta('s3sftp_s3_requests_total', { operation: 'CreateMultipartUpload', outcome: 'success' }), 1);
    assert.equal(delta('s3sftp_s3_requests_total', { operation: 'UploadPart', outcome: 'success' }), 2);
    assert.equal(delta('s3sftp_s3_requests_total', { operation: 'CompleteMultipartUpload', outcome: 'success' }), 1);
    assert.ok(delta('s3sftp_s3_requests_total', { operation: 'GetObject', outcome: 'success' }) >= 1);
    assert.equal(delta('s3sftp_s3_requests_total', { outcome: 'failure' }), 0, 'a HEAD answered 404 is not a failure');
    assert.equal(
      delta('s3sftp_s3_request_duration_seconds_count', { operation: 'UploadPart' }),
      delta('s3sftp_s3_requests_total', { operation: 'UploadPart' }),
    );

    assert.equal(m.value('s3sftp_sessions_active'), 0);
    assert.equal(m.value('s3sftp_upload_pending_bytes'), 0);
    assert.equal(m.value('s3sftp_upload_parts_in_flight'), 0);
    for (const s of m.samples.filter((x) => x.name.startsWith('s3sftp_'))) {
      assert.ok(!Object.values(s.labels).some((v) => v.includes('/')), `no paths in labels: ${JSON.stringify(s)}`);
      assert.ok(!('user' in s.labels), 'no user label unless metrics.perUserLabels');
    }
  });

  test('S3 slower than the client: positive upload lag, bounded bytes in memory, and the upload succeeds', async (t) => {
    const size = 40 * MiB;
    await writeFile(join(work, 'slow.bin'), randomBytes(size));
    const before = await scrape(metricsPort());
    // Per connection; with 4 parts in flight S3 takes about 8 MiB/s, far below the client's pace.
    proxy.setRate(2 * MiB);
    const limit = PART_SIZE * (CONCURRENCY + 1) + WINDOW;
    let maxPending = 0;
    let done = false;
    const sampler = (async () => {
      while (!done) {
        maxPending = Math.max(maxPending, (await scrape(metricsPort())).value('s3sftp_upload_pending_bytes'));
        await new Promise((r) => setTimeout(r, 100));
      }
    })();
    let r;
    try {
      r = await sftpBatch(srv.port, 'mia', key, `put ${join(work, 'slow.bin')} /slow.bin\n`, { timeoutMs: 90_000 });
    } finally {
      done = true;
      await sampler;
      proxy.setRate(UNLIMITED);
    }
    assert.equal(r.code, 0, r.stderr);

    const m = await eventually((s) => s.value('s3sftp_sessions_active') === 0, 'sessions_active back to 0');
    const lagSum = m.value('s3sftp_upload_completion_lag_seconds_sum') - before.value('s3sftp_upload_completion_lag_seconds_sum');
    assert.equal(m.value('s3sftp_upload_completion_lag_seconds_count') - before.value('s3sftp_upload_completion_lag_seconds_count'), 1);
    t.diagnostic(`upload lag ${lagSum.toFixed(2)} s; most bytes waiting in memory ${(maxPending / MiB).toFixed(1)} MiB (limit ${limit / MiB} MiB)`);
    // At CLOSE, several parts were still on their way to S3.
    assert.ok(lagSum > 0.5, `lag ${lagSum}s`);
    assert.ok(maxPending >= PART_SIZE, `pending bytes were sampled while buffered (max ${maxPending})`);
    assert.ok(maxPending <= limit, `pending bytes ${maxPending} stayed within ${limit}`);
    assert.equal(m.value('s3sftp_upload_pending_bytes'), 0);
    assert.equal(m.value('s3sftp_upload_parts_in_flight'), 0);

    const client = s3ClientFor(s3);
    try {
      const head = await client.send(new HeadObjectCommand({ Bucket: srv.bucket, Key: 'home/mia/slow.bin' }));
      assert.equal(head.ContentLength, (await stat(join(work, 'slow.bin'))).size);
    } finally {
      client.destroy();
    }
  });

  test('a client that disappears while its upload is on its way to S3: a failed transfer, nothing left in memory or S3', async () => {
    // 20 MiB fits in the upload's buffers: the client sends everything and its CLOSE, then vanishes
    // while the parts are still going out. Nothing of the file may be stored.
    await writeFile(join(work, 'cut.bin'), randomBytes(20 * MiB));
    const before = await scrape(metricsPort());
    proxy.setRate(512 * 1024); // the upload would take about 10 s
    let r;
    try {
      // The harness kills the client when its time is up: here, mid-upload.
      r = await sftpBatch(srv.port, 'mia', key, `put ${join(work, 'cut.bin')} /cut.bin\n`, { timeoutMs: 3_000 });
    } finally {
      proxy.setRate(UNLIMITED);
    }
    assert.notEqual(r.code, 0);
    const m = await eventually(
      (s) =>
        s.value('s3sftp_sessions_active') === 0 &&
        s.value('s3sftp_upload_pending_bytes') === 0 &&
        s.value('s3sftp_upload_parts_in_flight') === 0 &&
        s.value('s3sftp_transfers_total', { direction: 'upload', outcome: 'failure' }) > before.value('s3sftp_transfers_total', { direction: 'upload', outcome: 'failure' }),
      'the abandoned upload to be cleaned up',
      20_000,
    );
    assert.equal(
      m.value('s3sftp_transfers_total', { direction: 'upload', outcome: 'failure' }) - before.value('s3sftp_transfers_total', { direction: 'upload', outcome: 'failure' }),
      1,
    );
    assert.equal(m.value('s3sftp_transfers_total', { direction: 'upload', outcome: 'success' }), before.value('s3sftp_transfers_total', { direction: 'upload', outcome: 'success' }));
    // Parts cancelled because the client left are not S3 failures.
    assert.equal(m.value('s3sftp_s3_requests_total', { outcome: 'failure' }) - before.value('s3sftp_s3_requests_total', { outcome: 'failure' }), 0);
    const client = s3ClientFor(s3);
    try {
      const open = await client.send(new ListMultipartUploadsCommand({ Bucket: srv.bucket, Prefix: 'home/mia/cut.bin' }));
      assert.deepEqual(open.Uploads ?? [], []);
      await assert.rejects(client.send(new HeadObjectCommand({ Bucket: srv.bucket, Key: 'home/mia/cut.bin' })), { name: 'NotFound' });
    } finally {
      client.destroy();
    }
  });
});
