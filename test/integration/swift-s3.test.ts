/**
 * The S3 behaviours s3sftp relies on, checked against the test S3 server (Swift 2.30 + s3api,
 * Debian 12, started by dev/swift.ts). Quirks are asserted too, so a Swift upgrade that changes
 * them fails here instead of somewhere confusing.
 *
 * Findings (Swift 2.30.1 s3api from Debian 12, @aws-sdk/client-s3 3.1174):
 * - requestChecksumCalculation 'WHEN_SUPPORTED' (SDK default): PutObject and UploadPart with a
 *   Buffer/string body work — the SDK sends `x-amz-checksum-crc32` as a header, which Swift
 *   ignores (a wrong CRC32 is accepted, so it buys no integrity). With a stream body the SDK
 *   switches to `Content-Encoding: aws-chunked` + trailer and Swift answers 501 NotImplemented
 *   ("aws-chunked is not supported"). → Use 'WHEN_REQUIRED' for requests and responses; Content-MD5
 *   is verified (BadDigest) if we send it.
 * - DeleteObjects fails with 400 InvalidRequest "Missing required header: Content-MD5" under both
 *   settings: current SDKs send a CRC32 checksum instead of Content-MD5. It works when a middleware
 *   adds Content-MD5 (see `addContentMd5ForDeleteObjects`). Quiet mode works the same way.
 * - Listing: keys come back in UTF-8 byte order (as AWS). MaxKeys above 1000 is echoed back but at
 *   most 1000 entries come back, IsTruncated true (checked by hand with 1005 keys; as AWS). A key
 *   containing a character XML 1.0 cannot carry (U+0001, U+FFFF...) makes a plain listing of any
 *   range that includes it fail with 500 InternalError; with EncodingType 'url' it works and Key, Prefix
 *   and CommonPrefixes are percent-encoded (the SDK does not decode them). → Always list with
 *   EncodingType 'url' and decodeURIComponent the results.
 * - ListObjectsV2 with Delimiter pages correctly: each CommonPrefix once; the continuation token is
 *   base64 of the last key or prefix returned. StartAfter equal to a common prefix ('p/a/') skips
 *   that whole prefix (AWS would still return it, since 'p/a/x' > 'p/a/').
 * - LastModified has whole-second precision (HEAD, GET and listings) → keep mtime in x-amz-meta-mtime.
 * - User metadata names come back lower-cased. A value over 256 bytes gave 500 InternalError with
 *   Swift's defaults; dev/swift.ts raises the limit to 2048 bytes per value / 4096 total (AWS: 2 KiB
 *   total). Over the limit is still 500 InternalError, not AWS's 400 MetadataTooLarge.
 * - ETags: single PUT → quoted hex MD5; multipart → "<md5-of-part-md5s>-<parts>" like AWS.
 *   CopyObject of a multipart object keeps the "-N" ETag (AWS would compute a fresh one); the copy
 *   stays readable after the source is deleted.
 * - A completed multipart upload without an explicit ContentType gets Content-Type
 *   "application/xml" (the SLO manifest's; AWS: binary/octet-stream). → Always set ContentType.
 * - A directory marker "a/" is an ordinary empty object; HeadObject "a" is 404 as on AWS. In-progress
 *   multipart parts live in a hidden "<bucket>+segments" container and never show in listings.
 * - Multipart: the last part may be small, others must be ≥ 5 MiB (EntityTooSmall), part numbers
 *   1..10000 (configured in dev/swift.ts, Swift's default is 1000; 10001 is rejected with
 *   InvalidArgument, 10000 parts were not exercised), zero parts → MalformedXML, a single
 *   empty part is accepted. UploadPart with an unknown upload id → 404 NoSuchUpload.
 *   HeadObject with PartNumber → 405.
 * - PutObject with If-None-Match: * → 501 NotImplemented (no atomic create-if-absent).
 * - Errors: HeadObject/HeadBucket on a missing key/bucket → 404 with name 'NotFound'; GetObject →
 *   NoSuchKey / NoSuchBucket; range past the end → 416 InvalidRange; key > 1024 bytes →
 *   KeyTooLongError; DeleteObject on a missing key → success; CopyObject onto itself without REPLACE
 *   → InvalidRequest; DeleteBucket on a non-empty bucket → 409 BucketNotEmpty; bucket names must be
 *   DNS-compatible (≥ 3 characters, lower case; dashes and dots allowed); CreateBucket again → 409
 *   BucketAlreadyOwnedByYou.
 * - ListBuckets CreationDate is always 2009-02-03T16:45:09Z.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
  UploadPartCopyCommand,
} from '@aws-sdk/client-s3';
import type { ListObjectsV2CommandOutput } from '@aws-sdk/client-s3';
import { startSwift } from '../../dev/swift.ts';
import type { SwiftS3 } from '../../dev/swift.ts';

const MiB = 1024 * 1024;
const BUCKET = 'swift-s3-test';
const TEST_TIMEOUT = 30_000;

let swift: SwiftS3;
let s3: S3Client;

function client(checksums: 'WHEN_REQUIRED' | 'WHEN_SUPPORTED'): S3Client {
  return new S3Client({
    endpoint: swift.endpoint,
    region: swift.region,
    forcePathStyle: true,
    credentials: { accessKeyId: swift.accessKeyId, secretAccessKey: swift.secretAccessKey },
    requestChecksumCalculation: checksums,
    responseChecksumValidation: checksums,
    maxAttempts: 1, // no retries hiding a failure
  });
}

/** Swift's s3api insists on Content-MD5 for DeleteObjects; current SDKs send only a CRC32. */
function addContentMd5ForDeleteObjects(c: S3Client): void {
  c.middlewareStack.add(
    (next) => async (args) => {
      const request = args.request as { query?: Record<string, unknown>; headers: Record<string, string>; body?: unknown };
      const body = request.body;
      if (request.query && 'delete' in request.query && (typeof body === 'string' || body instanceof Uint8Array)) {
        request.headers['content-md5'] = createHash('md5').update(body).digest('base64');
      }
      return next(args);
    },
    { step: 'build', name: 'addContentMd5ForDeleteObjects' },
  );
}

