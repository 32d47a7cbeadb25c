import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DirectoryHints } from '../../src/storage/s3/directory-hints.ts';

test('a hint is held per store and bucket until forgotten', () => {
  const hints = new DirectoryHints();
  hints.note('store-a\u0000bucket', 'home/inbox');
  assert.equal(hints.has('store-a\u0000bucket', 'home/inbox'), true);
  assert.equal(hints.has('store-b\u0000bucket', 'home/inbox'), false, 'another store or role');
  assert.equal(hints.has('store-a\u0000bucket', 'home/inbox/sub'), false);
  hints.forget('store-a\u0000bucket', 'home/inbox');
  assert.equal(hints.has('store-a\u0000bucket', 'home/inbox'), false);
});

test('hints are bounded: the least recently noted go first', () => {
  const hints = new DirectoryHints(3);
  for (const key of ['a', 'b', 'c']) hints.note('s', key);
  hints.note('s', 'a');
  hints.note('s', 'd');
  assert.deepEqual(['a', 'b', 'c', 'd'].filter((k) => hints.has('s', k)), ['a', 'c', 'd']);
});
