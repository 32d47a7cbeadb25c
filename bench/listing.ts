/**
 * `node bench/listing.ts`: how fast a large directory lists through S3Storage
 * with listing.mtime "lastModified" (ListObjectsV2 only), "metadata" on a
 * cold cache with no listing index yet (a HeadObject per file; it writes the
 * index, docs/adr/0020), "metadata" with a cold memory cache and the index
 * present (a restarted pod, another replica), and "metadata" again (memory
 * cache hits), on the Swift S3 server, with the S3 requests each listing made.
 * BENCH_ENTRIES sets the number of files (default 5000).
 */
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { HeadObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { pino } from 'pino';
import { loadConfig } from '../src/config/load.ts';
import { indexKey, ListingIndexStore } from '../src/storage/s3/listing-index.ts';
import { MtimeCache } from '../src/storage/s3/mtime-cache.ts';
import { S3Storage } from '../src/storage/s3/s3-storage.ts';
import { UploadRegistry } from '../src/storage/s3/upload-registry.ts';
import { forEachBounded } from '../src/storage/s3/bounded.ts';
import { createBucket, s3ClientFor, s3Env, s3Server } from '../test/support/harness.ts';

const ENTRIES = Number(process.env.BENCH_ENTRIES ?? 5000);

async function main(): Promise<void> {
  const s3 = await s3Server();
  const bucket = await createBucket(s3);
  const client = s3ClientFor(s3);
  // S3 requests by operation, to report what each listing cost.
  const requests = new Map<string, number>();
  client.middlewareStack.add(
    (next, context) => (args) => {
      requests.set(context.commandName ?? '?', (requests.get(context.commandName ?? '?') ?? 0) + 1);
      return next(args);
    },
    { step: 'initialize', name: 'benchCount' },
  );
  const prefix = `list-${randomUUID().slice(0, 8)}/`;
  try {
    const names = Array.from({ length: ENTRIES }, (_, i) => `file-${String(i).padStart(6, '0')}.txt`);
    const seeded = Date.now();
    await forEachBounded(names, 32, async (name) => {
      await client.send(new PutObjectCommand({ Bucket: bucket, Key: `${prefix}dir/${name}`, Body: name, Metadata: { mtime: '1600000000' } }));
    });
    process.stdout.write(`seeded ${ENTRIES} objects in ${((Date.now() - seeded) / 1000).toFixed(1)} s\n`);
    // The cache skips objects younger than 10 s (see mtime-cache.ts), and the index those a second
    // younger than its listing; a real directory is older. Counted from the last object stored.
    await sleep(11_000);
    const config = loadConfig({
      env: s3Env(s3, bucket),
    });
    const cache = new MtimeCache();
    const listingIndex = new ListingIndexStore({ log: pino({ level: 'silent' }) });
    const storage = (listingMtime: 'metadata' | 'lastModified', mtimeCache = cache) =>
      new S3Storage({
        client,
        bucket,
        keyPrefix: prefix,
        config: config.s3,
        renameMode: 0,
        renameMaxObjects: 1,
        uploads: new UploadRegistry(),
        log: pino({ level: 'silent' }),
        listingMtime,
        mtimeCache,
        listingIndex,
      });
    let raw = 0;
    const rate = async (label: string, s: S3Storage) => {
      requests.clear();
      const started = process.hrtime.bigint();
      let n = 0;
      for await (const page of s.list('/dir')) n += page.length;
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      if (n !== ENTRIES) throw new Error(`listed ${n} of ${ENTRIES}`);
      const perSecond = n / seconds;
      raw ||= perSecond;
      const counts = [...requests].sort().map(([k, v]) => `${k.replace(/Command$/, '')} ${v}`).join(', ');
      process.stdout.write(
        `${label.padEnd(40)}${seconds.toFixed(2).padStart(8)} s${perSecond.toFixed(0).padStart(10)} entries/s${(perSecond / raw).toFixed(2).padStart(7)}x   ${counts}\n`,
      );
    };
    process.stdout.write(`\nlisting ${ENTRIES} files (Swift S3 on 127.0.0.1); x: of the lastModified rate; S3 requests (the index write follows the listing)\n`);
    await rate('lastModified', storage('lastModified'));
    await rate('metadata, cold cache, no index', storage('metadata'));
    // The index is written after the listing; wait for it as another replica would find it.
    for (let i = 0; i < 100; i++) {
      const found = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: indexKey(`${prefix}dir/`) })).then(() => true, () => false);
      if (found) break;
      await sleep(100);
    }
    await rate('metadata, cold memory, index present', storage('metadata', new MtimeCache()));
    await rate('metadata, warm cache', storage('metadata'));
  } finally {
    client.destroy();
    await s3.stop();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error).stack ?? err}\n`);
  process.exit(1);
});
