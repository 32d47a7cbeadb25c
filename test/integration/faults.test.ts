/**
 * S3 misbehaving under real transfers: a fault-injecting proxy sits between
 * the server and Swift and answers a share of requests with 503 SlowDown,
 * dropped connections (before and after the store acted), stalls, slow and
 * truncated bodies. Several ssh2 SFTP clients upload (small, medium and
 * multipart files) and download through it. Whatever happens, no client is
 * told "stored" for bytes that are not stored, no download succeeds with wrong
 * bytes, and no object ever holds bytes that no client sent as a whole file.
 *
 * FAULT_SEED=<n> replays a run (the seed is printed); FAULT_TRANSFERS=<n>
 * changes the number of transfers (default 210).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ssh2 from 'ssh2';
import { GetObjectCommand, ListMultipartUploadsCommand, type S3Client } from '@aws-sdk/client-s3';
import type { SwiftS3 } from '../../dev/swift.ts';
import { createBucket, makeClientKey, s3ClientFor, s3Server, startTestServer, type TestServer } from '../support/harness.ts';
import { FAULT_KINDS, prng, startFaultProxy, type FaultKind, type FaultProxy } from '../support/fault-proxy.ts';

const SEED = Number(process.env.FAULT_SEED ?? Math.floor(Math.random() * 2 ** 31));
const TRANSFERS = Number(process.env.FAULT_TRANSFERS ?? 210);
const WORKERS = 4;
const PATHS_PER_WORKER = 6;
const MULTIPART_LIMIT = 8;
const OP_TIMEOUT_MS = 90_000;
const MiB = 1024 * 1024;
const RATES: Partial<Record<FaultKind, number>> = {
  slowdown: 0.03,
  'reset-before': 0.02,
  'reset-mid': 0.015,
  stall: 0.01,
  'slow-body': 0.015,
  truncate: 0.015,
};

let s3: SwiftS3;
let direct: S3Client;
let proxy: FaultProxy;
let srv: TestServer;
let work: string;
let key: string;
let bucket: string;

before(async () => {
  console.log(`fault seed ${SEED} (FAULT_SEED=${SEED} replays this run)`);
  s3 = await s3Server();
  direct = s3ClientFor(s3);
  bucket = await createBucket(s3);
  proxy = await startFaultProxy({ target: s3.endpoint, seed: SEED, stallMs: 1500 });
  work = await mkdtemp(join(tmpdir(), 's3sftp-faults-'));
  key = await makeClientKey(work, 'fay');
  srv = await startTestServer({
    s3: { ...s3, endpoint: proxy.endpoint },
    bucket,
    env: { S3SFTP_S3_UPLOAD_PARTSIZE: '5MiB', S3SFTP_S3_UPLOAD_CONCURRENCY: '2' },
    users: [{ username: 'fay', keyFile: key, keyPrefix: 'fay/' }],
  });
});

after(async () => {
  await srv?.stop();
  await proxy?.close();
  direct?.destroy();
  await s3?.stop();
  await rm(work, { recursive: true, force: true });
});

async function sftpClient(): Promise<{ client: ssh2.Client; sftp: ssh2.SFTPWrapper }> {
  const client = new ssh2.Client();
  const privateKey = await readFile(key);
  await new Promise<void>((resolve, reject) => {
    client.once('ready', resolve).once('error', reject);
    client.connect({ host: '127.0.0.1', port: srv.port, username: 'fay', privateKey, readyTimeout: 60_000 });
  });
  client.on('error', () => undefined);
  const sftp = await new Promise<ssh2.SFTPWrapper>((resolve, reject) => client.sftp((err, s) => (err ? reject(err) : resolve(s))));
  return { client, sftp };
}

const sha = (data: Buffer) => createHash('sha256').update(data).digest('hex');

/** Resolves with the operation's outcome, or 'hung' when it does not answer in time. */
function within<T>(work: (cb: (err: Error | null | undefined, value?: T) => void) => void): Promise<{ ok: true; value: T } | { ok: false; err: string }> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve({ ok: false, err: 'hung' }), OP_TIMEOUT_MS);
    work((err, value) => {
      clearTimeout(timer);
      resolve(err ? { ok: false, err: err.message } : { ok: true, value: value as T });
    });
  });
}

interface PathState {
  /** sha256 of the last upload acknowledged to the client. */
  acked?: string;
  /** Uploads that failed since: their outcome is ambiguous when the store acted before the connection dropped. */
  failedSince: Set<string>;
}

