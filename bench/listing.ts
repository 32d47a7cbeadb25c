/**
 * `node bench/listing.ts`: how fast a large directory lists through S3Storage
 * with listing.mtime "lastModified" (ListObjectsV2 only), "metadata" on a
 * cold cache (a HeadObject per file) and "metadata" again (cache hits), on
 * the Swift S3 server. BENCH_ENTRIES sets the number of files (default 5000).
 */
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { pino } from 'pino';
import { loadConfig } from '../src/config/load.ts';
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
  const prefix = `list-${randomUUID().slice(0, 8)}/`;
  try {
    const names = Array.from({ length: ENTRIES }, (_, i) => `file-${String(i).padStart(6, '0')}.txt`);
    const seeded = Date.now();
    await forEachBounded(names, 32, async (name) => {
      await client.send(new PutObjectCommand({ Bucket: bucket, Key: `${prefix}dir/${name}`, Body: name, Metadata: { mtime: '1600000000' } }));
    });
    process.stdout.write(`seeded ${ENTRIES} objects in ${((Date.now() - seeded) / 1000).toFixed(1)} s\n`);
    // The cache skips objects younger than 10 s (see mtime-cache.ts); a real directory is older.
    await sleep(Math.max(0, 11_000 - (Date.now() - seeded)));
    const config = loadConfig({
      env: s3Env(s3, bucket),
    });
    const cache = new MtimeCache();
    const storage = (listingMtime: 'metadata' | 'lastModified') =>
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
        mtimeCache: cache,
      });
    const rate = async (label: string, s: S3Storage) => {
      const started = process.hrtime.bigint();
      let n = 0;
      for await (const page of s.list('/dir')) n += page.length;
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      if (n !== ENTRIES) throw new Error(`listed ${n} of ${ENTRIES}`);
      process.stdout.write(`${label.padEnd(28)}${seconds.toFixed(2).padStart(8)} s${(n / seconds).toFixed(0).padStart(10)} entries/s\n`);
    };
    process.stdout.write(`\nlisting ${ENTRIES} files (Swift S3 on 127.0.0.1)\n`);
    await rate('lastModified', storage('lastModified'));
    await rate('metadata, cold cache', storage('metadata'));
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