interface S3Failure {
  name: string;
  status: number | undefined;
}

async function failure(promise: Promise<unknown>): Promise<S3Failure> {
  try {
    await promise;
  } catch (err) {
    const e = err as { name: string; $metadata?: { httpStatusCode?: number } };
    return { name: e.name, status: e.$metadata?.httpStatusCode };
  }
  assert.fail('expected the request to fail');
}

async function getBytes(key: string, range?: string): Promise<{ body: Buffer; contentRange: string | undefined }> {
  const res = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: key, Range: range }));
  assert.ok(res.Body);
  return { body: Buffer.from(await res.Body.transformToByteArray()), contentRange: res.ContentRange };
}

async function put(key: string, body: string | Buffer, metadata?: Record<string, string>): Promise<string> {
  const res = await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: body, Metadata: metadata }));
  assert.ok(res.ETag);
  return res.ETag;
}

async function exists(key: string): Promise<boolean> {
  try {
    await s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: key }));
    return true;
  } catch (err) {
    if ((err as { name?: string }).name === 'NotFound') return false;
    throw err;
  }
}

/** All pages of one delimited listing, decoded from EncodingType 'url'. */
async function listAll(prefix: string, maxKeys: number): Promise<{ keys: string[]; prefixes: string[]; pages: number }> {
  const keys: string[] = [];
  const prefixes: string[] = [];
  let token: string | undefined;
  let pages = 0;
  do {
    const res: ListObjectsV2CommandOutput = await s3.send(
      new ListObjectsV2Command({
        Bucket: BUCKET,
        Prefix: prefix,
        Delimiter: '/',
        MaxKeys: maxKeys,
        ContinuationToken: token,
        EncodingType: 'url',
      }),
    );
    pages++;
    assert.ok(pages < 100, 'listing does not terminate');
    const entries = (res.Contents?.length ?? 0) + (res.CommonPrefixes?.length ?? 0);
    assert.ok(entries <= maxKeys, `page has ${entries} entries > MaxKeys ${maxKeys}`);
    assert.equal(res.KeyCount, entries);
    for (const o of res.Contents ?? []) keys.push(decodeURIComponent(o.Key ?? ''));
    for (const p of res.CommonPrefixes ?? []) prefixes.push(decodeURIComponent(p.Prefix ?? ''));
    assert.equal(res.IsTruncated, res.NextContinuationToken !== undefined);
    token = res.NextContinuationToken;
  } while (token);
  return { keys, prefixes, pages };
}

