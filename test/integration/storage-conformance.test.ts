/**
 * S3Storage against a real S3 implementation (OpenStack Swift with s3api, see
 * dev/swift.ts): the shared conformance suite, then what only S3 has (key
 * prefixes, multipart leftovers, out-of-band keys, slow or failing requests).
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  AbortMultipartUploadCommand,
  CopyObjectCommand,
  CreateBucketCommand,
  DeleteBucketCommand,
  DeleteObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  type S3Client,
  GetObjectCommand,
  UploadPartCommand,
  UploadPartCopyCommand,
} from '@aws-sdk/client-s3';
import pino from 'pino';
import { startSwift, type SwiftS3 } from '../../dev/swift.ts';
import type { S3Config } from '../../src/config/types.ts';
import { decodeKey } from '../../src/storage/s3/lister.ts';
import {
  AlreadyExistsError,
  BackendError,
  InvalidRequestError,
  NotFoundError,
  WrongTypeError,
} from '../../src/storage/errors.ts';
import { checkBucket, createS3Client } from '../../src/storage/s3/client.ts';
import { S3Storage, type S3StorageOptions } from '../../src/storage/s3/s3-storage.ts';
import { UploadRegistry } from '../../src/storage/s3/upload-registry.ts';
import type { S3Writer } from '../../src/storage/s3/writer.ts';
import {
  inParallel,
  listAll,
  readFile,
  sha256,
  storageConformance,
  summary,
  writeFile,
} from '../support/storage-conformance.ts';

const MiB = 1024 ** 2;
// Unique per run: the Swift server may be shared with other test files.
const BUCKET = `conformance-${randomUUID().slice(0, 8)}`;
const log = pino({ level: 'silent' });

let swift: Omit<SwiftS3, 'dir'>;
let client: S3Client;
let config: S3Config;
const uploads = new UploadRegistry();

/** The run's shared Swift (test/support/global-setup.ts) when there is one, else our own. */
async function s3Server(): Promise<Omit<SwiftS3, 'dir'>> {
  const shared = process.env.S3SFTP_TEST_S3;
  if (shared) return { ...(JSON.parse(shared) as Omit<SwiftS3, 'dir' | 'stop'>), stop: async () => {} };
  return startSwift();
}

before(async () => {
  swift = await s3Server();
  config = {
    bucket: BUCKET,
    region: swift.region,
    endpoint: swift.endpoint,
    forcePathStyle: true,
    storageClass: '',
    acl: '',
    credentials: {
      accessKeyId: swift.accessKeyId,
      secretAccessKey: swift.secretAccessKey,
      sessionToken: '',
      roleArn: '',
      externalId: '',
      sessionName: 's3sftp',
      durationMs: 3_600_000,
    },
    // Swift's s3api rejects aws-chunked bodies.
    requestChecksum: 'when_required',
    upload: { partSize: 5 * MiB, concurrency: 2, partMaxTimeMs: 0 },
    download: { partSize: 4 * MiB, concurrency: 3, partMaxTimeMs: 0, readAheadFiles: 8 },
  };
  client = createS3Client(config);
  await client.send(new CreateBucketCommand({ Bucket: BUCKET }));
});

after(async () => {
  // Every test removed its prefix; a leftover makes this fail, and the server goes anyway.
  await client?.send(new DeleteBucketCommand({ Bucket: BUCKET })).catch(() => {});
  client?.destroy();
  await swift?.stop();
});

function newPrefix(): string {
  return `t-${randomUUID()}/`;
}

function makeStorage(prefix: string, options: Partial<S3StorageOptions> = {}): S3Storage {
  return new S3Storage({
    client,
    bucket: BUCKET,
    keyPrefix: prefix,
    config,
    renameMode: 0,
    renameMaxObjects: 1000,
    uploads,
    log,
    ...options,
  });
}

