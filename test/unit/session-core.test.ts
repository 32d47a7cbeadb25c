/** The helpers both front ends share (src/session/core.ts). */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { audited, reportTransfer, requirePermission, resolvePath, statOrUndefined } from '../../src/session/core.ts';
import type { SessionEvents } from '../../src/session/types.ts';
import { PermissionDeniedError } from '../../src/storage/errors.ts';
import { MemoryBucket, MemoryStorage } from '../../src/storage/memory/memory-storage.ts';
import { userFor } from '../support/in-process-server.ts';

const reader = userFor({ username: 'reader', permissions: ['list', 'download'] });

describe('session core', () => {
  test('requirePermission names the missing permission', () => {
    requirePermission(reader, 'download', '/f');
    assert.throws(() => requirePermission(reader, 'upload', '/f'), (err: Error) => {
      assert.ok(err instanceof PermissionDeniedError);
      assert.equal(err.message, 'permission denied: "upload" is not granted to this user');
      return true;
    });
  });

  test('requirePermission uses the permissions of the virtual folder a path is in', () => {
    const base = userFor({ username: 'dropbox', permissions: ['upload'] });
    const user = { ...base, folders: [{ path: '/outbound', s3: base.s3, permissions: new Set(['list', 'download'] as const) }] };
    requirePermission(user, 'upload', '/in.csv');
    requirePermission(user, 'download', '/outbound/report.csv');
    requirePermission(user, 'list', '/outbound');
    assert.throws(() => requirePermission(user, 'download', '/in.csv'), /"download" is not granted to this user$/);
    // "/" holds a mount point, so it can be listed (MountedStorage then shows the mount points only); elsewhere not.
    requirePermission(user, 'list', '/');
    assert.throws(() => requirePermission(user, 'list', '/sub'), PermissionDeniedError);
    assert.throws(() => requirePermission(user, 'upload', '/outbound/x'), /"upload" is not granted to this user in \/outbound$/);
    // A sibling whose name starts the same is not inside the folder.
    requirePermission(user, 'upload', '/outbound2/x');
  });

  test('resolvePath never leaves the chroot', () => {
    assert.equal(resolvePath('../../etc/passwd'), '/etc/passwd');
    assert.equal(resolvePath('x/../y', '/home'), '/home/y');
    assert.equal(resolvePath('/a//b/./'), '/a/b');
  });

  test('statOrUndefined: undefined for a missing path, other errors thrown', async () => {
    const storage = new MemoryStorage({ bucket: new MemoryBucket() });
    assert.equal(await statOrUndefined(storage, '/missing'), undefined);
    assert.equal((await statOrUndefined(storage, '/'))?.isDirectory, true);
    await assert.rejects(statOrUndefined(storage, 'relative'), /invalid path/);
  });

  test('reportTransfer and audited report once, with the duration and the outcome', async () => {
    const seen: unknown[] = [];
    const events: SessionEvents = { transferDone: (t) => seen.push(t), operation: (o) => seen.push(o) };
    reportTransfer(events, reader, () => new Date(3500), { direction: 'download', path: '/f', bytes: 10, started: new Date(1000), ok: true });
    await audited(events, reader, { op: 'mkdir', path: '/d' }, async () => {});
    await assert.rejects(
      audited(events, reader, { op: 'rename', path: '/a', target: '/b' }, async () => {
        throw new Error('refused');
      }),
      /refused/,
    );
    assert.deepEqual(seen, [
      { user: 'reader', direction: 'download', path: '/f', bytes: 10, seconds: 2.5, ok: true },
      { user: 'reader', op: 'mkdir', path: '/d', ok: true },
      { user: 'reader', op: 'rename', path: '/a', target: '/b', ok: false },
    ]);
  });
});