async function multipartUpload(key: string, parts: Buffer[], contentType?: string): Promise<string> {
  const { UploadId } = await s3.send(
    new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: key, ContentType: contentType, Metadata: { mtime: '42' } }),
  );
  assert.ok(UploadId);
  const done = [];
  for (const [i, body] of parts.entries()) {
    const { ETag } = await s3.send(
      new UploadPartCommand({ Bucket: BUCKET, Key: key, UploadId, PartNumber: i + 1, Body: body }),
    );
    done.push({ PartNumber: i + 1, ETag });
  }
  const res = await s3.send(
    new CompleteMultipartUploadCommand({ Bucket: BUCKET, Key: key, UploadId, MultipartUpload: { Parts: done } }),
  );
  assert.ok(res.ETag);
  return res.ETag;
}

function md5(data: Buffer | string): string {
  return createHash('md5').update(data).digest('hex');
}

/** AWS multipart ETag: md5 of the concatenated binary part MD5s, dash, part count. */
function multipartEtag(parts: Buffer[]): string {
  const joined = Buffer.concat(parts.map((p) => createHash('md5').update(p).digest()));
  return `"${md5(joined)}-${parts.length}"`;
}

before(
  async () => {
    swift = await startSwift();
    s3 = client('WHEN_REQUIRED');
  },
  { timeout: 90_000 },
);

after(
  async () => {
    s3?.destroy();
    await swift?.stop();
  },
  { timeout: 30_000 },
);

