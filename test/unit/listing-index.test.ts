/**
 * The listing index's decisions (src/storage/s3/listing-index.ts, docs/adr/0020): which listed
 * versions it answers for, with what mtime, and which it leaves to a HEAD.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  coveredAtFrom,
  impliedMtime,
  indexKey,
  ListingIndex,
  ListingIndexBuilder,
  LISTING_INDEX_MIN_HEADS,
  shouldReadIndex,
  shouldWriteIndex,
} from '../../src/storage/s3/listing-index.ts';
import { isReservedKey } from '../../src/storage/s3/reserved-keys.ts';

const PREFIX = 'users/a/dir/';
const LISTED_AT = new Date(Date.UTC(2026, 0, 1, 12, 0, 0));
const COVERED = coveredAtFrom(LISTED_AT);
const OLD = Date.UTC(2025, 5, 1, 8, 30, 15, 0);

/** An index holding what one listing learned. */
function roundTrip(add: (b: ListingIndexBuilder) => void, prefix = PREFIX): ListingIndex {
  const builder = new ListingIndexBuilder(COVERED);
  add(builder);
  const index = ListingIndex.parse(builder.serialize(prefix), PREFIX);
  assert.ok(index, 'parses');
  return index;
}

test('coveredAt is a second before the first page was answered, by S3\'s clock', () => {
  assert.equal(COVERED, LISTED_AT.getTime() - 1000);
});

test('a version without a stored mtime is answered with its LastModified to the second, as HEAD reports it', () => {
  const v = { name: 'plain.txt', etag: '"e1"', lastModifiedMs: OLD + 700 };
  const index = roundTrip((b) => b.add(v, impliedMtime(v.lastModifiedMs)));
  assert.equal(impliedMtime(OLD + 700), OLD);
  assert.equal(index.mtime(v), OLD);
  // Another version of the same name, or the same version under another name: HEAD.
  assert.equal(index.mtime({ ...v, etag: '"e2"' }), undefined, 'overwritten');
  assert.equal(index.mtime({ ...v, lastModifiedMs: OLD + 5000 }), undefined, 'copied (metadata changed)');
  assert.equal(index.mtime({ ...v, name: 'other.txt' }), undefined, 'not listed when the index was written');
});

test('a version with a stored mtime is answered with it, only while ETag and LastModified match', () => {
  const v = { name: 'synced.txt', etag: '"e1"', lastModifiedMs: OLD };
  const index = roundTrip((b) => b.add(v, 1_600_000_000_000));
  assert.equal(index.mtime(v), 1_600_000_000_000);
  assert.equal(index.mtime({ ...v, etag: '"e2"' }), undefined);
  assert.equal(index.mtime({ ...v, lastModifiedMs: OLD + 1000 }), undefined);
});

test('a name the index does not hold is HEADed, even when older than coveredAt (an upload in flight while it was written)', () => {
  // S3 dates a multipart object by the upload's start: it can complete, with a stored mtime, after
  // a listing that did not see it, and still carry a LastModified before that listing.
  const index = roundTrip((b) => b.add({ name: 'a', etag: '"e"', lastModifiedMs: OLD }, OLD));
  assert.equal(index.mtime({ name: 'late-multipart.bin', etag: '"m-3"', lastModifiedMs: OLD - 60_000 }), undefined);
});

test('versions newer than coveredAt are neither recorded nor answered', () => {
  const recent = { name: 'recent.txt', etag: '"e"', lastModifiedMs: COVERED + 1 };
  const builder = new ListingIndexBuilder(COVERED);
  builder.add(recent, impliedMtime(recent.lastModifiedMs));
  assert.equal(builder.size, 0);
  const index = ListingIndex.parse(builder.serialize(PREFIX), PREFIX)!;
  assert.equal(index.mtime(recent), undefined);
  // Exactly at coveredAt counts as covered.
  const edge = { ...recent, lastModifiedMs: COVERED };
  assert.equal(roundTrip((b) => b.add(edge, 5)).mtime(edge), 5);
});

test('a store whose HEAD rounds LastModified another way gets entries, not wrong times', () => {
  const v = { name: 'rounded-up.txt', etag: '"e"', lastModifiedMs: OLD + 300 };
  const index = roundTrip((b) => b.add(v, OLD + 1000));
  assert.equal(index.mtime(v), OLD + 1000);
});

