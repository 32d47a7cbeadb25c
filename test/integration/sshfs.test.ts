/**
 * sshfs (FUSE) mounted on the real server on Swift. sshfs pipelines requests
 * on the same file (OPEN then LSTAT, WRITE then FSTAT, CLOSE then STAT) and
 * opens rsync's temporary files READ|WRITE, so it is the client that shows
 * whether the server keeps per-file order and serves read-write uploads.
 * Run twice: with sshfs's and the kernel's caches off (the server's answer is
 * what the test sees) and with default options (what users run).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, mkdir, readFile, rm, writeFile, readdir, utimes, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { spawn, type ChildProcess } from 'node:child_process';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import type { SwiftS3 } from '../../dev/swift.ts';
import { createBucket, makeClientKey, run, s3ClientFor, s3Server, startTestServer, type TestServer } from '../support/harness.ts';

const NO_FUSE = existsSync('/dev/fuse') ? false : 'no /dev/fuse on this machine: FUSE mounts are impossible here';

let s3: SwiftS3;
let srv: TestServer;
let work: string;
let key: string;

before(async () => {
  if (NO_FUSE) return;
  s3 = await s3Server();
  work = await mkdtemp(join(tmpdir(), 's3sftp-sshfs-'));
  key = await makeClientKey(work, 'fuse');
  srv = await startTestServer({
    s3,
    bucket: await createBucket(s3),
    users: [{ username: 'fuse', keyFile: key, keyPrefix: 'users/fuse/' }],
  });
});

after(async () => {
  await srv?.stop();
  await s3?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

/** Objects under the user's prefix: key (relative) → size. */
async function objects(prefix: string): Promise<Map<string, number>> {
  const client = s3ClientFor(s3);
  const out = new Map<string, number>();
  try {
    const full = `users/fuse/${prefix}`;
    const r = await client.send(new ListObjectsV2Command({ Bucket: srv.bucket, Prefix: full }));
    for (const o of r.Contents ?? []) out.set(o.Key!.slice(full.length), o.Size ?? 0);
  } finally {
    client.destroy();
  }
  return out;
}

interface Mount {
  dir: string;
  child: ChildProcess;
  unmount(): Promise<void>;
}

async function mount(name: string, options: string[]): Promise<Mount> {
  const dir = join(work, name);
  await mkdir(dir);
  const sshOpts = [
    `IdentityFile=${key}`,
    'IdentitiesOnly=yes',
    'BatchMode=yes',
    'StrictHostKeyChecking=no',
    'UserKnownHostsFile=/dev/null',
    'LogLevel=ERROR',
    'reconnect',
    ...options,
  ];
  const child = spawn('sshfs', ['-f', '-p', String(srv.port), '-o', sshOpts.join(','), 'fuse@127.0.0.1:/', dir], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  for (let i = 0; i < 100; i++) {
    if ((await run('mountpoint', ['-q', dir])).code === 0) break;
    if (child.exitCode !== null) throw new Error(`sshfs exited: ${stderr}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal((await run('mountpoint', ['-q', dir])).code, 0, `not mounted: ${stderr}`);
  return {
    dir,
    child,
    async unmount() {
      const r = await run('fusermount3', ['-u', dir]);
      if (r.code !== 0) await run('fusermount3', ['-u', '-z', dir]);
      if (child.exitCode === null) child.kill();
    },
  };
}

const VARIANTS: [string, string[]][] = [
  ['caches off', ['dir_cache=no', 'entry_timeout=0', 'attr_timeout=0', 'negative_timeout=0']],
  ['default options', []],
];

for (const [variant, options] of VARIANTS) {
  const tag = variant === 'caches off' ? 'nocache' : 'default';

  describe(`sshfs (${variant})`, { skip: NO_FUSE }, () => {
    let m: Mount;
    let src: string;
    const big = randomBytes(6 * 1024 * 1024 + 17);

    before(async () => {
      m = await mount(`mnt-${tag}`, options);
      src = join(work, `src-${tag}`);
      await mkdir(join(src, 'sub'), { recursive: true });
      await writeFile(join(src, 'a.txt'), 'alpha\n');
      await writeFile(join(src, 'sub', 'b.txt'), 'bravo\n');
      await writeFile(join(src, 'big.bin'), big);
    });

    after(async () => {
      await m?.unmount();
    });

    test('cp -r of a directory into the mount stores every file whole', async () => {
      const r = await run('cp', ['-r', src, join(m.dir, tag)]);
      assert.equal(r.code, 0, r.stderr);
      // Read back through the mount first: FUSE sends the CLOSE after cp's close() returns, and
      // the server answers a later OPEN of the same path only once that upload is stored.
      assert.deepEqual(await readFile(join(m.dir, tag, 'big.bin')), big);
      assert.equal(await readFile(join(m.dir, tag, 'sub', 'b.txt'), 'utf8'), 'bravo\n');
      const stored = await objects(`${tag}/`);
      assert.equal(stored.get('a.txt'), 6);
      assert.equal(stored.get('sub/b.txt'), 6);
      assert.equal(stored.get('big.bin'), big.length);
    });

    test('overwrite a file, then read it back: the new content, never an empty file', async () => {
      const file = join(m.dir, tag, 'a.txt');
      await writeFile(file, 'overwritten, longer than before\n');
      assert.equal(await readFile(file, 'utf8'), 'overwritten, longer than before\n');
      assert.equal((await objects(`${tag}/`)).get('a.txt'), 32);
      await writeFile(file, 'short\n');
      assert.equal(await readFile(file, 'utf8'), 'short\n');
    });

    test('mv renames a file', async () => {
      const r = await run('mv', [join(m.dir, tag, 'sub', 'b.txt'), join(m.dir, tag, 'sub', 'c.txt')]);
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual((await readdir(join(m.dir, tag, 'sub'))).sort(), ['c.txt']);
      assert.equal(await readFile(join(m.dir, tag, 'sub', 'c.txt'), 'utf8'), 'bravo\n');
      const stored = await objects(`${tag}/sub/`);
      assert.deepEqual([...stored.keys()].filter((k) => k !== '').sort(), ['c.txt']);
    });

    test('rsync -a (temporary file, then rename) copies a tree with its times', async () => {
      const when = new Date('2020-06-07T08:09:10Z');
      await utimes(join(src, 'a.txt'), when, when);
      const r = await run('rsync', ['-a', `${src}/`, join(m.dir, `${tag}-rsync`)], { timeoutMs: 120_000 });
      assert.equal(r.code, 0, r.stderr);
      const stored = await objects(`${tag}-rsync/`);
      assert.equal(stored.get('a.txt'), 6);
      assert.equal(stored.get('sub/b.txt'), 6);
      assert.equal(stored.get('big.bin'), big.length);
      assert.deepEqual([...stored.keys()].filter((k) => k.includes('/.') || k.startsWith('.')), [], 'no temporary files left');
      assert.equal((await stat(join(m.dir, `${tag}-rsync`, 'a.txt'))).mtime.getTime(), when.getTime());
    });

    test('rm -r removes the tree', async () => {
      const r = await run('rm', ['-r', join(m.dir, tag), join(m.dir, `${tag}-rsync`)]);
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual([...(await objects(`${tag}/`)).keys()], []);
      assert.deepEqual([...(await objects(`${tag}-rsync/`)).keys()], []);
      // Never a synchronous call into the mount: the server answering it runs on this thread.
      await assert.rejects(stat(join(m.dir, tag)), { code: 'ENOENT' });
    });
  });
}