async function keysUnder(prefix: string): Promise<string[]> {
  const keys: string[] = [];
  let token: string | undefined;
  do {
    const page = await client.send(
      new ListObjectsV2Command({ Bucket: BUCKET, Prefix: prefix, ContinuationToken: token, EncodingType: 'url' }),
    );
    for (const object of page.Contents ?? []) keys.push(decodeKey(object.Key!));
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  return keys;
}

async function uploadsUnder(prefix: string): Promise<{ key: string; uploadId: string }[]> {
  const out = await client.send(new ListMultipartUploadsCommand({ Bucket: BUCKET, Prefix: prefix }));
  return (out.Uploads ?? []).map((u) => ({ key: u.Key!, uploadId: u.UploadId! }));
}

async function removePrefix(prefix: string): Promise<void> {
  for (const { key, uploadId } of await uploadsUnder(prefix)) {
    await client.send(new AbortMultipartUploadCommand({ Bucket: BUCKET, Key: key, UploadId: uploadId }));
  }
  await inParallel(await keysUnder(prefix), 32, (key) =>
    client.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: key })),
  );
}

async function putRaw(key: string, body = '', metadata?: Record<string, string>): Promise<void> {
  const data = Buffer.from(body);
  await client.send(
    new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: data, ContentLength: data.length, Metadata: metadata }),
  );
}

/** A client like the shared one whose send() is intercepted for one command class. */
function interceptCommand<C>(
  commandClass: abstract new (...args: never[]) => C,
  intercept: (send: () => Promise<unknown>, command: C, signal: AbortSignal | undefined) => Promise<unknown>,
  overrides: Partial<S3Config> = {},
): S3Client {
  const wrapped = createS3Client({ ...config, ...overrides });
  type Send = (command: unknown, options?: { abortSignal?: AbortSignal }) => Promise<unknown>;
  const send = wrapped.send.bind(wrapped) as Send;
  const replacement: Send = (command, options) =>
    command instanceof commandClass
      ? intercept(() => send(command, options), command, options?.abortSignal)
      : send(command, options);
  Object.assign(wrapped, { send: replacement });
  return wrapped;
}

function interceptUploadPart(
  intercept: (send: () => Promise<unknown>, signal: AbortSignal | undefined) => Promise<unknown>,
  overrides: Partial<S3Config> = {},
): S3Client {
  return interceptCommand(UploadPartCommand, (send, _command, signal) => intercept(send, signal), overrides);
}

storageConformance('S3Storage on Swift', async (variant = {}) => {
  const prefix = newPrefix();
  const storage = makeStorage(prefix, {
    renameMode: variant.renamesDirectories ? 1 : 0,
    renameMaxObjects: variant.renameMaxObjects ?? 1000,
  });
  return {
    storage,
    cleanup: () => removePrefix(prefix),
    leftoverUploads: async () => (await uploadsUnder(prefix)).map((u) => u.key),
    // The layout mkdir and writes produce: markers end in "/", files hold their name.
    seed: (paths) =>
      inParallel(paths, 32, (path) =>
        putRaw(prefix + path.slice(1), path.endsWith('/') ? '' : path.slice(path.lastIndexOf('/') + 1)),
      ),
  };
});