test(`${TRANSFERS} transfers through random S3 faults: nothing corrupted, nothing acknowledged lost`, async () => {
  proxy.setRates(RATES);
  const random = prng(SEED ^ 0x5eed);
  const state = new Map<string, PathState>();
  const counts = { uploads: 0, downloads: 0, multipart: 0, uploadFailures: 0, downloadFailures: 0, hung: 0, wrongBytes: 0, failedButStored: 0 };
  const errors = new Map<string, number>();
  let started = 0;
  const startedAt = performance.now();

  const worker = async (w: number) => {
    const { client, sftp } = await sftpClient();
    try {
      while (started < TRANSFERS) {
        started++;
        const path = `/w${w}-f${Math.floor(random() * PATHS_PER_WORKER)}`;
        const entry = state.get(path) ?? { failedSince: new Set() };
        state.set(path, entry);
        if (entry.acked && random() < 0.45) {
          counts.downloads++;
          const got = await within<Buffer>((cb) => sftp.readFile(path, cb));
          if (!got.ok) {
            if (got.err === 'hung') counts.hung++;
            counts.downloadFailures++;
            errors.set(`download: ${got.err}`, (errors.get(`download: ${got.err}`) ?? 0) + 1);
            continue;
          }
          const digest = sha(got.value);
          if (digest === entry.acked) continue;
          if (entry.failedSince.has(digest)) {
            // A failed upload whose bytes were stored after all (the answer was lost): whole, not corrupt.
            counts.failedButStored++;
            entry.acked = digest;
            entry.failedSince.clear();
            continue;
          }
          counts.wrongBytes++;
          continue;
        }
        const r = random();
        const multipart = r < 0.04 && counts.multipart < MULTIPART_LIMIT;
        const size = multipart ? 5 * MiB + Math.floor(random() * 1.5 * MiB) : r < 0.7 ? Math.floor(random() * 16 * 1024) : Math.floor(random() * 600 * 1024);
        if (multipart) counts.multipart++;
        const data = randomBytes(size);
        const digest = sha(data);
        counts.uploads++;
        const put = await within<void>((cb) => sftp.writeFile(path, data, (err) => cb(err)));
        if (put.ok) {
          entry.acked = digest;
          entry.failedSince.clear();
        } else {
          if (put.err === 'hung') counts.hung++;
          counts.uploadFailures++;
          entry.failedSince.add(digest);
          errors.set(`upload: ${put.err}`, (errors.get(`upload: ${put.err}`) ?? 0) + 1);
        }
      }
    } finally {
      client.end();
    }
  };
  await Promise.all(Array.from({ length: WORKERS }, (_, w) => worker(w)));
  const seconds = (performance.now() - startedAt) / 1000;
  proxy.setRates({});

  // What the store holds, read past the proxy: for every path, the last
  // acknowledged upload or a whole later upload that failed ambiguously.
  let lost = 0;
  let corrupt = 0;
  const verifyStarted = performance.now();
  const storedShas = await Promise.all(
    [...state.keys()].map(async (path) => {
      try {
        const out = await direct.send(new GetObjectCommand({ Bucket: bucket, Key: `fay${path}` }));
        return sha(Buffer.from(await out.Body!.transformToByteArray()));
      } catch (err) {
        if ((err as { name?: string }).name !== 'NoSuchKey') throw err;
        return undefined;
      }
    }),
  );
  const verifySeconds = (performance.now() - verifyStarted) / 1000;
  for (const [i, [, entry]] of [...state].entries()) {
    const stored = storedShas[i];
    if (stored === undefined) {
      if (entry.acked) lost++;
    } else if (stored !== entry.acked && !entry.failedSince.has(stored)) {
      corrupt++;
    } else if (stored !== entry.acked) {
      counts.failedButStored++;
    }
  }

  const delays = [...proxy.stats.retryDelaysMs].sort((a, b) => a - b);
  const pct = (p: number) => Math.round(delays[Math.min(delays.length - 1, Math.floor(p * delays.length))] ?? 0);
  const faults = FAULT_KINDS.map((k) => `${k} ${proxy.stats.faults[k]}`).join(', ');
  console.log(
    [
      `seed ${SEED}: ${counts.uploads + counts.downloads} transfers in ${seconds.toFixed(1)} s ` +
        `(${counts.uploads} uploads, ${counts.multipart} multipart; ${counts.downloads} downloads)`,
      `S3 requests ${proxy.stats.requests}; faults injected: ${faults}`,
      `retries seen at the proxy ${proxy.stats.retries}; delay after a fault p10 ${pct(0.1)} ms, p50 ${pct(0.5)} ms, p90 ${pct(0.9)} ms, max ${pct(1)} ms`,
      `failures surfaced to the client: ${counts.uploadFailures} uploads, ${counts.downloadFailures} downloads (${counts.hung} hung)`,
      `failed uploads whose bytes were stored whole anyway: ${counts.failedButStored}`,
      `corrupt objects ${corrupt}, lost acknowledged uploads ${lost}, downloads with wrong bytes ${counts.wrongBytes} (store read back in ${verifySeconds.toFixed(1)} s)`,
      ...[...errors].map(([message, n]) => `  ${n} × ${message}`),
    ].join('\n'),
  );

  assert.equal(corrupt, 0, 'no object holds bytes that no client sent as a whole file');
  assert.equal(lost, 0, 'no acknowledged upload is lost');
  assert.equal(counts.wrongBytes, 0, 'no download succeeds with wrong bytes');
  assert.equal(counts.hung, 0, 'every operation answers');
  assert.ok(counts.uploads + counts.downloads >= Math.min(TRANSFERS, 200));
  const injected = FAULT_KINDS.reduce((n, k) => n + proxy.stats.faults[k], 0);
  assert.ok(injected >= 20, `faults were injected (${injected})`);
  assert.ok(proxy.stats.retries >= injected / 3, `faulted requests are retried (${proxy.stats.retries} of ${injected})`);
  // Backoff: retries are not immediate. Jitter: their delays spread out.
  assert.ok(pct(0.9) >= 50, `retries back off (p90 ${pct(0.9)} ms)`);
  assert.ok(new Set(delays.map((d) => Math.round(d / 10))).size >= Math.min(5, delays.length), 'retry delays are jittered');
  assert.ok(counts.uploads - counts.uploadFailures > counts.uploads / 2, 'most uploads succeed despite the faults');
});