test('many plain versions are found by their fingerprints; the stored form stays small', () => {
  const versions = Array.from({ length: 5000 }, (_, i) => ({ name: `f-${i}.txt`, etag: `"${i.toString(16)}"`, lastModifiedMs: OLD + i * 1000 }));
  const builder = new ListingIndexBuilder(COVERED);
  for (const v of versions) builder.add(v, impliedMtime(v.lastModifiedMs));
  const text = builder.serialize(PREFIX);
  assert.ok(text.length < 60_000, `${text.length} bytes for 5000 files`);
  const index = ListingIndex.parse(text, PREFIX)!;
  assert.equal(index.size, 5000);
  for (const v of versions) assert.equal(index.mtime(v), impliedMtime(v.lastModifiedMs));
  assert.equal(index.mtime({ name: 'f-1.txt', etag: '"2"', lastModifiedMs: OLD + 1000 }), undefined);
});

test('a listing of more files than an index holds writes none, and stops collecting', () => {
  const builder = new ListingIndexBuilder(COVERED, 3);
  for (let i = 0; i < 5; i++) builder.add({ name: `f${i}`, etag: '"e"', lastModifiedMs: OLD }, OLD);
  assert.equal(builder.overflowed, true);
  assert.equal(builder.size, 0);
  assert.equal(shouldWriteIndex({ complete: true, heads: 100, builder }), false);
});

test('an index is written after a complete listing that HEADed enough files', () => {
  const builder = new ListingIndexBuilder(COVERED);
  builder.add({ name: 'f', etag: '"e"', lastModifiedMs: OLD }, OLD);
  assert.equal(shouldWriteIndex({ complete: true, heads: LISTING_INDEX_MIN_HEADS, builder }), true);
  assert.equal(shouldWriteIndex({ complete: true, heads: LISTING_INDEX_MIN_HEADS - 1, builder }), false, 'a small directory never pays a PUT');
  assert.equal(shouldWriteIndex({ complete: false, heads: 1000, builder }), false, 'a partial listing would drop what the old index held');
  assert.equal(shouldWriteIndex({ complete: true, heads: 1000, builder: undefined }), false, 'no Date header: no coveredAt');
  assert.equal(shouldWriteIndex({ complete: true, heads: 1000, builder: new ListingIndexBuilder(COVERED) }), false, 'nothing learned');
});

test('an index is read once the memory cache leaves as many files unanswered as would make one worth writing', () => {
  assert.equal(shouldReadIndex(0), false, 'a directory held in memory costs no request');
  assert.equal(shouldReadIndex(LISTING_INDEX_MIN_HEADS - 1), false, 'fewer HEADs than one parallel round');
  assert.equal(shouldReadIndex(LISTING_INDEX_MIN_HEADS), true);
});

test('an index that is malformed, of another version or of another directory is not used', () => {
  const builder = new ListingIndexBuilder(COVERED);
  builder.add({ name: 'f', etag: '"e"', lastModifiedMs: OLD }, OLD);
  const text = builder.serialize(PREFIX);
  assert.equal(ListingIndex.parse(text, 'users/a/other/'), undefined);
  assert.equal(ListingIndex.parse('{not json', PREFIX), undefined);
  assert.equal(ListingIndex.parse('null', PREFIX), undefined);
  assert.equal(ListingIndex.parse(JSON.stringify({ ...JSON.parse(text), v: 2 }), PREFIX), undefined);
  assert.equal(ListingIndex.parse(JSON.stringify({ ...JSON.parse(text), plain: 'AAA' }), PREFIX), undefined);
  assert.equal(ListingIndex.parse(JSON.stringify({ ...JSON.parse(text), entries: { f: ['"e"', 'x', 1] } }), PREFIX), undefined);
});

test('indexes live under the reserved bucket-root prefix, one per directory prefix', () => {
  assert.match(indexKey(PREFIX), /^\.s3sftp\/listing-index\/[0-9a-f]{64}\.json$/);
  assert.notEqual(indexKey(PREFIX), indexKey('users/a/dir2/'));
  assert.ok(isReservedKey(indexKey('')));
  assert.ok(isReservedKey('.s3sftp'));
  assert.ok(isReservedKey('.s3sftp/'));
  assert.ok(!isReservedKey('.s3sftpx'));
  assert.ok(!isReservedKey('users/a/.s3sftp/x'), 'only at the bucket root');
});
