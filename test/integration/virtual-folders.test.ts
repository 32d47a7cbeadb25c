/**
 * Virtual folders (spec.folders) with OpenSSH's sftp and scp on the real server and Swift S3: the
 * mount points in "/", where uploads land (the folder's own bucket and prefix), per-folder
 * permissions (the inbound/outbound layout), moves between folders, refusals at mount points, and
 * that no path inside a folder leaves the folder's prefix.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import type { SwiftS3 } from '../../dev/swift.ts';
import { createBucket, makeClientKey, s3ClientFor, s3Server, scp, sftpBatch, startTestServer, type TestServer } from '../support/harness.ts';
import { connectRaw, FX, FXF, handleOf } from '../support/sftp-raw.ts';

let s3: SwiftS3;
let client: S3Client;
let srv: TestServer;
let work: string;
let homeBucket: string;
let exports: string;
let aliceKey: string;
let dropKey: string;

before(async () => {
  s3 = await s3Server();
  client = s3ClientFor(s3);
  work = await mkdtemp(join(tmpdir(), 's3sftp-folders-'));
  aliceKey = await makeClientKey(work, 'alice');
  dropKey = await makeClientKey(work, 'drop');
  homeBucket = await createBucket(s3);
  exports = await createBucket(s3);
  srv = await startTestServer({
    s3,
    bucket: homeBucket,
    users: [
      {
        username: 'alice',
        keyFile: aliceKey,
        keyPrefix: 'users/alice/',
        permissions: ['*'],
        folders: [
          { path: '/inbound', keyPrefix: 'inbound/alice/', permissions: ['*'] },
          { path: '/outbound', bucket: exports, keyPrefix: 'out/alice/', permissions: ['list', 'download'] },
        ],
      },
      {
        // The inbound/outbound layout: a write-only home, a read-only folder.
        username: 'drop',
        keyFile: dropKey,
        keyPrefix: 'users/drop/',
        permissions: ['upload'],
        folders: [{ path: '/outbound', bucket: exports, keyPrefix: 'out/drop/', permissions: ['list', 'download'] }],
      },
    ],
  });
  // What each user's outbound folder offers, and other people's data nearby.
  for (const [bucket, key, body] of [
    [exports, 'out/alice/report.csv', 'alice report'],
    [exports, 'out/drop/prices.csv', 'drop prices'],
    [exports, 'out/bob/secret.csv', 'bob secret'],
    [exports, 'out/alice-other/secret.csv', 'neighbour secret'],
    [homeBucket, 'inbound/bob/secret.csv', 'bob inbound'],
    [homeBucket, 'users/bob/secret.csv', 'bob home'],
  ] as const) {
    await client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
  }
});

after(async () => {
  await srv?.stop();
  client?.destroy();
  await s3?.stop();
  await rm(work, { recursive: true, force: true });
});

async function body(bucket: string, key: string): Promise<string> {
  const out = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  return (await out.Body?.transformToString()) ?? '';
}

async function exists(bucket: string, key: string): Promise<boolean> {
  try {
    await client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
    return true;
  } catch {
    return false;
  }
}

async function keys(bucket: string, prefix: string): Promise<string[]> {
  const out = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix }));
  return (out.Contents ?? []).map((o) => o.Key ?? '').sort();
}

describe('virtual folders with OpenSSH sftp', () => {
  test('listing / shows the mount points beside the home\'s own entries', async () => {
    await writeFile(join(work, 'home.txt'), 'home');
    const r = await sftpBatch(srv.port, 'alice', aliceKey, 'put home.txt\nls -1 /\nls -l /\nls -l /outbound\n', { cwd: work });
    assert.equal(r.code, 0, r.stderr);
    const names = r.stdout.split('\n').filter((l) => l.startsWith('/')).map((l) => l.slice(1));
    assert.ok(names.includes('inbound') && names.includes('outbound') && names.includes('home.txt'), r.stdout);
    assert.match(r.stdout, /^d.* \/?outbound$/m);
    assert.match(r.stdout, /report\.csv/);
  });

  test('an upload into /inbound lands in the folder\'s bucket under its prefix', async () => {
    const data = randomBytes(200_000);
    await writeFile(join(work, 'in.bin'), data);
    const r = await sftpBatch(srv.port, 'alice', aliceKey, 'cd /inbound\nmkdir day1\nput in.bin day1/in.bin\n', { cwd: work });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(await keys(homeBucket, 'inbound/alice/'), ['inbound/alice/day1/', 'inbound/alice/day1/in.bin']);
    assert.equal(await exists(homeBucket, 'users/alice/inbound/day1/in.bin'), false);
  });

  test('a read-only folder serves downloads and refuses uploads, deletes and new directories', async () => {
    await writeFile(join(work, 'x.csv'), 'x');
    const get = await sftpBatch(srv.port, 'alice', aliceKey, 'get /outbound/report.csv got.csv\n', { cwd: work });
    assert.equal(get.code, 0, get.stderr);
    assert.equal(await readFile(join(work, 'got.csv'), 'utf8'), 'alice report');
    for (const cmd of ['put x.csv /outbound/x.csv', 'rm /outbound/report.csv', 'mkdir /outbound/d', 'rename /outbound/report.csv /outbound/r.csv']) {
      const r = await sftpBatch(srv.port, 'alice', aliceKey, `${cmd}\n`, { cwd: work });
      assert.notEqual(r.code, 0, cmd);
      assert.match(r.stderr, /Permission denied/, cmd);
    }
    assert.deepEqual(await keys(exports, 'out/alice/'), ['out/alice/report.csv']);
  });

  test('inbound/outbound: a write-only home takes uploads and refuses reads; the read-only folder is readable', async () => {
    await writeFile(join(work, 'order.csv'), 'order 1');
    const put = await sftpBatch(srv.port, 'drop', dropKey, 'put order.csv\nget /outbound/prices.csv prices.csv\nls /outbound\n', { cwd: work });
    assert.equal(put.code, 0, put.stderr);
    assert.equal(await body(homeBucket, 'users/drop/order.csv'), 'order 1');
    assert.equal(await readFile(join(work, 'prices.csv'), 'utf8'), 'drop prices');
    const get = await sftpBatch(srv.port, 'drop', dropKey, 'get order.csv back.csv\n', { cwd: work });
    assert.notEqual(get.code, 0);
    assert.match(get.stderr, /Permission denied/);
    // Listing / shows the folders only: the home's own files stay hidden without "list".
    const ls = await sftpBatch(srv.port, 'drop', dropKey, 'ls -1 /\n', { cwd: work });
    assert.equal(ls.code, 0, ls.stderr);
    assert.deepEqual(ls.stdout.split('\n').filter((l) => l.startsWith('/')), ['/outbound']);
    const up = await sftpBatch(srv.port, 'drop', dropKey, 'put order.csv /outbound/order.csv\n', { cwd: work });
    assert.match(up.stderr, /Permission denied/);
  });

  test('rename across mounts moves a file (copy, then delete); a non-empty directory is refused clearly', async () => {
    await writeFile(join(work, 'move.txt'), 'moving');
    const r = await sftpBatch(srv.port, 'alice', aliceKey, 'put move.txt\nrename move.txt /inbound/moved.txt\n', { cwd: work });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await exists(homeBucket, 'users/alice/move.txt'), false);
    assert.equal(await body(homeBucket, 'inbound/alice/moved.txt'), 'moving');
    const back = await sftpBatch(srv.port, 'alice', aliceKey, 'rename /inbound/moved.txt /back.txt\n');
    assert.equal(back.code, 0, back.stderr);
    assert.equal(await body(homeBucket, 'users/alice/back.txt'), 'moving');

    const { sftp, end } = await connectRaw(srv.port, 'alice', aliceKey);
    try {
      await sftp.mkdir('/full');
      const h = handleOf(await sftp.open('/full/f', FXF.WRITE | FXF.CREAT | FXF.TRUNC));
      await sftp.write(h, 0, Buffer.from('f'));
      await sftp.close(h);
      const dir = await sftp.rename('/full', '/inbound/full');
      assert.equal(dir.type === 'status' && dir.code, FX.OP_UNSUPPORTED, JSON.stringify(dir));
      assert.match(dir.type === 'status' ? dir.message : '', /moving a directory between virtual folders is not supported/);
      assert.equal(await exists(homeBucket, 'users/alice/full/f'), true);
    } finally {
      end();
    }
  });

  test('a mount point cannot be removed, renamed or replaced', async () => {
    const { sftp, end } = await connectRaw(srv.port, 'alice', aliceKey);
    try {
      for (const reply of [await sftp.rmdir('/inbound'), await sftp.rename('/inbound', '/elsewhere'), await sftp.remove('/inbound')]) {
        assert.equal(reply.type === 'status' && reply.code, FX.PERMISSION_DENIED, JSON.stringify(reply));
        assert.match(reply.type === 'status' ? reply.message : '', /virtual folder/);
      }
      const open = await sftp.open('/inbound', FXF.WRITE | FXF.CREAT | FXF.TRUNC);
      assert.equal(open.type === 'status' && open.code !== FX.OK, true, JSON.stringify(open));
      assert.equal((await sftp.stat('/inbound')).type, 'attrs');
    } finally {
      end();
    }
  });

  test('hostile paths inside a folder cannot leave its prefix or reach other users\' data', async () => {
    const { sftp, end } = await connectRaw(srv.port, 'alice', aliceKey);
    try {
      for (const path of [
        '/outbound/../bob/secret.csv',
        '/outbound/../../out/bob/secret.csv',
        '/outbound/../../../../out/alice-other/secret.csv',
        '/inbound/../../inbound/bob/secret.csv',
        '/inbound/../../users/bob/secret.csv',
        '/inbound/..//..//users/bob/secret.csv',
        'inbound/./../../../bob/secret.csv',
      ]) {
        const reply = await sftp.open(path, FXF.READ);
        assert.equal(reply.type === 'status' && reply.code, FX.NO_SUCH_FILE, `${path}: ${JSON.stringify(reply)}`);
      }
      // ".." above a folder reaches the user's "/", never the bucket.
      const names = (await sftp.list('/outbound/../..')).map((e) => e.filename).sort();
      assert.ok(names.includes('inbound') && names.includes('outbound') && !names.includes('bob') && !names.includes('users'), names.join());
      const out = (await sftp.list('/outbound')).map((e) => e.filename).filter((n) => n !== '.' && n !== '..');
      assert.deepEqual(out, ['report.csv']);
    } finally {
      end();
    }
    assert.equal(await body(exports, 'out/bob/secret.csv'), 'bob secret');
  });

  test('scp reaches folders with their permissions too', async () => {
    await writeFile(join(work, 'scp.txt'), 'scp');
    const up = await scp(srv.port, aliceKey, [join(work, 'scp.txt'), `alice@127.0.0.1:/inbound/scp.txt`]);
    assert.equal(up.code, 0, up.stderr);
    assert.equal(await body(homeBucket, 'inbound/alice/scp.txt'), 'scp');
    const refused = await scp(srv.port, aliceKey, [join(work, 'scp.txt'), `alice@127.0.0.1:/outbound/scp.txt`]);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /Permission denied/);
    const legacy = await scp(srv.port, dropKey, ['-O', `drop@127.0.0.1:/outbound/prices.csv`, join(work, 'legacy.csv')]);
    assert.equal(legacy.code, 0, legacy.stderr);
    assert.equal(await readFile(join(work, 'legacy.csv'), 'utf8'), 'drop prices');
  });
});
