/**
 * The counting latency proxy (test/support/s3-latency-proxy.ts) in front of the real Swift S3: signed
 * SDK requests pass through it unchanged, each is counted as the S3 operation it is, and the delay
 * applies per request. Tests and the benchmark count an SFTP operation's S3 requests with it.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  S3Client,
  PutObjectCommand,
  HeadObjectCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  CopyObjectCommand,
  DeleteObjectCommand,
  CreateMultipartUploadCommand,
  UploadPartCommand,
  CompleteMultipartUploadCommand,
} from '@aws-sdk/client-s3';
import type { SwiftS3 } from '../../dev/swift.ts';
import { s3Server, createBucket } from '../support/harness.ts';
import { startS3LatencyProxy, countByKind, type S3LatencyProxy } from '../support/s3-latency-proxy.ts';

let s3: SwiftS3;
let bucket: string;
let proxy: S3LatencyProxy;
let client: S3Client;

before(async () => {
  s3 = await s3Server();
  bucket = await createBucket(s3);
  proxy = await startS3LatencyProxy(s3.endpoint, { delayMs: 0 });
  client = new S3Client({
    endpoint: proxy.endpoint,
    region: s3.region,
    forcePathStyle: true,
    credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
});

after(async () => {
  client?.destroy();
  await proxy?.close();
  await s3?.stop();
});

test('signed requests pass through and are counted by S3 operation', async () => {
  const mark = proxy.requests.length;
  await client.send(new PutObjectCommand({ Bucket: bucket, Key: 'p/a.txt', Body: 'hello' }));
  const head = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: 'p/a.txt' }));
  assert.equal(head.ContentLength, 5);
  const got = await client.send(new GetObjectCommand({ Bucket: bucket, Key: 'p/a.txt' }));
  assert.equal(await got.Body!.transformToString(), 'hello');
  await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: 'p/', Delimiter: '/' }));
  await client.send(new CopyObjectCommand({ Bucket: bucket, Key: 'p/b.txt', CopySource: `${bucket}/p/a.txt` }));
  await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: 'p/a.txt' }));
  const { UploadId } = await client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: 'p/m.bin' }));
  const part = await client.send(new UploadPartCommand({ Bucket: bucket, Key: 'p/m.bin', UploadId, PartNumber: 1, Body: Buffer.alloc(1024) }));
  await client.send(new CompleteMultipartUploadCommand({ Bucket: bucket, Key: 'p/m.bin', UploadId, MultipartUpload: { Parts: [{ PartNumber: 1, ETag: part.ETag }] } }));
  const seen = proxy.since(mark);
  assert.deepEqual(countByKind(seen), {
    PutObject: 1,
    HeadObject: 1,
    GetObject: 1,
    ListObjectsV2: 1,
    CopyObject: 1,
    DeleteObject: 1,
    CreateMultipartUpload: 1,
    UploadPart: 1,
    CompleteMultipartUpload: 1,
  });
  assert.ok(seen.every((r) => r.status >= 200 && r.status < 300), JSON.stringify(seen.map((r) => [r.kind, r.status])));
});

test('a missing object is still one counted request, with the upstream status', async () => {
  const mark = proxy.requests.length;
  await assert.rejects(client.send(new HeadObjectCommand({ Bucket: bucket, Key: 'p/none' })));
  const seen = proxy.since(mark);
  assert.equal(seen.length, 1);
  assert.equal(seen[0]!.kind, 'HeadObject');
  assert.equal(seen[0]!.status, 404);
});

test('the delay applies to every request, sequential requests add up', async () => {
  proxy.setDelay(150);
  try {
    const start = performance.now();
    await client.send(new HeadObjectCommand({ Bucket: bucket, Key: 'p/b.txt' }));
    await client.send(new HeadObjectCommand({ Bucket: bucket, Key: 'p/b.txt' }));
    // A lower bound only: two requests cannot take less than two delays.
    assert.ok(performance.now() - start >= 300);
  } finally {
    proxy.setDelay(0);
  }
});