describe('S3Storage specifics', () => {
  it('shows a name that is both a file and a directory once, as the file, across pages', async () => {
    const prefix = newPrefix();
    try {
      // 1,001 names sort between "x" and "x/", so the two land on different list pages.
      const between = Array.from({ length: 1001 }, (_, i) => `${prefix}x-${String(i).padStart(4, '0')}`);
      await inParallel([...between, `${prefix}x`, `${prefix}x.txt`, `${prefix}x/y`, `${prefix}x/`], 32, (key) =>
        putRaw(key, 'v'),
      );
      // Keys no SFTP name can reach: empty, "." and ".." segments.
      for (const key of ['dir//hidden', 'dir/./dot', 'dir/../dotdot', 'dir/ok']) await putRaw(prefix + key, 'h');
      const storage = makeStorage(prefix);
      const root = await listAll(storage, '/');
      const names = root.map((i) => i.name);
      assert.equal(names.length, new Set(names).size, 'no duplicates');
      assert.equal(names.filter((n) => n === 'x').length, 1);
      assert.equal(root.find((i) => i.name === 'x')?.isDirectory, false);
      assert.equal(root.length, 1001 + 3);
      assert.equal((await storage.stat('/x')).isDirectory, false);
      await assert.rejects(listAll(storage, '/x'), WrongTypeError);
      assert.deepEqual(summary(await listAll(storage, '/dir')), ['ok']);
      // The upload-open lookup lists "x" as prefix: here "x/" is off its first page, and a second listing finds it.
      const found: unknown[] = [];
      const over = await storage.openWrite('/x', { check: (f) => void found.push(f?.size) });
      await over.abort();
      assert.deepEqual(found, [1], 'the file wins');
      await client.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: `${prefix}x` }));
      await assert.rejects(storage.openWrite('/x'), WrongTypeError);
      await assert.rejects(storage.mkdir('/x'), AlreadyExistsError);
    } finally {
      await removePrefix(prefix);
    }
  });

  it('a directory made in the last 5 s is known empty: files made in it need no lookup; after that it is listed again, once removed looked up', async () => {
    const prefix = newPrefix();
    const listed: string[] = [];
    const counting = interceptCommand(ListObjectsV2Command, (send, command) => {
      listed.push(command.input.Prefix ?? '');
      return send();
    });
    let skew = 0;
    // As the SFTP session opens a `put`: create or truncate, by a user who may overwrite.
    const create = async (storage: S3Storage, path: string) => {
      const writer = await storage.openWrite(path, { requireParent: true, createOrReplace: true });
      await writer.write(0, Buffer.from('f'));
      await writer.commit();
    };
    try {
      const storage = makeStorage(prefix, { client: counting, clock: { now: () => Date.now() + skew } });
      await storage.mkdir('/d');
      listed.length = 0;
      await create(storage, '/d/a');
      await create(storage, '/d/b');
      assert.deepEqual(listed, [], 'nothing: MKDIR found the name free (docs/adr/0019)');
      skew += 5_001;
      listed.length = 0;
      await create(storage, '/d/c');
      // The parent's own name again, and the directory whole (which answers for "c" too).
      assert.deepEqual(listed.sort(), [`${prefix}d`, `${prefix}d/`], 'the parent again after 5 s');
      listed.length = 0;
      await create(storage, '/d/e');
      assert.deepEqual(listed, [], 'then nothing again');
      await storage.mkdir('/e');
      await storage.rmdir('/e');
      await assert.rejects(create(storage, '/e/x'), NotFoundError);
    } finally {
      counting.destroy();
      await removePrefix(prefix);
    }
  });

  it('keeps a user inside the key prefix', async () => {
    const run = newPrefix();
    try {
      await putRaw(`${run}users/alice2/x`, 'not yours');
      await putRaw(`${run}users/alice`, 'not yours either');
      await putRaw(`${run}users/secret`, 'secret');
      const alice = makeStorage(`${run}users/alice/`);
      assert.deepEqual(await listAll(alice, '/'), []);
      await assert.rejects(alice.stat('/x'), NotFoundError);
      for (const sneaky of ['/../alice2/x', '/../secret', '..', 'x', '/a/./b', '/a//b', '/a/']) {
        await assert.rejects(alice.stat(sneaky), InvalidRequestError, sneaky);
        await assert.rejects(alice.openRead(sneaky), InvalidRequestError, sneaky);
        await assert.rejects(alice.openWrite(sneaky), InvalidRequestError, sneaky);
      }
      await writeFile(alice, '/mine', Buffer.from('m'));
      await alice.mkdir('/d');
      assert.deepEqual((await keysUnder(run)).sort(), [
        `${run}users/alice`,
        `${run}users/alice/d/`,
        `${run}users/alice/mine`,
        `${run}users/alice2/x`,
        `${run}users/secret`,
      ]);
    } finally {
      await removePrefix(run);
    }
  });

  it('reads the mtime metadata other tools write, and falls back to LastModified', async () => {
    const prefix = newPrefix();
    try {
      await putRaw(`${prefix}rclone`, 'r', { mtime: '1234567890.5' });
      await putRaw(`${prefix}s3fs`, 's', { mtime: '1234567890' });
      await putRaw(`${prefix}garbage`, 'g', { mtime: 'yesterday' });
      const storage = makeStorage(prefix);
      assert.equal((await storage.stat('/rclone')).mtime.getTime(), 1234567890500);
      assert.equal((await storage.stat('/s3fs')).mtime.getTime(), 1234567890000);
      assert.ok(Math.abs((await storage.stat('/garbage')).mtime.getTime() - Date.now()) < 120_000);
    } finally {
      await removePrefix(prefix);
    }
  });

  it('renames and re-times objects above the multipart-copy threshold', async () => {
    const prefix = newPrefix();
    try {
      const storage = makeStorage(prefix, {
        renameMode: 1,
        copy: { multipartThreshold: 5 * MiB, partSize: 5 * MiB, partConcurrency: 2 },
      });
      const data = randomBytes(12 * MiB + 3);
      await writeFile(storage, '/big', data);
      const mtime = new Date('2020-05-05T05:05:05.500Z');
      await storage.setMtime('/big', mtime);
      await storage.mkdir('/dir');
      await storage.rename('/big', '/dir/big2');
      await storage.rename('/dir', '/dir2');
      const info = await storage.stat('/dir2/big2');
      assert.equal(info.size, data.length);
      assert.equal(info.mtime.getTime(), mtime.getTime());
      assert.equal(sha256(await readFile(storage, '/dir2/big2')), sha256(data));
      assert.deepEqual(await uploadsUnder(prefix), []);
    } finally {
      await removePrefix(prefix);
    }
  });

  it('stores the hashes of single-PUT uploads; a multipart upload is not copied for them and is hashed on demand', async () => {
    const prefix = newPrefix();
    let gets = 0;
    let copies = 0;
    const counting = interceptCommand(Object, (send, command) => {
      if (command instanceof GetObjectCommand) gets++;
      if (command instanceof CopyObjectCommand) copies++;
      return send();
    });
    try {
      const storage = makeStorage(prefix, { client: counting });
      const small = randomBytes(3000);
      const big = randomBytes(11 * MiB);
      await writeFile(storage, '/small', small);
      await writeFile(storage, '/big', big);
      const smallHead = await client.send(new HeadObjectCommand({ Bucket: BUCKET, Key: `${prefix}small` }));
      for (const algorithm of ['md5', 'sha1', 'sha256'] as const) {
        assert.equal(smallHead.Metadata?.[algorithm], createHash(algorithm).update(small).digest('hex'), `${algorithm} small`);
      }
      assert.equal(await storage.checksum('/small', 'sha256'), createHash('sha256').update(small).digest('hex'));
      assert.equal(gets, 0, 'stored hashes: no read');
      const bigHead = await client.send(new HeadObjectCommand({ Bucket: BUCKET, Key: `${prefix}big` }));
      assert.equal(bigHead.Metadata?.md5, undefined, 'a multipart upload carries no hashes');
      assert.equal(copies, 0, 'no copy of the object onto itself at the end of the upload');
      assert.equal(await storage.checksum('/big', 'sha1'), createHash('sha1').update(big).digest('hex'));
      assert.equal(gets, 1, 'a multipart upload is read once when its hash is asked for');
      gets = 0;
      await putRaw(`${prefix}foreign`, 'from another tool', { md5: 'not-a-digest' });
      assert.equal(await storage.checksum('/foreign', 'md5'), createHash('md5').update('from another tool').digest('hex'));
      assert.equal(gets, 1, 'one read for an object without hashes');

      const plain = makeStorage(prefix, { storeChecksums: false });
      await writeFile(plain, '/plain', small);
      const head = await client.send(new HeadObjectCommand({ Bucket: BUCKET, Key: `${prefix}plain` }));
      assert.equal(head.Metadata?.md5, undefined);
    } finally {
      counting.destroy();
      await removePrefix(prefix);
    }
  });

  it('resumes by copying the stored object inside S3, and not when resume is off', async () => {
    const prefix = newPrefix();
    const copied: string[] = [];
    const counting = interceptCommand(UploadPartCopyCommand, (send, command) => {
      copied.push(command.input.CopySourceRange ?? '');
      return send();
    });
    try {
      const storage = makeStorage(prefix, { client: counting });
      const existing = randomBytes(6 * MiB + 1);
      await writeFile(storage, '/r', existing);
      const writer = await storage.openWrite('/r');
      await writer.continueExisting!(existing.length);
      const tail = randomBytes(1000);
      await writer.write(existing.length, tail);
      await writer.commit();
      assert.deepEqual(copied, [`bytes=0-${existing.length - 1}`]);
      assert.equal(sha256(await readFile(storage, '/r')), sha256(Buffer.concat([existing, tail])));
      const head = await client.send(new HeadObjectCommand({ Bucket: BUCKET, Key: `${prefix}r` }));
      assert.equal(head.Metadata?.sha256, undefined, 'no hash over bytes the server did not see');

      const off = makeStorage(prefix, { resume: false });
      const refused = await off.openWrite('/r');
      await assert.rejects(refused.continueExisting!(existing.length + 1000), /uploads\.resume/);
      await refused.abort();
    } finally {
      counting.destroy();
      await removePrefix(prefix);
    }
  });

  it('holds writes back while parts are in flight (backpressure)', async () => {
    const prefix = newPrefix();
    let inFlight = 0;
    let maxInFlight = 0;
    const slow = interceptUploadPart(async (send) => {
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      try {
        // Long enough that filling a part (80 writes, each hashed) is faster than a part upload, even on a busy machine.
        await sleep(1_000);
        return await send();
      } finally {
        inFlight--;
      }
    });
    const events = { partsStarted: 0, partsOk: 0, partSeconds: 0, commits: 0, lag: -1 };
    try {
      const windowBytes = 1 * MiB;
      const storage = makeStorage(prefix, {
        client: slow,
        writeWindowBytes: windowBytes,
        events: {
          onPartStart: () => void events.partsStarted++,
          onPartDone: (_bytes, seconds, ok) => {
            if (ok) events.partsOk++;
            events.partSeconds += seconds;
          },
          onCommit: (lag) => {
            events.commits++;
            events.lag = lag;
          },
        },
      });
      const writer = (await storage.openWrite('/slow.bin')) as S3Writer;
      const data = randomBytes(32 * MiB);
      const limit = config.upload.partSize * (config.upload.concurrency + 1) + windowBytes;
      let maxBuffered = 0;
      let heldBack = 0;
      for (let offset = 0; offset < data.length; offset += 64 * 1024) {
        let settled = false;
        const write = writer.write(offset, data.subarray(offset, offset + 64 * 1024)).then(() => {
          settled = true;
        });
        maxBuffered = Math.max(maxBuffered, writer.bufferedBytes);
        await sleep(0);
        if (!settled) {
          heldBack++;
          const busy = config.upload.partSize * config.upload.concurrency;
          assert.ok(writer.bufferedBytes >= busy, 'held back only while every part slot is busy');
        }
        await write;
      }
      await writer.commit();
      assert.ok(heldBack > 0, 'some write() stayed pending while parts were in flight');
      assert.ok(maxInFlight <= config.upload.concurrency, `at most ${config.upload.concurrency} parts in flight`);
      assert.ok(maxBuffered <= limit, `buffered ${maxBuffered} > ${limit}`);
      // 32 MiB in 5 MiB parts: six full parts and a 2 MiB last one.
      assert.equal(events.partsStarted, 7);
      assert.equal(events.partsOk, 7);
      assert.ok(events.partSeconds >= 7 * 0.4);
      assert.equal(events.commits, 1);
      assert.ok(events.lag >= 0.4, `commit waited for the last part (lag ${events.lag}s)`);
      assert.equal(sha256(await readFile(storage, '/slow.bin')), sha256(data));
    } finally {
      slow.destroy();
      await removePrefix(prefix);
    }
  });

  it('fails an upload whose part keeps failing, cleanly', async () => {
    const prefix = newPrefix();
    let attempts = 0;
    const failing = interceptUploadPart(async () => {
      attempts++;
      throw Object.assign(new Error('We encountered an internal error. Please try again.'), {
        name: 'InternalError',
        $metadata: { httpStatusCode: 500, requestId: 'req-123' },
      });
    });
    try {
      const storage = makeStorage(prefix, { client: failing });
      const writer = await storage.openWrite('/doomed.bin');
      const failure = await (async () => {
        try {
          for (let offset = 0; offset < 30 * MiB; offset += MiB) await writer.write(offset, Buffer.alloc(MiB));
          await writer.commit();
        } catch (err) {
          return err as Error;
        }
        return undefined;
      })();
      assert.ok(failure instanceof BackendError, `got ${failure}`);
      assert.doesNotMatch(failure.message, /internal error|req-123/i, 'SDK text stays out of the message');
      assert.ok(attempts >= 4, 'the part was retried');
      await assert.rejects(writer.commit());
      await writer.abort();
      await assert.rejects(storage.stat('/doomed.bin'), NotFoundError);
      assert.deepEqual(await uploadsUnder(prefix), []);
    } finally {
      failing.destroy();
      await removePrefix(prefix);
    }
  });

  it('an upload aborted while its commit waits for parts stores nothing, and its memory accounting balances', async () => {
    const prefix = newPrefix();
    // Part 1 is stored at once, the others are slow: completing with what is
    // there would make a 5 MiB object of a 12 MiB file.
    const slow = interceptCommand(UploadPartCommand, async (send, command, signal) => {
      if (command.input.PartNumber !== 1) await sleep(2_000, undefined, signal ? { signal } : {});
      return send();
    });
    const bytes = { buffered: 0, stored: 0, discarded: 0 };
    try {
      const storage = makeStorage(prefix, {
        client: slow,
        events: {
          onBuffered: (n) => void (bytes.buffered += n),
          onStored: (n) => void (bytes.stored += n),
          onDiscarded: (n) => void (bytes.discarded += n),
        },
      });
      const writer = await storage.openWrite('/cut.bin');
      const data = randomBytes(12 * MiB + 7);
      for (let offset = 0; offset < data.length; offset += MiB) await writer.write(offset, data.subarray(offset, offset + MiB));
      const commit = writer.commit();
      commit.catch(() => {});
      for (let i = 0; i < 100 && bytes.stored === 0; i++) await sleep(50);
      assert.equal(bytes.stored, 5 * MiB, 'part 1 is in S3');
      // The session ends (client gone, or a drain's grace period over) while CLOSE waits.
      await writer.abort();
      await assert.rejects(commit);
      await assert.rejects(storage.stat('/cut.bin'), NotFoundError);
      assert.deepEqual(await uploadsUnder(prefix), []);
      assert.equal(bytes.buffered, data.length);
      assert.equal(bytes.stored + bytes.discarded, bytes.buffered, JSON.stringify(bytes));
    } finally {
      slow.destroy();
      await removePrefix(prefix);
    }
  });

  it('gives up on a part that exceeds its time limit', async () => {
    const prefix = newPrefix();
    const hanging = interceptUploadPart(
      (_send, signal) =>
        new Promise((_resolve, reject) => {
          signal?.addEventListener('abort', () =>
            reject(Object.assign(new Error('Request aborted'), { name: 'AbortError' })),
          );
        }),
      { upload: { ...config.upload, partMaxTimeMs: 150 } },
    );
    try {
      const storage = makeStorage(prefix, {
        client: hanging,
        config: { ...config, upload: { ...config.upload, partMaxTimeMs: 150 } },
      });
      const writer = await storage.openWrite('/stuck.bin');
      await writer.write(0, Buffer.alloc(6 * MiB));
      await assert.rejects(writer.commit(), (err: Error) => {
        assert.ok(err instanceof BackendError);
        assert.match(err.message, /timed out/);
        return true;
      });
      assert.deepEqual(await uploadsUnder(prefix), []);
    } finally {
      hanging.destroy();
      await removePrefix(prefix);
    }
  });

  it('reads ahead in large ranges when sequential, and only what is asked when not', async () => {
    const prefix = newPrefix();
    const ranges: string[] = [];
    const counting = interceptCommand(GetObjectCommand, (send, command) => {
      ranges.push(command.input.Range ?? 'all');
      return send();
    });
    try {
      const storage = makeStorage(prefix, { client: counting });
      const data = randomBytes(20 * MiB);
      await writeFile(storage, '/seq.bin', data);
      const reader = await storage.openRead('/seq.bin');
      for (let offset = 0; offset < data.length; offset += 32 * 1024) {
        assert.deepEqual(await reader.read(offset, 32 * 1024), data.subarray(offset, offset + 32 * 1024));
      }
      await reader.close();
      // The open is the GET of the first 4 MiB chunk (download.partSize); then the other four.
      assert.equal(ranges.length, 5, ranges.join(' '));
      assert.equal(ranges[0], `bytes=0-${4 * MiB - 1}`);
      assert.equal(ranges[1], `bytes=${4 * MiB}-${8 * MiB - 1}`);

      ranges.length = 0;
      const random = await storage.openRead('/seq.bin');
      assert.deepEqual(ranges, [`bytes=0-${4 * MiB - 1}`], 'the open');
      ranges.length = 0;
      for (const at of [15 * MiB, 3 * MiB, 9 * MiB + 5]) {
        assert.deepEqual(await random.read(at, 1000), data.subarray(at, at + 1000));
      }
      // 3 MiB lies in the chunk the open read; elsewhere a random reader gets exactly the bytes it asks for.
      assert.deepEqual(ranges, [`bytes=${15 * MiB}-${15 * MiB + 999}`, `bytes=${9 * MiB + 5}-${9 * MiB + 1004}`]);
      // Closing with read-ahead in flight aborts it without stray rejections.
      await random.read(9 * MiB + 1005, 10);
      await random.close();
      await assert.rejects(random.read(0, 1), InvalidRequestError);
      await sleep(50);
    } finally {
      counting.destroy();
      await removePrefix(prefix);
    }
  });

  it('uploads with request checksums on (when_supported)', async () => {
    const prefix = newPrefix();
    const checksummed = createS3Client({ ...config, requestChecksum: 'when_supported' });
    try {
      const storage = makeStorage(prefix, {
        client: checksummed,
        config: { ...config, requestChecksum: 'when_supported' },
      });
      const data = randomBytes(11 * MiB);
      await writeFile(storage, '/crc.bin', data);
      await writeFile(storage, '/small', Buffer.from('s'));
      assert.equal(sha256(await readFile(storage, '/crc.bin')), sha256(data));
    } finally {
      checksummed.destroy();
      await removePrefix(prefix);
    }
  });

  it('translates errors once, keeping SDK details in the cause', async () => {
    const prefix = newPrefix();
    try {
      const storage = makeStorage(prefix);
      // Larger than the first chunk, which the open already read (readable after the delete, as an open file is).
      const data = randomBytes(4 * MiB + 10);
      await writeFile(storage, '/gone', data);
      const reader = await storage.openRead('/gone');
      await client.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: `${prefix}gone` }));
      assert.deepEqual(await reader.read(0, 10), data.subarray(0, 10));
      await assert.rejects(reader.read(4 * MiB, 10), NotFoundError);
      await reader.close();

      const noBucket = makeStorage(prefix, { bucket: 'no-such-bucket' });
      await assert.rejects(listAll(noBucket, '/'), (err: Error) => {
        assert.ok(err instanceof BackendError);
        assert.doesNotMatch(err.message, /no-such-bucket|specified bucket/i);
        const cause = err.cause as { $metadata?: { requestId?: string } };
        assert.ok(cause.$metadata?.requestId, 'request id kept in the cause');
        return true;
      });
    } finally {
      await removePrefix(prefix);
    }
  });

  it('checkBucket explains what is wrong', async () => {
    await checkBucket(client, BUCKET);
    await assert.rejects(checkBucket(client, 'no-such-bucket'), /bucket no-such-bucket does not exist/);
    const wrongKey = createS3Client(
      { ...config, credentials: { ...config.credentials, secretAccessKey: 'wrong' } },
      { maxAttempts: 1 },
    );
    await assert.rejects(checkBucket(wrongKey, BUCKET), new RegExp(`access denied to bucket ${BUCKET}`));
    wrongKey.destroy();
    const nowhere = createS3Client({ ...config, endpoint: 'http://127.0.0.1:9' }, { maxAttempts: 1 });
    await assert.rejects(checkBucket(nowhere, BUCKET), /cannot reach endpoint http:\/\/127\.0\.0\.1:9/);
    nowhere.destroy();
  });

  it('registers uploads only while they are live', async () => {
    const prefix = newPrefix();
    try {
      const storage = makeStorage(prefix);
      const before = uploads.size;
      const writer = await storage.openWrite('/live');
      assert.equal(uploads.size, before + 1);
      await writer.write(0, Buffer.from('x'));
      await writer.commit();
      assert.equal(uploads.size, before);
      const aborted = await storage.openWrite('/live2');
      await aborted.abort();
      assert.equal(uploads.size, before);
      const head = await client.send(new HeadObjectCommand({ Bucket: BUCKET, Key: `${prefix}live` }));
      assert.equal(head.ContentLength, 1);
    } finally {
      await removePrefix(prefix);
    }
  });
});
