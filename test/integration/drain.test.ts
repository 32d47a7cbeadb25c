/**
 * SIGTERM as Kubernetes sends it, to the real CLI: the server stops taking
 * connections and reports not ready, lets an upload in flight finish within
 * shutdownGracePeriod, aborts what cannot finish (no object, no multipart
 * upload left), and exits 0. S3 is slowed by a proxy so the upload is in
 * flight when the signal arrives.
 */
import { after, afterEach, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { connect } from 'node:net';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { HeadObjectCommand, ListMultipartUploadsCommand, type S3Client } from '@aws-sdk/client-s3';
import type { SwiftS3 } from '../../dev/swift.ts';
import { createBucket, makeClientKey, s3ClientFor, s3Server, sftpBatch, userYaml, type RunResult } from '../support/harness.ts';
import { startSlowProxy, type SlowProxy } from '../support/slow-proxy.ts';
import { startCliServer, type CliServer } from '../support/cli-server.ts';
import { httpGet, scrape } from '../support/prometheus.ts';

const MiB = 1024 ** 2;
const UNLIMITED = 1024 ** 3;

let s3: SwiftS3;
let proxy: SlowProxy;
let client: S3Client;
let bucket: string;
let work: string;
let key: string;
const children = new Set<ChildProcess>();

before(async () => {
  s3 = await s3Server();
  proxy = await startSlowProxy({ target: s3.endpoint, bytesPerSecond: UNLIMITED });
  client = s3ClientFor(s3);
  bucket = await createBucket(s3);
  work = await mkdtemp(join(tmpdir(), 's3sftp-drain-'));
  await mkdir(join(work, 'users'));
  key = await makeClientKey(work, 'dora');
  await writeFile(join(work, 'users', 'dora.yaml'), await userYaml({ username: 'dora', keyFile: key, keyPrefix: 'dora/' }));
});

afterEach(() => {
  for (const child of children) child.kill('SIGKILL');
  children.clear();
  proxy.setRate(UNLIMITED);
});

after(async () => {
  client?.destroy();
  await proxy?.close();
  await s3?.stop();
  await rm(work, { recursive: true, force: true });
});

/** Starts `s3sftp serve` with S3 behind the proxy. */
async function startCli(env: Record<string, string>): Promise<CliServer> {
  const cli = await startCliServer({ s3, endpoint: proxy.endpoint, bucket, dir: work, env });
  children.add(cli.child);
  return cli;
}

/** Resolves with the time `promise` took, or rejects after `ms`. */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not happen within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Polls `check` every 100 ms until it holds; fails after `ms`. */
async function waitFor(check: () => Promise<boolean>, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check().catch(() => false))) {
    if (Date.now() > deadline) assert.fail(`${what} did not happen within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Whether a TCP connection to 127.0.0.1:port is refused. */
function connectionRefused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNREFUSED'));
  });
}

async function openUploads(prefix: string): Promise<string[]> {
  const out = await client.send(new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: prefix }));
  return (out.Uploads ?? []).map((u) => u.Key ?? '');
}

async function objectSize(objectKey: string): Promise<number | undefined> {
  try {
    return (await client.send(new HeadObjectCommand({ Bucket: bucket, Key: objectKey }))).ContentLength;
  } catch (err) {
    if ((err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 404) return undefined;
    throw err;
  }
}

describe('SIGTERM', () => {
  test('an upload in flight finishes within the grace period; the server refuses newcomers, reports not ready, exits 0', async () => {
    const cli = await startCli({ S3SFTP_SHUTDOWNGRACEPERIOD: '20s' });
    const ready = await httpGet(`http://127.0.0.1:${cli.metricsPort}/readyz`);
    assert.equal(ready.status, 200, ready.body);

    const size = 12 * MiB; // three parts
    await writeFile(join(work, 'finishes.bin'), randomBytes(size));
    proxy.setRate(1 * MiB); // per connection: each 5 MiB part takes about 5 s
    let clientDone = false;
    const upload = sftpBatch(cli.sshPort, 'dora', key, `put ${join(work, 'finishes.bin')} /finishes.bin\n`, { timeoutMs: 60_000 }).finally(() => {
      clientDone = true;
    });
    await waitFor(async () => (await scrape(cli.metricsPort)).value('s3sftp_upload_parts_in_flight') > 0, 20_000, 'parts in flight');

    cli.child.kill('SIGTERM');
    assert.equal(clientDone, false, 'the upload was in flight at SIGTERM');
    await waitFor(async () => (await httpGet(`http://127.0.0.1:${cli.metricsPort}/readyz`)).status === 503, 5_000, '/readyz 503');
    assert.ok(await connectionRefused(cli.sshPort), 'new SSH connections are refused while draining');

    const r: RunResult = await within(upload, 30_000, 'the upload');
    assert.equal(r.code, 0, `the client succeeded: ${r.stderr}`);
    assert.equal(await objectSize('dora/finishes.bin'), size);
    const exit = await within(cli.exited, 15_000, 'process exit');
    assert.deepEqual(exit, { code: 0, signal: null });

    const audit = cli.logs.find((l) => l.audit === true && l.event === 'transfer' && l.path === '/finishes.bin');
    assert.ok(audit, 'an audit line for the upload');
    assert.equal(audit.user, 'dora');
    assert.equal(audit.direction, 'upload');
    assert.equal(audit.bytes, size);
    assert.equal(audit.outcome, 'success');
    assert.equal(typeof audit.durationSeconds, 'number');
    assert.deepEqual(await openUploads('dora/'), []);
  });

  test('an upload that cannot finish in time is aborted: no object, no multipart upload left, exit 0', async () => {
    const cli = await startCli({ S3SFTP_SHUTDOWNGRACEPERIOD: '2s' });
    await writeFile(join(work, 'too-slow.bin'), randomBytes(12 * MiB));
    proxy.setRate(32 * 1024); // a 5 MiB part would take minutes
    const upload = sftpBatch(cli.sshPort, 'dora', key, `put ${join(work, 'too-slow.bin')} /too-slow.bin\n`, { timeoutMs: 60_000 });
    await waitFor(async () => (await openUploads('dora/too-slow.bin')).length > 0, 20_000, 'the multipart upload to start');
    await waitFor(async () => (await scrape(cli.metricsPort)).value('s3sftp_upload_parts_in_flight') > 0, 20_000, 'parts in flight');

    const signalled = Date.now();
    cli.child.kill('SIGTERM');
    const exit = await within(cli.exited, 20_000, 'process exit');
    assert.deepEqual(exit, { code: 0, signal: null });
    assert.ok(Date.now() - signalled >= 2_000, 'the upload had its grace period');

    const r = await within(upload, 20_000, 'the client to give up');
    assert.notEqual(r.code, 0, 'the client was told its upload did not complete');
    assert.equal(await objectSize('dora/too-slow.bin'), undefined, 'nothing partial is visible');
    assert.deepEqual(await openUploads('dora/too-slow.bin'), [], 'the multipart upload was aborted');
    assert.ok(cli.logs.some((l) => l.msg === 'grace period over: ending connections and aborting their uploads'));
    const audit = cli.logs.find((l) => l.audit === true && l.path === '/too-slow.bin');
    assert.equal(audit?.outcome, 'failure');
  });
});
