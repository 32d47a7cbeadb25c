/**
 * What the server remembers of S3 (held listings, directories seen, what it just stored: ADRs 0018,
 * 0019, 0022) against a change made through the server at the same time, by another session or
 * another user of the bucket. Two S3Storage share the server-wide ChangeLog, MtimeCache,
 * DirectoryHints and UploadRegistry, as src/server.ts wires them; S3 requests are held at chosen
 * points, so each interleaving happens on every run.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { ListObjectsV2Command, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { pino } from 'pino';
import type { SwiftS3 } from '../../dev/swift.ts';
import { loadConfig } from '../../src/config/load.ts';
import { ChangeLog } from '../../src/storage/s3/directory-memory.ts';
import { DirectoryHints } from '../../src/storage/s3/directory-hints.ts';
import { MtimeCache } from '../../src/storage/s3/mtime-cache.ts';
import { S3Storage } from '../../src/storage/s3/s3-storage.ts';
import { UploadRegistry } from '../../src/storage/s3/upload-registry.ts';
import { createBucket, s3ClientFor, s3Env, s3Server } from '../support/harness.ts';

let s3: SwiftS3;
let bucket: string;
let direct: S3Client;

before(async () => {
  s3 = await s3Server();
  bucket = await createBucket(s3);
  direct = s3ClientFor(s3);
});
after(async () => {
  direct?.destroy();
  await s3?.stop();
});

type Hook = (name: string, input: Record<string, unknown>) => Promise<void> | void;
interface Gated {
  client: S3Client;
  /** Runs before a request is sent. */
  before?: Hook;
  /** Runs after S3 answered, before the answer is handed back. */
  after?: Hook;
}

function gatedClient(): Gated {
  const client = s3ClientFor(s3);
  const g: Gated = { client };
  const send = client.send.bind(client) as (c: unknown, o?: unknown) => Promise<unknown>;
  (client as unknown as { send: unknown }).send = async (command: { constructor: { name: string }; input: Record<string, unknown> }, options?: unknown) => {
    await g.before?.(command.constructor.name, command.input);
    const out = await send(command, options);
    await g.after?.(command.constructor.name, command.input);
    return out;
  };
  return g;
}

/** Two sessions of one server: shared change log, mtime cache, hints and upload registry. */
function twoSessions() {
  const config = loadConfig({ env: s3Env(s3, bucket) });
  const shared = { changeLog: new ChangeLog(), mtimeCache: new MtimeCache(), directoryHints: new DirectoryHints(), uploads: new UploadRegistry() };
  const make = (g: Gated) =>
    new S3Storage({ client: g.client, bucket, keyPrefix: '', config: config.s3, renameMode: 1, renameMaxObjects: 1000, log: pino({ level: 'silent' }), ...shared });
  const a = gatedClient();
  const b = gatedClient();
  return { a, b, A: make(a), B: make(b) };
}

function latch() {
  let open!: () => void;
  const opened = new Promise<void>((r) => (open = r));
  return { open, opened };
}

const put = (key: string, body = '') => direct.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
const keys = async (prefix: string) => ((await direct.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix }))).Contents ?? []).map((o) => o.Key);
const outcome = (p: Promise<unknown>) => p.then((v) => `succeeded ${JSON.stringify(v)}`, (e: Error) => `${e.constructor.name}: ${e.message}`);

async function drain(gen: AsyncGenerator<unknown[]>): Promise<void> {
  for await (const _ of gen) void _;
}

test('a STAT that another session\'s RMDIR overtook does not make the removed directory "seen"', async () => {
  const { a, A, B } = twoSessions();
  await put('s1/');
  const held = latch();
  const answered = latch();
  a.after = async (name, input) => {
    if (name === 'ListObjectsV2Command' && input.Prefix === 's1/') {
      answered.open();
      await held.opened;
    }
  };
  const stat = A.stat('/s1');
  await answered.opened; // S3 answered A's listing: s1 exists.
  await B.rmdir('/s1'); // Through this server, by another session: in the change log.
  held.open();
  assert.equal((await stat).isDirectory, true);
  a.after = undefined;
  assert.deepEqual(await keys('s1'), [], 'S3: s1 is gone');
  assert.equal(await outcome(A.stat('/s1')), 'NotFoundError: /s1: no such file or directory');
});

