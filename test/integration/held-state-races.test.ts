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
import { HeadObjectCommand, ListObjectsV2Command, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { pino } from 'pino';
import type { SwiftS3 } from '../../dev/swift.ts';
import { loadConfig } from '../../src/config/load.ts';
import { ChangeLog } from '../../src/storage/s3/directory-memory.ts';
import { DirectoryHints } from '../../src/storage/s3/directory-hints.ts';
import { MtimeCache } from '../../src/storage/s3/mtime-cache.ts';
import { ReadAheadBudget } from '../../src/storage/s3/read-ahead.ts';
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

const put = (key: string, body: string | Buffer = '') => direct.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
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

/** Two users of the bucket through different roles (different scopes of the shared mtime cache), as src/server.ts wires them. */
function twoUsers() {
  const config = loadConfig({ env: s3Env(s3, bucket) });
  const shared = { changeLog: new ChangeLog(), mtimeCache: new MtimeCache(), directoryHints: new DirectoryHints(), uploads: new UploadRegistry() };
  const log = pino({ level: 'silent' });
  const A = new S3Storage({ client: s3ClientFor(s3), bucket, keyPrefix: '', storeScope: '||arn:aws:iam::1:role/a', config: config.s3, renameMode: 0, renameMaxObjects: 1, log, ...shared });
  const B = new S3Storage({ client: s3ClientFor(s3), bucket, keyPrefix: 'team/', storeScope: '||arn:aws:iam::1:role/b', config: config.s3, renameMode: 0, renameMaxObjects: 1, log, ...shared });
  return { A, B };
}

async function listedMtimes(storage: S3Storage, path: string): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for await (const page of storage.list(path)) for (const entry of page) out.set(entry.name, entry.mtime.getTime());
  return out;
}

test("a listing after another user (another role) set the time of a file this user just uploaded reports that time, not the upload's", async () => {
  const { A, B } = twoUsers();
  await put('team/');
  await put('team/d/');
  const w = await A.openWrite('/team/d/f', { requireParent: true, createOrReplace: true });
  await w.write(0, Buffer.from('hello'));
  await w.commit();
  const mtime = 1_000_000_000_000;
  await B.setMtime('/d/f', new Date(mtime));
  const head = await direct.send(new HeadObjectCommand({ Bucket: bucket, Key: 'team/d/f' }));
  assert.equal(head.Metadata?.mtime, String(mtime / 1000), 'S3 holds the new time');
  assert.equal((await listedMtimes(A, '/team/d')).get('f'), mtime, `A's READDIR (S3 LastModified ${head.LastModified?.toISOString()})`);
  assert.equal((await A.stat('/team/d/f')).mtime.getTime(), mtime, "A's STAT after its READDIR");
});

test('a listing after another user (another role) stored the same bytes with a time reports that time', async () => {
  const { A, B } = twoUsers();
  await put('team/');
  await put('team/e/');
  const w = await A.openWrite('/team/e/f', { requireParent: true, createOrReplace: true });
  await w.write(0, Buffer.from('same bytes'));
  await w.commit();
  const mtime = 1_100_000_000_000;
  const again = await B.openWrite('/e/f', { requireParent: true, createOrReplace: true });
  await again.write(0, Buffer.from('same bytes'));
  again.setMtime(new Date(mtime));
  await again.commit();
  assert.equal((await listedMtimes(A, '/team/e')).get('f'), mtime);
});

test('files read ahead from a held listing stay within what the budget was charged, and come back whole, after they grew', async () => {
  const config = loadConfig({ env: s3Env(s3, bucket) });
  const shared = { changeLog: new ChangeLog(), mtimeCache: new MtimeCache(), directoryHints: new DirectoryHints(), uploads: new UploadRegistry() };
  const log = pino({ level: 'silent' });
  const budget = new ReadAheadBudget(16 * 1024 * 1024);
  // Body bytes of the GETs session A's client received, by key.
  const a = gatedClient();
  const received = new Map<string, number>();
  const send = a.client.send.bind(a.client) as (c: unknown, o?: unknown) => Promise<{ ContentLength?: number }>;
  (a.client as unknown as { send: unknown }).send = async (command: { constructor: { name: string }; input: { Key?: string } }, options?: unknown) => {
    const out = await send(command, options);
    if (command.constructor.name === 'GetObjectCommand') received.set(command.input.Key!, (received.get(command.input.Key!) ?? 0) + (out.ContentLength ?? 0));
    return out;
  };
  const A = new S3Storage({ client: a.client, bucket, keyPrefix: '', config: config.s3, renameMode: 0, renameMaxObjects: 1, log, readAheadBudget: budget, ...shared });
  const B = new S3Storage({ client: s3ClientFor(s3), bucket, keyPrefix: '', config: config.s3, renameMode: 0, renameMaxObjects: 1, log, readAheadBudget: budget, ...shared });
  const name = (i: number) => `f${String(i).padStart(2, '0')}`;
  const big = (i: number) => Buffer.alloc(3 * 1024 * 1024, i);
  await put('ra/');
  await Promise.all(Array.from({ length: 10 }, (_, i) => put(`ra/${name(i)}`, Buffer.alloc(4096, i))));
  await drain(A.list('/ra')); // A holds the listing: every file 4 KiB.
  // Replaced by 3 MiB files (over the 1 MiB read-ahead limit): f02-f05 through this server, f06-f09 straight in S3.
  for (let i = 2; i < 6; i++) {
    const w = await B.openWrite(`/ra/${name(i)}`, { requireParent: true, createOrReplace: true });
    await w.write(0, big(i));
    await w.commit();
  }
  for (let i = 6; i < 10; i++) await put(`ra/${name(i)}`, big(i));
  for (const i of [0, 1]) {
    const r = await A.openRead(`/ra/${name(i)}`);
    await r.read(0, 4096);
    await r.close();
  }
  await sleep(2000); // the GETs ahead arrive
  const ahead = [...received].filter(([key]) => key !== 'ra/f00' && key !== 'ra/f01');
  const fetched = ahead.reduce((sum, [, bytes]) => sum + bytes, 0);
  assert.ok(fetched <= budget.usedBytes, `fetched ahead ${fetched} bytes (${ahead.map(([k, n]) => `${k}:${n}`).join(', ')}), the budget counts ${budget.usedBytes}`);
  for (let i = 2; i < 10; i++) {
    const r = await A.openRead(`/ra/${name(i)}`);
    const parts: Buffer[] = [];
    for (let offset = 0; ; ) {
      const chunk = await r.read(offset, 256 * 1024);
      if (chunk.length === 0) break;
      parts.push(chunk);
      offset += chunk.length;
    }
    await r.close();
    assert.ok(Buffer.concat(parts).equals(big(i)), `${name(i)} reads back whole, as S3 holds it now`);
  }
});
