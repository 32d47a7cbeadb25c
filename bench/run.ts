/**
 * `npm run bench`: throughput and memory of s3sftp, reported as ratios against
 * a baseline measured in the same run on the same machine and the same Swift
 * S3 server — plain SDK multipart uploads and ranged GETs with the same part
 * size and concurrency. A ratio near 1 means the SFTP layer costs little.
 *
 * BENCH_MIB sets the file size (default 256).
 */
import { createReadStream } from 'node:fs';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import {
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  GetObjectCommand,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { createBucket, makeClientKey, s3ClientFor, s3Server, sftpBatch, startTestServer } from '../test/support/harness.ts';

const MIB = 1024 * 1024;
const SIZE = Number(process.env.BENCH_MIB ?? 256) * MIB;
const PART = 16 * MIB;
const CONCURRENCY = 4;

async function main(): Promise<void> {
  const s3 = await s3Server();
  const work = await mkdtemp(join(tmpdir(), 's3sftp-bench-'));
  const file = join(work, 'payload.bin');
  const chunk = randomBytes(4 * MIB);
  const fh = await open(file, 'w');
  for (let done = 0; done < SIZE; done += chunk.length) await fh.write(chunk, 0, Math.min(chunk.length, SIZE - done));
  await fh.close();
  const bucket = await createBucket(s3);
  const key = await makeClientKey(work);
  const srv = await startTestServer({
    s3,
    bucket,
    env: {
      S3SFTP_S3_UPLOAD_PARTSIZE: `${PART}`,
      S3SFTP_S3_UPLOAD_CONCURRENCY: `${CONCURRENCY}`,
      // S3SFTP_UPLOADS_CHECKSUMS=false measures uploads without the hashes (see docs/s3-limitations.md).
      ...(process.env.S3SFTP_UPLOADS_CHECKSUMS ? { S3SFTP_UPLOADS_CHECKSUMS: process.env.S3SFTP_UPLOADS_CHECKSUMS } : {}),
    },
    users: [{ username: 'bench', keyFile: key, keyPrefix: 'bench/' }],
  });
  const client = s3ClientFor(s3);
  try {
    // The server runs in this process: RSS growth during the SFTP upload is the server's buffering.
    const rssBefore = process.memoryUsage().rss;
    let rssPeak = rssBefore;
    const sampler = setInterval(() => (rssPeak = Math.max(rssPeak, process.memoryUsage().rss)), 50);
    const sftpUp = await timed(async () => {
      const r = await sftpBatch(srv.port, 'bench', key, 'put payload.bin\n', { cwd: work, timeoutMs: 30 * 60_000 });
      if (r.code !== 0) throw new Error(`sftp put failed: ${r.stderr}`);
    });
    clearInterval(sampler);
    // The baseline runs after the s3sftp upload so its buffers do not hide the server's memory use.
    const baseUp = await timed(() => directUpload(client, bucket, 'direct/payload.bin', file));
    const baseDown = await timed(() => directDownload(client, bucket, 'direct/payload.bin'));
    const sftpDown = await timed(async () => {
      const r = await sftpBatch(srv.port, 'bench', key, `get payload.bin ${join(work, 'back.bin')}\n`, { timeoutMs: 30 * 60_000 });
      if (r.code !== 0) throw new Error(`sftp get failed: ${r.stderr}`);
    });
    const mibps = (ms: number) => (SIZE / MIB / (ms / 1000)).toFixed(1);
    const bound = PART * (CONCURRENCY + 1);
    const rows = [
      ['upload', mibps(baseUp), mibps(sftpUp), (baseUp / sftpUp).toFixed(2)],
      ['download', mibps(baseDown), mibps(sftpDown), (baseDown / sftpDown).toFixed(2)],
    ];
    process.stdout.write(`\ns3sftp benchmark: ${SIZE / MIB} MiB, part ${PART / MIB} MiB × ${CONCURRENCY}, Swift S3 on 127.0.0.1\n`);
    process.stdout.write('direction   baseline MiB/s   s3sftp MiB/s   ratio (s3sftp/baseline)\n');
    for (const r of rows) process.stdout.write(`${r[0]!.padEnd(12)}${r[1]!.padStart(14)}${r[2]!.padStart(15)}${r[3]!.padStart(12)}\n`);
    const grown = rssPeak - rssBefore;
    process.stdout.write(
      `memory: RSS grew ${(grown / MIB).toFixed(0)} MiB during the upload; bound partSize × (concurrency + 1) = ${bound / MIB} MiB; ratio ${(grown / bound).toFixed(2)}\n`,
    );
  } finally {
    client.destroy();
    await srv.stop();
    await s3.stop();
    await rm(work, { recursive: true, force: true });
  }
}

async function timed(fn: () => Promise<void>): Promise<number> {
  const start = performance.now();
  await fn();
  return performance.now() - start;
}

/** The baseline upload: SDK multipart with the same part size and concurrency. */
async function directUpload(client: ReturnType<typeof s3ClientFor>, bucket: string, key: string, file: string): Promise<void> {
  const { UploadId } = await client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: key }));
  const parts: { PartNumber: number; ETag?: string }[] = [];
  const inFlight = new Set<Promise<void>>();
  let partNumber = 0;
  let buffered: Buffer[] = [];
  let size = 0;
  const send = (body: Buffer, n: number) => {
    const p = client.send(new UploadPartCommand({ Bucket: bucket, Key: key, UploadId, PartNumber: n, Body: body })).then((r) => {
      parts.push({ PartNumber: n, ETag: r.ETag });
    });
    const tracked = p.finally(() => inFlight.delete(tracked));
    inFlight.add(tracked);
  };
  for await (const data of createReadStream(file, { highWaterMark: MIB })) {
    buffered.push(data as Buffer);
    size += (data as Buffer).length;
    if (size >= PART) {
      send(Buffer.concat(buffered), ++partNumber);
      buffered = [];
      size = 0;
      while (inFlight.size >= CONCURRENCY) await Promise.race(inFlight);
    }
  }
  if (size > 0) send(Buffer.concat(buffered), ++partNumber);
  await Promise.all(inFlight);
  parts.sort((a, b) => a.PartNumber - b.PartNumber);
  await client.send(new CompleteMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId, MultipartUpload: { Parts: parts } }));
}

/** The baseline download: ranged GETs of the download part size, a few in parallel, written in order. */
async function directDownload(client: ReturnType<typeof s3ClientFor>, bucket: string, key: string): Promise<void> {
  const part = 8 * MIB;
  const out = join(tmpdir(), `s3sftp-bench-direct-${process.pid}.bin`);
  const fh = await open(out, 'w');
  try {
    for (let offset = 0; offset < SIZE; offset += part * CONCURRENCY) {
      const ranges = [];
      for (let i = 0; i < CONCURRENCY && offset + i * part < SIZE; i++) {
        const start = offset + i * part;
        const end = Math.min(SIZE, start + part) - 1;
        ranges.push(
          client.send(new GetObjectCommand({ Bucket: bucket, Key: key, Range: `bytes=${start}-${end}` })).then(async (r) => ({
            start,
            body: Buffer.from(await r.Body!.transformToByteArray()),
          })),
        );
      }
      for (const { start, body } of await Promise.all(ranges)) await fh.write(body, 0, body.length, start);
    }
  } finally {
    await fh.close();
    await rm(out, { force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
