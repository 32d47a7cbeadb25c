import { test } from 'node:test';
import assert from 'node:assert/strict';
import { managedPrefixes } from '../../src/storage/s3/janitor.ts';

const at = (bucket: string, keyPrefix: string) => ({ s3: { bucket, keyPrefix } });

test('the janitor lists each managed prefix once per bucket, dropping prefixes inside another', () => {
  const got = managedPrefixes([
    at('files', 'users/alice/'),
    at('files', 'users/alice/inbox/'),
    at('files', 'users/alicia/'),
    at('files', 'users/alice/'),
    at('partners', 'acme/'),
    at('partners', 'acme-two/'),
  ]);
  assert.deepEqual(Object.fromEntries(got), {
    files: ['users/alice/', 'users/alicia/'],
    partners: ['acme-two/', 'acme/'],
  });
});

test('a user rooted at the whole bucket covers every other prefix in it', () => {
  assert.deepEqual(Object.fromEntries(managedPrefixes([at('b', 'x/'), at('b', ''), at('b', 'y/z/')])), { b: [''] });
});

test('no users, nothing to clean', () => {
  assert.equal(managedPrefixes([]).size, 0);
});
