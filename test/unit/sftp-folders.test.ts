/**
 * Virtual folders through the real SFTP session, SCP and checksum commands over MemoryStorage:
 * each request is checked against the permissions of the place its path is in (the home's, or a
 * folder's), and a mount point answers as a directory that cannot be removed or renamed.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startInProcessServer, type InProcessServer } from '../support/in-process-server.ts';
import { FLAGS, SftpClient, statusOf } from '../support/sftp-client.ts';
import { readFile, writeFile } from '../support/storage-conformance.ts';
import { MemoryStorage } from '../../src/storage/memory/memory-storage.ts';
import { PERMISSIONS } from '../../src/users/user.ts';

const PERMISSION_DENIED = 3;
const OP_UNSUPPORTED = 8;

let srv: InProcessServer;
let drop: SftpClient;

before(async () => {
  srv = await startInProcessServer({
    users: [
      {
        username: 'drop',
        permissions: ['upload'],
        folders: [
          { path: '/outbound', keyPrefix: 'out/drop/', permissions: ['list', 'download'] },
          { path: '/work', keyPrefix: 'work/drop/', permissions: PERMISSIONS },
        ],
      },
    ],
  });
  await writeFile(new MemoryStorage({ bucket: srv.bucket, keyPrefix: 'out/drop/' }), '/prices.csv', Buffer.from('prices'));
  drop = new SftpClient(await srv.sftp('drop'));
});

after(async () => {
  await srv?.stop();
});

describe('virtual folders over SFTP', () => {
  test('the write-only home takes uploads and refuses downloads and listings, but / shows the folders', async () => {
    await drop.put('/order.csv', Buffer.from('order'));
    assert.deepEqual(srv.bucket.keys('drop/'), ['drop/order.csv']);
    const get = await statusOf(drop.open('/order.csv', FLAGS.READ));
    assert.equal(get.code, PERMISSION_DENIED);
    assert.match(get.message, /"download" is not granted to this user$/);
    await drop.mkdir('/sub').catch(() => undefined);
    assert.deepEqual((await drop.list('/')).map((e) => e.filename).sort(), ['outbound', 'work']);
    await drop.put('/inner.csv', Buffer.from('x'));
    assert.deepEqual((await drop.list('/')).map((e) => e.filename).sort(), ['outbound', 'work']);
  });

  test('the read-only folder lists and serves, and refuses writes naming the folder', async () => {
    assert.deepEqual((await drop.list('/outbound')).map((e) => e.filename), ['prices.csv']);
    assert.equal((await drop.get('/outbound/prices.csv')).toString(), 'prices');
    const put = await statusOf(drop.put('/outbound/x.csv', Buffer.from('x')));
    assert.equal(put.code, PERMISSION_DENIED);
    assert.match(put.message, /"upload" is not granted to this user in \/outbound$/);
    assert.equal((await statusOf(drop.remove('/outbound/prices.csv'))).code, PERMISSION_DENIED);
    assert.equal((await statusOf(drop.mkdir('/outbound/d'))).code, PERMISSION_DENIED);
  });

  test('a move between folders needs rename on both sides; a non-empty directory cannot move', async () => {
    await drop.put('/work/a.csv', Buffer.from('a'));
    // The home grants no rename: moving out of /work into it is refused, the file stays.
    assert.equal((await statusOf(drop.rename('/work/a.csv', '/a.csv'))).code, PERMISSION_DENIED);
    assert.deepEqual(srv.bucket.keys('work/drop/'), ['work/drop/a.csv']);
    await drop.mkdir('/work/d');
    await drop.put('/work/d/f', Buffer.from('f'));
    await drop.rename('/work/d/f', '/work/f');
    assert.deepEqual(srv.bucket.keys('work/drop/').sort(), ['work/drop/a.csv', 'work/drop/d/', 'work/drop/f']);
  });

  test('mount points are directories that cannot be removed or renamed', async () => {
    const st = await drop.stat('/outbound');
    assert.equal(st.isDirectory(), true);
    const rm = await statusOf(drop.rmdir('/work'));
    assert.equal(rm.code, PERMISSION_DENIED);
    assert.match(rm.message, /virtual folder/);
    assert.equal((await statusOf(drop.rename('/work', '/work2'))).code, PERMISSION_DENIED);
  });

  test('checksum commands use the folder\'s permissions', async () => {
    const channel = await srv.exec('drop', 'sha256sum /outbound/prices.csv /order.csv');
    let out = '';
    let err = '';
    channel.on('data', (d: Buffer) => (out += d));
    channel.stderr.on('data', (d: Buffer) => (err += d));
    await new Promise((resolve) => channel.on('close', resolve));
    assert.match(out, /^[0-9a-f]{64} {2}\/outbound\/prices\.csv$/m);
    assert.match(err, /order\.csv.*permission denied/i);
  });
});

describe('virtual folders: cross-mount moves through the session', () => {
  test('a file moves from /work into a folder granting rename, streamed and intact', async () => {
    srv.addUser({
      username: 'mover',
      folders: [
        { path: '/a', keyPrefix: 'mover-a/', permissions: PERMISSIONS },
        { path: '/b', keyPrefix: 'mover-b/', permissions: PERMISSIONS },
      ],
    });
    const mover = new SftpClient(await srv.sftp('mover'));
    const data = Buffer.alloc(2 * 1024 * 1024 + 3, 9);
    await mover.put('/a/big', data);
    await mover.rename('/a/big', '/b/big');
    assert.deepEqual(srv.bucket.keys('mover-a/'), []);
    assert.ok((await readFile(new MemoryStorage({ bucket: srv.bucket, keyPrefix: 'mover-b/' }), '/big')).equals(data));
    await mover.mkdir('/a/full');
    await mover.put('/a/full/f', Buffer.from('f'));
    const dir = await statusOf(mover.rename('/a/full', '/b/full'));
    assert.equal(dir.code, OP_UNSUPPORTED);
    assert.match(dir.message, /between virtual folders is not supported/);
  });
});