test('a multipart abort that failed while S3 was down is retried once S3 is back', async () => {
  proxy.setRates({});
  const { client, sftp } = await sftpClient();
  const deleteUploads = () => proxy.stats.byShape.get('DELETE upload')?.count ?? 0;
  const abortedOk = () => proxy.stats.byShape.get('DELETE upload')?.statuses.get(204) ?? 0;
  const partsOk = () => proxy.stats.byShape.get('PUT part')?.statuses.get(200) ?? 0;
  const partsBefore = partsOk();
  const handle = await new Promise<Buffer>((resolve, reject) => sftp.open('/abandoned.bin', 'w', (err, h) => (err ? reject(err) : resolve(h))));
  const chunk = Buffer.alloc(256 * 1024, 7);
  for (let offset = 0; offset < 5 * MiB + chunk.length; offset += chunk.length) {
    await new Promise<void>((resolve, reject) => sftp.write(handle, chunk, 0, chunk.length, offset, (err) => (err ? reject(err) : resolve())));
  }
  // The first part is stored: a multipart upload exists in S3.
  for (let i = 0; i < 300 && partsOk() === partsBefore; i++) await new Promise((r) => setTimeout(r, 100));
  assert.ok(partsOk() > partsBefore, 'the first part was uploaded');

  // S3 goes down; the client disappears, so the server aborts the upload, and fails to.
  proxy.setDown('reset-before');
  client.destroy();
  for (let i = 0; i < 300 && deleteUploads() === 0; i++) await new Promise((r) => setTimeout(r, 100));
  assert.ok(deleteUploads() > 0, 'the server tried to abort the upload');
  // Down until the server's immediate retries are over (3 s without an attempt).
  let seen = deleteUploads();
  let quietSince = performance.now();
  while (performance.now() - quietSince < 3_000) {
    await new Promise((r) => setTimeout(r, 200));
    if (deleteUploads() !== seen) {
      seen = deleteUploads();
      quietSince = performance.now();
    }
  }
  proxy.setDown(null);
  const upAt = performance.now();
  for (let i = 0; i < 600 && abortedOk() === 0; i++) await new Promise((r) => setTimeout(r, 100));
  console.log(`abort attempts while down ${seen}; aborted ${((performance.now() - upAt) / 1000).toFixed(1)} s after S3 came back`);
  assert.ok(abortedOk() > 0, 'the abort was retried later and succeeded');
  const left = await direct.send(new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: 'fay/abandoned.bin' }));
  assert.deepEqual(left.Uploads ?? [], [], 'no multipart upload is left behind');
});