describe('swift s3api', { timeout: 300_000 }, () => {
  it('creates buckets, AWS naming rules', { timeout: TEST_TIMEOUT }, async () => {
    const res = await s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
    assert.equal(res.$metadata.httpStatusCode, 200);
    await s3.send(new HeadBucketCommand({ Bucket: BUCKET }));
    assert.deepEqual(await failure(s3.send(new CreateBucketCommand({ Bucket: BUCKET }))), {
      name: 'BucketAlreadyOwnedByYou',
      status: 409,
    });
    assert.deepEqual(await failure(s3.send(new CreateBucketCommand({ Bucket: 'Upper-Case' }))), {
      name: 'InvalidBucketName',
      status: 400,
    });
  });

  it('HeadBucket on a missing bucket is 404 NotFound', { timeout: TEST_TIMEOUT }, async () => {
    assert.deepEqual(await failure(s3.send(new HeadBucketCommand({ Bucket: 'no-such-bucket' }))), {
      name: 'NotFound',
      status: 404,
    });
    assert.deepEqual(
      await failure(s3.send(new GetObjectCommand({ Bucket: 'no-such-bucket', Key: 'k' }))),
      { name: 'NoSuchBucket', status: 404 },
    );
  });

  it('stores user metadata and returns it from HeadObject', { timeout: TEST_TIMEOUT }, async () => {
    const etag = await put('meta/file', 'hello', { mtime: '1700000000.123', Mode: '0644' });
    assert.equal(etag, `"${md5('hello')}"`);
    const head = await s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: 'meta/file' }));
    assert.equal(head.ContentLength, 5);
    assert.equal(head.ETag, etag);
    assert.deepEqual(head.Metadata, { mtime: '1700000000.123', mode: '0644' }); // names lower-cased
    assert.ok(head.LastModified);
    assert.equal(head.LastModified.getTime() % 1000, 0, 'LastModified has whole-second precision');
    assert.equal((await getBytes('meta/file')).body.toString(), 'hello');

    // Up to 2 KiB per value with dev/swift.ts constraints; beyond is a 500, not MetadataTooLarge.
    await put('meta/long', 'x', { mtime: '1', note: 'n'.repeat(2000) });
    assert.deepEqual(await failure(put('meta/too-long', 'x', { note: 'n'.repeat(2049) })), {
      name: 'InternalError',
      status: 500,
    });

    assert.deepEqual(await failure(s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: 'meta/none' }))), {
      name: 'NotFound',
      status: 404,
    });
    assert.deepEqual(await failure(s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: 'meta/none' }))), {
      name: 'NoSuchKey',
      status: 404,
    });
    assert.deepEqual(await failure(put('k'.repeat(1025), 'x')), { name: 'KeyTooLongError', status: 400 });
    assert.deepEqual(
      await failure(s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'meta/file', Body: 'x', IfNoneMatch: '*' }))),
      { name: 'NotImplemented', status: 501 },
    );
    assert.deepEqual(
      await failure(
        s3.send(
          new PutObjectCommand({
            Bucket: BUCKET,
            Key: 'meta/md5',
            Body: 'hellx',
            ContentMD5: createHash('md5').update('hello').digest('base64'),
          }),
        ),
      ),
      { name: 'BadDigest', status: 400 },
    );
  });

  it('pages a delimited ListObjectsV2 with each common prefix once', { timeout: TEST_TIMEOUT }, async () => {
    const files = ['list/a/1', 'list/a/2', 'list/a/3', 'list/b/1', 'list/c', 'list/d/x/1', 'list/d/2', 'list/e', 'list/f/'];
    await Promise.all(files.map((k) => put(k, k)));
    const { keys, prefixes, pages } = await listAll('list/', 2);
    assert.deepEqual(keys, ['list/c', 'list/e']);
    assert.deepEqual(prefixes, ['list/a/', 'list/b/', 'list/d/', 'list/f/']);
    assert.equal(pages, 3);

    // Same listing in one page; a directory marker is listed under its own prefix.
    const one = await listAll('list/', 1000);
    assert.deepEqual(one, { keys, prefixes, pages: 1 });
    assert.deepEqual((await listAll('list/f/', 1000)).keys, ['list/f/']);
    assert.deepEqual((await listAll('list/a/', 1)).keys, ['list/a/1', 'list/a/2', 'list/a/3']);

    const first = await s3.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: 'list/', Delimiter: '/', MaxKeys: 2 }));
    assert.equal(
      Buffer.from(first.NextContinuationToken ?? '', 'base64').toString(),
      'list/b/',
      'token is base64 of the last entry',
    );

    // Quirk: StartAfter equal to a prefix skips that prefix entirely.
    const after = await s3.send(
      new ListObjectsV2Command({ Bucket: BUCKET, Prefix: 'list/', Delimiter: '/', StartAfter: 'list/a/' }),
    );
    assert.deepEqual(after.CommonPrefixes?.map((p) => p.Prefix), ['list/b/', 'list/d/', 'list/f/']);

    const none = await s3.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: 'nothing/', Delimiter: '/' }));
    assert.equal(none.KeyCount, 0);
    assert.equal(none.Contents, undefined);
    assert.equal(none.IsTruncated, false);
  });

  it('round-trips keys with spaces, %, +, #, ? and unicode; lists in UTF-8 byte order', { timeout: TEST_TIMEOUT }, async () => {
    const names = [
      'with space', '100%', 'a+b', 'hash#tag', 'q?x&y=z', 'ünïcödé', 'e\u0301', '日本語', 'emoji 😀',
      'Z', '~', ' lead', 'trail ',
    ];
    const keys = names.map((n) => `odd/${n}`);
    for (const key of keys) await put(key, `body of ${key}`);
    for (const key of keys) {
      assert.equal((await getBytes(key)).body.toString(), `body of ${key}`);
      assert.ok(await exists(key), key);
    }
    const byteOrder = [...keys].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
    assert.deepEqual((await listAll('odd/', 1000)).keys, byteOrder);
    assert.deepEqual((await listAll('odd/', 3)).keys, byteOrder);

    // CopySource must be URL-encoded.
    await s3.send(new CopyObjectCommand({ Bucket: BUCKET, Key: 'odd-copy/x', CopySource: `${BUCKET}/${encodeURIComponent('odd/a+b')}` }));
    assert.equal((await getBytes('odd-copy/x')).body.toString(), 'body of odd/a+b');
  });

  it('needs EncodingType url to list keys XML cannot carry', { timeout: TEST_TIMEOUT }, async () => {
    const keys = ['xml/ctl\u0001x', 'xml/nonchar\uFFFF', 'xml/nl\nx'];
    for (const key of keys) await put(key, 'x');
    assert.deepEqual(await failure(s3.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: 'xml/' }))), {
      name: 'InternalError',
      status: 500,
    });
    const listed = await listAll('xml/', 1000);
    assert.deepEqual(listed.keys, [...keys].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b))));
    for (const key of keys) await s3.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: key }));
  });

  it('completes a multipart upload and serves ranged GETs of it', { timeout: TEST_TIMEOUT }, async () => {
    const parts = [randomBytes(5 * MiB), randomBytes(5 * MiB), Buffer.from('the small last part')];
    const etag = await multipartUpload('mpu/big', parts, 'application/octet-stream');
    assert.equal(etag, multipartEtag(parts));
    const whole = Buffer.concat(parts);

    const head = await s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: 'mpu/big' }));
    assert.equal(head.ContentLength, whole.length);
    assert.equal(head.ETag, etag);
    assert.equal(head.ContentType, 'application/octet-stream');
    assert.deepEqual(head.Metadata, { mtime: '42' });

    const start = 5 * MiB - 10;
    const ranged = await getBytes('mpu/big', `bytes=${start}-${start + 29}`);
    assert.equal(ranged.contentRange, `bytes ${start}-${start + 29}/${whole.length}`);
    assert.ok(ranged.body.equals(whole.subarray(start, start + 30)));
    const tail = await getBytes('mpu/big', 'bytes=-5');
    assert.equal(tail.body.toString(), ' part');
    assert.deepEqual(
      await failure(s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: 'mpu/big', Range: `bytes=${whole.length}-` }))),
      { name: 'InvalidRange', status: 416 },
    );
    assert.equal(md5((await getBytes('mpu/big')).body), md5(whole));

    const listed = await s3.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: 'mpu/big' }));
    assert.deepEqual(listed.Contents?.map((o) => [o.Key, o.Size, o.ETag]), [['mpu/big', whole.length, etag]]);
  });

  it('enforces part sizes and numbers; quirky defaults', { timeout: TEST_TIMEOUT }, async () => {
    const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: 'mpu/small' }));
    const p1 = await s3.send(new UploadPartCommand({ Bucket: BUCKET, Key: 'mpu/small', UploadId, PartNumber: 1, Body: 'small' }));
    const p2 = await s3.send(new UploadPartCommand({ Bucket: BUCKET, Key: 'mpu/small', UploadId, PartNumber: 2, Body: 'tail' }));
    assert.deepEqual(
      await failure(s3.send(new UploadPartCommand({ Bucket: BUCKET, Key: 'mpu/small', UploadId, PartNumber: 10001, Body: 'x' }))),
      { name: 'InvalidArgument', status: 400 },
    );
    assert.deepEqual(
      await failure(
        s3.send(
          new CompleteMultipartUploadCommand({
            Bucket: BUCKET,
            Key: 'mpu/small',
            UploadId,
            MultipartUpload: { Parts: [{ PartNumber: 1, ETag: p1.ETag }, { PartNumber: 2, ETag: p2.ETag }] },
          }),
        ),
      ),
      { name: 'EntityTooSmall', status: 400 },
    );
    // One small part is a valid object (the last part may be small).
    await s3.send(
      new CompleteMultipartUploadCommand({
        Bucket: BUCKET,
        Key: 'mpu/small',
        UploadId,
        MultipartUpload: { Parts: [{ PartNumber: 1, ETag: p1.ETag }] },
      }),
    );
    const head = await s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: 'mpu/small' }));
    assert.equal(head.ContentLength, 5);
    assert.equal(head.ContentType, 'application/xml', 'quirk: MPU without ContentType gets the manifest type');
    assert.deepEqual(
      await failure(
        s3.send(new UploadPartCommand({ Bucket: BUCKET, Key: 'mpu/small', UploadId: 'no-such-upload', PartNumber: 1, Body: 'x' })),
      ),
      { name: 'NoSuchUpload', status: 404 },
    );
  });

  it('lists and aborts multipart uploads', { timeout: TEST_TIMEOUT }, async () => {
    const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: 'mpu/aborted' }));
    assert.ok(UploadId);
    await s3.send(new UploadPartCommand({ Bucket: BUCKET, Key: 'mpu/aborted', UploadId, PartNumber: 1, Body: 'x' }));
    const listed = await s3.send(new ListMultipartUploadsCommand({ Bucket: BUCKET, Prefix: 'mpu/' }));
    assert.deepEqual(listed.Uploads?.map((u) => [u.Key, u.UploadId]), [['mpu/aborted', UploadId]]);

    await s3.send(new AbortMultipartUploadCommand({ Bucket: BUCKET, Key: 'mpu/aborted', UploadId }));
    const after = await s3.send(new ListMultipartUploadsCommand({ Bucket: BUCKET, Prefix: 'mpu/' }));
    assert.equal(after.Uploads, undefined);
    assert.equal(await exists('mpu/aborted'), false);
    assert.deepEqual(
      await failure(s3.send(new UploadPartCommand({ Bucket: BUCKET, Key: 'mpu/aborted', UploadId, PartNumber: 2, Body: 'x' }))),
      { name: 'NoSuchUpload', status: 404 },
    );
  });

  it('CopyObject with MetadataDirective REPLACE', { timeout: TEST_TIMEOUT }, async () => {
    await put('copy/src', 'copy me', { mtime: '1', owner: 'a' });
    const res = await s3.send(
      new CopyObjectCommand({
        Bucket: BUCKET,
        Key: 'copy/dst',
        CopySource: `${BUCKET}/copy/src`,
        MetadataDirective: 'REPLACE',
        Metadata: { mtime: '2' },
        ContentType: 'text/plain',
      }),
    );
    assert.equal(res.CopyObjectResult?.ETag, `"${md5('copy me')}"`);
    const head = await s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: 'copy/dst' }));
    assert.deepEqual(head.Metadata, { mtime: '2' });
    assert.equal(head.ContentType, 'text/plain');
    assert.equal((await getBytes('copy/dst')).body.toString(), 'copy me');

    // In place: the only way to change metadata. Without REPLACE it is refused, as on AWS.
    await s3.send(
      new CopyObjectCommand({
        Bucket: BUCKET,
        Key: 'copy/src',
        CopySource: `${BUCKET}/copy/src`,
        MetadataDirective: 'REPLACE',
        Metadata: { mtime: '3' },
      }),
    );
    assert.deepEqual((await s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: 'copy/src' }))).Metadata, { mtime: '3' });
    assert.deepEqual(
      await failure(s3.send(new CopyObjectCommand({ Bucket: BUCKET, Key: 'copy/src', CopySource: `${BUCKET}/copy/src` }))),
      { name: 'InvalidRequest', status: 400 },
    );
    assert.deepEqual(
      await failure(s3.send(new CopyObjectCommand({ Bucket: BUCKET, Key: 'copy/x', CopySource: `${BUCKET}/copy/none` }))),
      { name: 'NoSuchKey', status: 404 },
    );
  });

  it('copy of a multipart object survives deleting the source (rename)', { timeout: TEST_TIMEOUT }, async () => {
    const parts = [randomBytes(5 * MiB), Buffer.from('end')];
    const etag = await multipartUpload('mv/src', parts, 'text/plain');
    const copied = await s3.send(new CopyObjectCommand({ Bucket: BUCKET, Key: 'mv/dst', CopySource: `${BUCKET}/mv/src` }));
    assert.equal(copied.CopyObjectResult?.ETag, etag, 'quirk: copy keeps the multipart ETag');
    await s3.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: 'mv/src' }));
    assert.equal(await exists('mv/src'), false);
    assert.equal(md5((await getBytes('mv/dst')).body), md5(Buffer.concat(parts)));
  });

  it('UploadPartCopy with CopySourceRange', { timeout: TEST_TIMEOUT }, async () => {
    const source = randomBytes(6 * MiB);
    await put('upc/src', source);
    const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: 'upc/dst' }));
    const ranges: Array<[number, number]> = [[MiB, 6 * MiB - 1], [0, 99]];
    const parts = [];
    for (const [i, [from, to]] of ranges.entries()) {
      const res = await s3.send(
        new UploadPartCopyCommand({
          Bucket: BUCKET,
          Key: 'upc/dst',
          UploadId,
          PartNumber: i + 1,
          CopySource: `${BUCKET}/upc/src`,
          CopySourceRange: `bytes=${from}-${to}`,
        }),
      );
      assert.equal(res.CopyPartResult?.ETag, `"${md5(source.subarray(from, to + 1))}"`);
      parts.push({ PartNumber: i + 1, ETag: res.CopyPartResult?.ETag });
    }
    // A part appended after copied ones: how an append-style write would work.
    const extra = await s3.send(new UploadPartCommand({ Bucket: BUCKET, Key: 'upc/dst', UploadId, PartNumber: 3, Body: 'appended' }));
    parts.push({ PartNumber: 3, ETag: extra.ETag });
    assert.deepEqual(
      await failure(
        s3.send(
          new CompleteMultipartUploadCommand({ Bucket: BUCKET, Key: 'upc/dst', UploadId, MultipartUpload: { Parts: parts } }),
        ),
      ),
      { name: 'EntityTooSmall', status: 400 },
      'the 100-byte middle part is too small',
    );
    await s3.send(
      new CompleteMultipartUploadCommand({
        Bucket: BUCKET,
        Key: 'upc/dst',
        UploadId,
        MultipartUpload: { Parts: [parts[0]!, { PartNumber: 3, ETag: extra.ETag }] },
      }),
    );
    const expected = Buffer.concat([source.subarray(MiB), Buffer.from('appended')]);
    const got = (await getBytes('upc/dst')).body;
    assert.equal(got.length, expected.length);
    assert.ok(got.equals(expected));
  });

  it('DeleteObject removes a key; deleting a missing key succeeds', { timeout: TEST_TIMEOUT }, async () => {
    await put('del/one', 'x');
    assert.equal(await exists('del/one'), true);
    const res = await s3.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: 'del/one' }));
    assert.equal(res.$metadata.httpStatusCode, 204);
    assert.equal(await exists('del/one'), false);
    assert.deepEqual((await listAll('del/', 1000)).keys, []);
    await s3.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: 'del/never-existed' }));
  });

  it('DeleteObjects needs Content-MD5', { timeout: TEST_TIMEOUT }, async () => {
    await put('bulk/1', 'x');
    await put('bulk/2', 'x');
    for (const mode of ['WHEN_REQUIRED', 'WHEN_SUPPORTED'] as const) {
      const plain = client(mode);
      try {
        assert.deepEqual(
          await failure(plain.send(new DeleteObjectsCommand({ Bucket: BUCKET, Delete: { Objects: [{ Key: 'bulk/1' }] } }))),
          { name: 'InvalidRequest', status: 400 },
        );
      } finally {
        plain.destroy();
      }
    }
    assert.equal(await exists('bulk/1'), true);

    const withMd5 = client('WHEN_REQUIRED');
    addContentMd5ForDeleteObjects(withMd5);
    try {
      const res = await withMd5.send(
        new DeleteObjectsCommand({ Bucket: BUCKET, Delete: { Objects: [{ Key: 'bulk/1' }, { Key: 'bulk/missing' }] } }),
      );
      assert.deepEqual(res.Deleted?.map((d) => d.Key).sort(), ['bulk/1', 'bulk/missing']);
      assert.equal(res.Errors, undefined);
      const quiet = await withMd5.send(
        new DeleteObjectsCommand({ Bucket: BUCKET, Delete: { Quiet: true, Objects: [{ Key: 'bulk/2' }] } }),
      );
      assert.equal(quiet.Deleted, undefined);
    } finally {
      withMd5.destroy();
    }
    assert.equal(await exists('bulk/1'), false);
    assert.equal(await exists('bulk/2'), false);
  });

  it("checksums 'WHEN_SUPPORTED' (SDK default): Buffer bodies work, streams do not", { timeout: TEST_TIMEOUT }, async () => {
    const dflt = client('WHEN_SUPPORTED');
    try {
      const put1 = await dflt.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'ck/buffer', Body: Buffer.from('buffer body') }));
      assert.equal(put1.ETag, `"${md5('buffer body')}"`);
      assert.equal((await getBytes('ck/buffer')).body.toString(), 'buffer body');

      const { UploadId } = await dflt.send(new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: 'ck/mpu' }));
      const part = Buffer.alloc(5 * MiB, 3);
      const p1 = await dflt.send(new UploadPartCommand({ Bucket: BUCKET, Key: 'ck/mpu', UploadId, PartNumber: 1, Body: part }));
      const p2 = await dflt.send(
        new UploadPartCommand({ Bucket: BUCKET, Key: 'ck/mpu', UploadId, PartNumber: 2, Body: Buffer.from('tail') }),
      );
      assert.equal(p1.ETag, `"${md5(part)}"`);
      await dflt.send(
        new CompleteMultipartUploadCommand({
          Bucket: BUCKET,
          Key: 'ck/mpu',
          UploadId,
          MultipartUpload: { Parts: [{ PartNumber: 1, ETag: p1.ETag }, { PartNumber: 2, ETag: p2.ETag }] },
        }),
      );
      const got = await dflt.send(new GetObjectCommand({ Bucket: BUCKET, Key: 'ck/mpu' }));
      assert.equal((await got.Body?.transformToByteArray())?.length, 5 * MiB + 4);

      // Stream bodies become aws-chunked uploads with a trailing checksum: not implemented.
      assert.deepEqual(
        await failure(
          dflt.send(
            new PutObjectCommand({ Bucket: BUCKET, Key: 'ck/stream', Body: Readable.from([Buffer.from('abc')]), ContentLength: 3 }),
          ),
        ),
        { name: 'NotImplemented', status: 501 },
      );
    } finally {
      dflt.destroy();
    }
    // With 'WHEN_REQUIRED' the same stream upload works.
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'ck/stream', Body: Readable.from([Buffer.from('abc')]), ContentLength: 3 }));
    assert.equal((await getBytes('ck/stream')).body.toString(), 'abc');
    // The CRC32 header is not checked.
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'ck/wrong', Body: 'hello', ChecksumCRC32: 'AAAAAA==' }));
  });
});