test('a listing that another session\'s RMDIR overtook does not let an upload skip the parent check and recreate the directory', async () => {
  const { a, A, B } = twoSessions();
  await put('s2/');
  const held = latch();
  const answered = latch();
  a.after = async (name, input) => {
    if (name === 'ListObjectsV2Command' && input.Prefix === 's2/') {
      answered.open();
      await held.opened;
    }
  };
  const listing = drain(A.list('/s2'));
  await answered.opened;
  await B.rmdir('/s2');
  held.open();
  await listing;
  a.after = undefined;
  const opened = await outcome(A.openWrite('/s2/x', { requireParent: true, createOrReplace: true }).then(async (w) => { await w.write(0, Buffer.from('x')); await w.commit(); return 'written'; }));
  assert.equal(opened, 'NotFoundError: /s2: no such file or directory', `S3 now holds ${JSON.stringify(await keys('s2'))}`);
});

test('a listing requested while another session renames a file (noted, not yet copied) does not answer for the old name afterwards', async () => {
  const { a, b, A, B } = twoSessions();
  await put('s3/f', 'content of f');
  await put('s3/g', 'content of g');
  const held = latch();
  const copying = latch();
  b.before = async (name) => {
    if (name === 'CopyObjectCommand') {
      copying.open();
      await held.opened;
    }
  };
  const rename = B.rename('/s3/f', '/s3/h');
  await copying.opened; // B noted s3/f and s3/h in the change log and is about to copy.
  await drain(A.list('/s3')); // A lists: f and g (HEADs give the STAT mtimes).
  held.open();
  await rename;
  b.before = undefined;
  assert.deepEqual(await keys('s3/'), ['s3/g', 's3/h'], 'S3: f was renamed to h');
  assert.equal(await outcome(A.stat('/s3/f')), 'NotFoundError: /s3/f: no such file or directory');
});

test('a listing requested while another session makes a directory (noted, marker not yet written) does not let a file be written over it', async () => {
  const { a, b, A, B } = twoSessions();
  await put('s4/');
  await put('s4/other', 'x');
  const held = latch();
  const marking = latch();
  b.before = async (name, input) => {
    if (name === 'PutObjectCommand' && input.Key === 's4/n/') {
      marking.open();
      await held.opened;
    }
  };
  const mkdir = B.mkdir('/s4/n');
  await marking.opened;
  await drain(A.list('/s4'));
  held.open();
  await mkdir;
  b.before = undefined;
  const opened = await outcome(A.openWrite('/s4/n', { requireParent: true, createOrReplace: true }).then(async (w) => { await w.write(0, Buffer.from('x')); await w.commit(); return 'written'; }));
  assert.equal(opened, 'WrongTypeError: /s4/n: is a directory', `S3 now holds ${JSON.stringify(await keys('s4/'))}`);
});

test('a file this user just stored with a time is not answered from memory once another user of the bucket (another role) removed it', async () => {
  const config = loadConfig({ env: s3Env(s3, bucket) });
  const shared = { changeLog: new ChangeLog(), mtimeCache: new MtimeCache(), directoryHints: new DirectoryHints(), uploads: new UploadRegistry() };
  const log = pino({ level: 'silent' });
  // As src/server.ts: storeScope is endpoint|region|roleArn of the user; both reach the same bucket.
  const A = new S3Storage({ client: s3ClientFor(s3), bucket, keyPrefix: '', storeScope: '||arn:aws:iam::1:role/a', config: config.s3, renameMode: 0, renameMaxObjects: 1, log, ...shared });
  const B = new S3Storage({ client: s3ClientFor(s3), bucket, keyPrefix: 'team/', storeScope: '||arn:aws:iam::1:role/b', config: config.s3, renameMode: 0, renameMaxObjects: 1, log, ...shared });
  await put('team/');
  const w = await A.openWrite('/team/f', { requireParent: true, createOrReplace: true });
  await w.write(0, Buffer.from('hello'));
  await w.commit();
  await A.setMtime('/team/f', new Date(1_000_000_000_000));
  await B.remove('/f');
  assert.deepEqual(await keys('team/f'), [], 'S3: team/f is gone');
  assert.equal(await outcome(A.stat('/team/f')), 'NotFoundError: /team/f: no such file or directory');
});

test('files this session just stored are not answered under a directory name that was renamed away', async () => {
  const { A } = twoSessions();
  await put('r1/');
  const w = await A.openWrite('/r1/f', { requireParent: true, createOrReplace: true });
  await w.write(0, Buffer.from('x'.repeat(1234)));
  await w.commit();
  await A.setMtime('/r1/f', new Date(1_000_000_000_000));
  await A.rename('/r1', '/r2');
  assert.deepEqual(await keys('r1'), [], 'S3: nothing left under r1');
  assert.equal(await outcome(A.stat('/r1/f')), 'NotFoundError: /r1/f: no such file or directory');
  assert.equal(await outcome(A.checksum('/r1/f', 'md5')), 'NotFoundError: /r1/f: no such file or directory');
  assert.equal((await A.stat('/r2/f')).mtime.getTime(), 1_000_000_000_000, 'the moved file kept its time');
});
