/**
 * The abandoned-upload janitor on the real S3 server: multipart uploads left
 * behind under the users' prefixes and older than the age are aborted; fresh
 * ones, live ones and anything outside the managed prefixes are left alone.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { CreateMultipartUploadCommand, ListMultipartUploadsCommand, type S3Client } from '@aws-sdk/client-s3';
import { pino } from 'pino';
import type { SwiftS3 } from '../../dev/swift.ts';
import { createBucket, s3ClientFor, s3Server } from '../support/harness.ts';
import { UploadJanitor } from '../../src/storage/s3/janitor.ts';

const HOUR = 3_600_000;
let s3: SwiftS3;
let client: S3Client;
let bucket: string;

before(async () => {
  s3 = await s3Server();
  client = s3ClientFor(s3);
  bucket = await createBucket(s3);
});

after(async () => {
  client?.destroy();
  await s3?.stop();
});

async function startUpload(key: string): Promise<void> {
  await client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: key }));
}

async function openUploads(): Promise<{ key: string; initiated: number }[]> {
  const out = await client.send(new ListMultipartUploadsCommand({ Bucket: bucket }));
  return (out.Uploads ?? []).map((u) => ({ key: u.Key ?? '', initiated: u.Initiated?.getTime() ?? 0 })).sort((a, b) => a.key.localeCompare(b.key));
}

test('one pass aborts the stale uploads under the managed prefixes and nothing else', async () => {
  // "Stale" ones first; S3 reports initiation times in whole seconds, so the fresh ones come a second later.
  await startUpload('users/ann/stale-1.bin');
  await startUpload('users/ann/inbox/stale-2.bin'); // under two users' prefixes: listed once
  await startUpload('users/bob/stale-3.bin');
  await startUpload('users/ann/live.bin'); // old, but this process is still writing it
  await startUpload('other-app/stale-but-not-ours.bin');
  await new Promise((r) => setTimeout(r, 1100));
  await startUpload('users/ann/fresh.bin');
  const before = await openUploads();
  const staleAt = Math.max(...before.filter((u) => !u.key.endsWith('fresh.bin')).map((u) => u.initiated));
  const freshAt = before.find((u) => u.key.endsWith('fresh.bin'))?.initiated ?? 0;
  assert.ok(freshAt > staleAt);

  const lines: Record<string, unknown>[] = [];
  const log = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line)) });
  const janitor = new UploadJanitor({
    client,
    locations: () => [
      { s3: { bucket, keyPrefix: 'users/ann/' } },
      { s3: { bucket, keyPrefix: 'users/ann/inbox/' } },
      { s3: { bucket, keyPrefix: 'users/bob/' } },
    ],
    maxAgeMs: 24 * HOUR,
    // A day after the stale ones began, and less than a day after the fresh one.
    clock: { now: () => staleAt + 24 * HOUR + (freshAt - staleAt) / 2 },
    isLive: (b, key) => b === bucket && key === 'users/ann/live.bin',
    pageSize: 2, // several listing pages
    log,
  });
  const report = await janitor.runOnce();

  assert.deepEqual(report, { seen: 5, aborted: 3, failed: 0 });
  assert.deepEqual(
    (await openUploads()).map((u) => u.key),
    ['other-app/stale-but-not-ours.bin', 'users/ann/fresh.bin', 'users/ann/live.bin'],
  );
  const logged = lines.filter((l) => l.msg === 'aborted an abandoned multipart upload').map((l) => l.key).sort();
  assert.deepEqual(logged, ['users/ann/inbox/stale-2.bin', 'users/ann/stale-1.bin', 'users/bob/stale-3.bin']);

  // A second pass finds nothing more to do.
  assert.deepEqual(await janitor.runOnce(), { seen: 2, aborted: 0, failed: 0 });
  await janitor.stop();
});

test('passes run on their own at the configured interval until stop()', async () => {
  await startUpload('users/cy/old.bin');
  let passes = 0;
  const janitor = new UploadJanitor({
    client,
    locations: () => {
      passes++;
      return [{ s3: { bucket, keyPrefix: 'users/cy/' } }];
    },
    maxAgeMs: HOUR,
    clock: { now: () => Date.now() + 2 * HOUR },
    intervalMs: 50,
    firstPassDelayMs: 10,
    log: pino({ level: 'silent' }),
  });
  janitor.start();
  const deadline = Date.now() + 10_000;
  while (passes < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  await janitor.stop();
  assert.ok(passes >= 2, `${passes} passes`);
  assert.ok(!(await openUploads()).some((u) => u.key === 'users/cy/old.bin'));
  const stoppedAt = passes;
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(passes, stoppedAt, 'no pass after stop()');
});
