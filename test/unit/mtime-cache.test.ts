import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MtimeCache } from '../../src/storage/s3/mtime-cache.ts';

const NOW = Date.UTC(2026, 0, 1);
const OLD = new Date(NOW - 60_000);

test('an entry serves only the version it was read from', () => {
  const cache = new MtimeCache({ now: () => NOW });
  cache.set('b', 'k', '"e1"', OLD, 1000);
  assert.equal(cache.get('b', 'k', '"e1"', OLD), 1000);
  assert.equal(cache.get('b', 'k', '"e2"', OLD), undefined, 'overwritten');
  assert.equal(cache.get('b', 'k', '"e1"', new Date(OLD.getTime() + 1000)), undefined, 'copied onto itself');
  assert.equal(cache.get('other', 'k', '"e1"', OLD), undefined);
  cache.forget('b', 'k');
  assert.equal(cache.get('b', 'k', '"e1"', OLD), undefined);
});

test('objects modified in the last seconds are not cached', () => {
  const cache = new MtimeCache({ now: () => NOW });
  cache.set('b', 'fresh', '"e"', new Date(NOW - 2_000), 5);
  assert.equal(cache.get('b', 'fresh', '"e"', new Date(NOW - 2_000)), undefined);
});

test('the least recently used entries go first', () => {
  const cache = new MtimeCache({ maxEntries: 2, now: () => NOW });
  cache.set('b', 'a', '"e"', OLD, 1);
  cache.set('b', 'b', '"e"', OLD, 2);
  cache.get('b', 'a', '"e"', OLD);
  cache.set('b', 'c', '"e"', OLD, 3);
  assert.equal(cache.get('b', 'b', '"e"', OLD), undefined);
  assert.equal(cache.get('b', 'a', '"e"', OLD), 1);
  assert.equal(cache.get('b', 'c', '"e"', OLD), 3);
});

/** An object this server stored at NOW with one PutObject, answered at NOW by S3's clock. */
/** The server changed nothing since a record (the storage asks its change log). */
const current = () => true;

function wroteAt(cache: MtimeCache, key: string, storedMtimeMs?: number): void {
  cache.wrote('b', key, { etag: '"e1"', size: 4, metadata: {}, storedMtimeMs, lastModifiedFromMs: NOW - 2_000, lastModifiedToMs: NOW + 2_000 }, 3);
}

test('what this server just stored answers a listing of that version without a HEAD', () => {
  let now = NOW;
  const cache = new MtimeCache({ now: () => now });
  wroteAt(cache, 'timed', 1_000_000);
  wroteAt(cache, 'plain');
  const listedAt = new Date(NOW - 400);
  assert.equal(cache.written('b', 'timed', 'e1', listedAt, current), 1_000_000, 'the stored mtime (quotes do not matter)');
  assert.equal(cache.written('b', 'plain', '"e1"', listedAt, current), Math.floor(listedAt.getTime() / 1000) * 1000, 'HEAD reports the listed second');
  assert.equal(cache.known('b', 'plain', '"e1"', listedAt, current), Math.floor(listedAt.getTime() / 1000) * 1000);
  assert.equal(cache.get('b', 'plain', '"e1"', listedAt), undefined, 'not a HEAD it read');
  assert.equal(cache.written('b', 'timed', '"e2"', listedAt, current), undefined, 'other bytes: written by someone else');
  assert.equal(cache.written('b', 'timed', '"e1"', listedAt, (seq) => seq === 99), undefined, 'changed through the server since its record (another user, another role)');
  assert.equal(cache.written('b', 'timed', '"e1"', new Date(NOW + 5_000), current), undefined, 'same bytes stored again later (a copy elsewhere)');
  assert.equal(cache.written('b', 'timed', '"e1"', new Date(NOW - 5_000), current), undefined, 'dated before the PUT was sent');
  cache.forget('b', 'timed');
  assert.equal(cache.written('b', 'timed', '"e1"', listedAt, current), undefined, 'changed here since');
  now = NOW + 60_000;
  assert.equal(cache.written('b', 'plain', '"e1"', listedAt, current), undefined, 'a minute later a HEAD decides again');
});

test('a store whose HEAD does not report the listed second gets no answers for files written without a time', () => {
  const cache = new MtimeCache({ now: () => NOW });
  wroteAt(cache, 'plain');
  wroteAt(cache, 'timed', 7_000);
  const listed = new Date(NOW - 1_400);
  // Same second: what every store seen so far does.
  cache.sawHeadOfListed(new Date(NOW - 60_400), new Date(NOW - 61_000));
  assert.notEqual(cache.written('b', 'plain', '"e1"', listed, current), undefined);
  // A store that rounds up.
  cache.sawHeadOfListed(new Date(NOW - 60_400), new Date(NOW - 60_000));
  assert.equal(cache.written('b', 'plain', '"e1"', listed, current), undefined);
  assert.equal(cache.written('b', 'timed', '"e1"', listed, current), 7_000, 'a stored mtime is what HEAD reports on any store');
});

test('records of what was written are bounded in number', () => {
  const cache = new MtimeCache({ maxEntries: 2, now: () => NOW });
  for (const key of ['a', 'b', 'c']) wroteAt(cache, key, 1);
  assert.equal(cache.written('b', 'a', '"e1"', new Date(NOW), current), undefined);
  assert.equal(cache.written('b', 'c', '"e1"', new Date(NOW), current), 1);
});

test('the metadata a download just read answers for 5 s, until the server changes the key', () => {
  let now = NOW;
  const cache = new MtimeCache({ now: () => now });
  cache.read('b', 'got', { md5: 'aa' }, 1);
  assert.deepEqual(cache.justSeenMetadata('b', 'got'), { metadata: { md5: 'aa' }, changeSeq: 1 }, 'with the change log position of the read');
  assert.equal(cache.justSeenMetadata('other', 'got'), undefined, 'another store or role');
  wroteAt(cache, 'got', 7_000);
  assert.deepEqual(cache.justSeenMetadata('b', 'got'), { metadata: {}, changeSeq: 3 }, 'what was stored since wins');
  cache.forget('b', 'got');
  assert.equal(cache.justSeenMetadata('b', 'got'), undefined);
  cache.read('b', 'later', { md5: 'bb' }, 1);
  now += 5_000;
  assert.equal(cache.justSeenMetadata('b', 'later'), undefined);
});
