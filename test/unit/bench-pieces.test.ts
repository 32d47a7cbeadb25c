/** The pure parts of the benchmark: S3 request classification at the counting proxy, medians, ratios, tables. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { classifyS3Request, countByKind, formatCounts, type CountedRequest } from '../support/s3-latency-proxy.ts';
import { median, percentile, fmt, ratio, markdownTable, mbps } from '../../bench/lib/stats.ts';

test('S3 requests are classified by method, path and query, as the SDK and rclone send them', () => {
  const cases: [string, string, Record<string, string>, string][] = [
    ['HEAD', '/bucket', {}, 'HeadBucket'],
    ['HEAD', '/bucket/users/a/file.txt', {}, 'HeadObject'],
    ['GET', '/bucket/users/a/file.txt?x-id=GetObject', {}, 'GetObject'],
    ['GET', '/bucket?list-type=2&prefix=users%2Fa%2F&delimiter=%2F', {}, 'ListObjectsV2'],
    ['GET', '/bucket/?list-type=2&max-keys=1000', {}, 'ListObjectsV2'],
    ['GET', '/bucket?prefix=a%2F&delimiter=%2F', {}, 'ListObjects'],
    ['GET', '/bucket?uploads&prefix=a', {}, 'ListMultipartUploads'],
    ['GET', '/bucket/big.bin?uploadId=xyz', {}, 'ListParts'],
    ['GET', '/bucket?versioning', {}, 'GetBucketConfig'],
    ['PUT', '/bucket/a/file.txt?x-id=PutObject', {}, 'PutObject'],
    ['PUT', '/bucket/a/dir/', {}, 'PutObject'],
    ['PUT', '/bucket/a/new.txt?x-id=CopyObject', { 'x-amz-copy-source': '/bucket/a/old.txt' }, 'CopyObject'],
    ['PUT', '/bucket/big.bin?partNumber=3&uploadId=xyz&x-id=UploadPart', {}, 'UploadPart'],
    ['PUT', '/bucket/big.bin?partNumber=3&uploadId=xyz', { 'x-amz-copy-source': '/bucket/old.bin' }, 'UploadPartCopy'],
    ['PUT', '/bucket', {}, 'CreateBucket'],
    ['POST', '/bucket/big.bin?uploads&x-id=CreateMultipartUpload', {}, 'CreateMultipartUpload'],
    ['POST', '/bucket/big.bin?uploadId=xyz', {}, 'CompleteMultipartUpload'],
    ['POST', '/bucket?delete', {}, 'DeleteObjects'],
    ['DELETE', '/bucket/a/file.txt?x-id=DeleteObject', {}, 'DeleteObject'],
    ['DELETE', '/bucket/big.bin?uploadId=xyz', {}, 'AbortMultipartUpload'],
    ['DELETE', '/bucket', {}, 'DeleteBucket'],
    ['OPTIONS', '/bucket/a', {}, 'Other'],
  ];
  for (const [method, target, headers, kind] of cases) assert.equal(classifyS3Request(method, target, headers), kind, `${method} ${target}`);
});

test('request counts are grouped by kind and printed in a stable order', () => {
  const reqs = ['HeadObject', 'PutObject', 'HeadObject'].map((kind) => ({ kind, method: '', path: '', status: 200 }) as CountedRequest);
  assert.deepEqual(countByKind(reqs), { HeadObject: 2, PutObject: 1 });
  assert.equal(formatCounts(countByKind(reqs)), 'HeadObject 2, PutObject 1');
  assert.equal(formatCounts({}), 'none');
});

test('median and percentile leave out failed rounds (NaN) and handle even counts', () => {
  assert.equal(median([3, 1, 2]), 2);
  assert.equal(median([4, 1, 3, 2]), 2.5);
  assert.equal(median([5, NaN, 1, 3]), 3);
  assert.ok(Number.isNaN(median([])));
  assert.equal(percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 50), 5);
  assert.equal(percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 99), 10);
});

test('ratios and numbers read the same in every table; unknowns are a dash', () => {
  assert.equal(ratio(54, 46), '1.17×');
  assert.equal(ratio(1, 0), '–');
  assert.equal(ratio(NaN, 2), '–');
  assert.equal(ratio(undefined, 2), '–');
  assert.equal(fmt(12.345), '12.3');
  assert.equal(fmt(12.345, 2), '12.35');
  assert.equal(fmt(123456.7), '123457');
  assert.equal(fmt(NaN), '–');
  assert.equal(mbps(100e6, 2000), 50);
});

test('a markdown table has a header rule, escapes pipes and pads short rows', () => {
  const t = markdownTable(['system', 'put MB/s'], [['a|b', '1.0'], ['c']]);
  assert.equal(t, ['| system | put MB/s |', '| --- | --- |', '| a\\|b | 1.0 |', '| c |  |'].join('\n'));
});
