import { test } from 'node:test';
import assert from 'node:assert/strict';
import { longname, toAttrs } from '../../src/sftp/attrs.ts';

const now = new Date('2026-12-01T06:31:00Z');

test('long names are laid out like OpenSSH ls_file(): recent times with hh:mm, older ones with the year', () => {
  // Column layout of OpenSSH's sftp-server for the same size and times (owner ids, not names).
  assert.equal(
    longname({ name: 'a.txt', isDirectory: false, size: 6, mtime: new Date('2026-12-01T06:31:00Z') }, now),
    '-rw-r--r--    1 0        0               6 Dec  1 06:31 a.txt',
  );
  assert.equal(
    longname({ name: 'old.txt', isDirectory: false, size: 0, mtime: new Date('2020-01-02T03:04:05Z') }, now),
    '-rw-r--r--    1 0        0               0 Jan  2  2020 old.txt',
  );
  assert.equal(
    longname({ name: 'sub', isDirectory: true, size: 0, mtime: new Date('2026-11-30T23:59:00Z') }, now),
    'drwxr-xr-x    1 0        0               0 Nov 30 23:59 sub',
  );
});

test('half a year is the cut between the two date forms, as in OpenSSH (182.5 days)', () => {
  const day = 24 * 3600 * 1000;
  const inside = new Date(now.getTime() - 182 * day);
  const outside = new Date(now.getTime() - 183 * day);
  assert.match(longname({ name: 'f', isDirectory: false, size: 1, mtime: inside }, now), / \d\d:\d\d f$/);
  assert.match(longname({ name: 'f', isDirectory: false, size: 1, mtime: outside }, now), /  2026 f$/);
  // A time later than now (clock skew between S3 and the server) shows the year, as in OpenSSH.
  assert.match(longname({ name: 'f', isDirectory: false, size: 1, mtime: new Date(now.getTime() + 1000) }, now), /  2026 f$/);
  assert.match(longname({ name: 'f', isDirectory: false, size: 1, mtime: new Date(now.getTime() + 999 - (now.getTime() % 1000)) }, now), / 06:31 f$/);
});

test('the owner in the long name is the uid and gid of the attributes', () => {
  const info = { name: 'f', isDirectory: false, size: 1, mtime: now };
  const a = toAttrs(info);
  const cols = longname(info, now).split(/ +/);
  assert.equal(cols[2], String(a.uid));
  assert.equal(cols[3], String(a.gid));
});
