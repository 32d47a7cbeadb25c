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
