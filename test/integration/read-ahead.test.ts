/**
 * Reading ahead through a directory of small files (docs/adr/0021): OpenSSH's `get dir/*` fetches
 * files one after another, and the server fetches the next ones while the client is busy with the
 * current one. Real server on Swift, requests counted and timed at the proxy. The storage clock
 * stands still, so a slow machine cannot let a file fetched ahead expire before its OPEN.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import type ssh2 from 'ssh2';
import type { SwiftS3 } from '../../dev/swift.ts';
import { createBucket, makeClientKey, s3ClientFor, s3Server, sftpBatch, startTestServer, type TestServer } from '../support/harness.ts';
import { countByKind, startS3LatencyProxy, type CountedRequest, type S3LatencyProxy } from '../support/s3-latency-proxy.ts';
import { scrape } from '../support/prometheus.ts';
import { openSftp, type SftpClient } from '../support/sftp-client.ts';

let s3: SwiftS3;
let proxy: S3LatencyProxy;
let server: TestServer;
let dir: string;
let keyFile: string;
let bucket: string;
let direct: S3Client;
const clients: ssh2.Client[] = [];
const storageClock = { now: () => 1_700_000_000_000 };

/** The content of file i of a directory: distinct per file and per version. */
const content = (i: number, version = 0) => Buffer.alloc(3000 + i, `file ${i} version ${version};`);
const name = (i: number) => `f${String(i).padStart(3, '0')}.txt`;

before(async () => {
  s3 = await s3Server();
  bucket = await createBucket(s3);
  // A little latency, so fetching ahead and a client's own OPEN overlap as they would on S3.
  proxy = await startS3LatencyProxy(s3.endpoint, { delayMs: 5 });
  dir = await mkdtemp(join(tmpdir(), 's3sftp-readahead-'));
  keyFile = await makeClientKey(dir);
  server = await startTestServer({ s3: { ...s3, endpoint: proxy.endpoint }, bucket, users: [{ username: 'ra', keyFile, keyPrefix: 'ra/' }], storageClock });
  direct = s3ClientFor(s3);
  const put = (key: string, body: Buffer) => direct.send(new PutObjectCommand({ Bucket: bucket, Key: `ra/${key}`, Body: body }));
  await Promise.all(Array.from({ length: 40 }, (_, i) => put(`batch/${name(i)}`, content(i))));
  await Promise.all(Array.from({ length: 12 }, (_, i) => put(`few/${name(i)}`, content(i))));
  await Promise.all(Array.from({ length: 12 }, (_, i) => put(`changing/${name(i)}`, content(i))));
});

after(async () => {
  for (const c of clients) c.end();
  direct?.destroy();
  await server?.stop();
  await proxy?.close();
  await s3?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function connect(): Promise<SftpClient> {
  const { client, sftp } = await openSftp(server.port, 'ra', keyFile);
  clients.push(client);
  return sftp;
}

/** GETs that started before the previous GET was answered: work done ahead of the client. */
function overlapping(gets: CountedRequest[]): number {
  let n = 0;
  for (let i = 1; i < gets.length; i++) if (gets[i]!.arrivedAt < gets[i - 1]!.answeredAt) n++;
  return n;
}

test('get dir/* with OpenSSH sftp: every file arrives intact, each fetched once, all but the first two before their OPEN', async (t) => {
  const dst = join(dir, 'dst');
  await mkdir(dst);
  const mark = proxy.requests.length;
  const result = await sftpBatch(server.port, 'ra', keyFile, `lcd ${dst}\nget batch/*\n`, { timeoutMs: 120_000 });
  assert.equal(result.code, 0, result.stderr);
  for (let i = 0; i < 40; i++) assert.deepEqual(await readFile(join(dst, name(i))), content(i), name(i));
  await sleep(100);
  const requests = proxy.since(mark);
  // The files' GETs; the READDIR may read and write the directory's listing index (ADR 0020) besides.
  const gets = requests.filter((r) => r.kind === 'GetObject' && r.path.includes('/ra/batch/'));
  t.diagnostic(`${JSON.stringify(countByKind(requests))}; GETs started before the previous one was answered: ${overlapping(gets)}`);
  assert.equal(gets.length, 40, 'one GET per file: none fetched twice, none wasted');
  assert.equal(new Set(gets.map((g) => g.path)).size, 40);
  // Every file after the first two was fetched before its OPEN asked (the window is filled when
  // the previous OPEN is answered, from the listing the glob left), and none was left over. How
  // many GETs overlapped depends on how fast the client is; it is only reported.
  const metrics = await scrape(server.server.metrics.port);
  assert.equal(metrics.value('s3sftp_read_ahead_files_total', { result: 'used' }), 38);
  assert.equal(metrics.value('s3sftp_read_ahead_files_total', { result: 'unused' }), 0);
  assert.equal(metrics.value('s3sftp_read_ahead_bytes'), 0);
});

test('a client that reads two files and stops costs at most four GETs it did not ask for; STAT of a fetched file costs none', async () => {
  const sftp = await connect();
  const mark = proxy.requests.length;
  assert.deepEqual(await sftp.get(`/few/${name(0)}`), content(0));
  assert.deepEqual(await sftp.get(`/few/${name(1)}`), content(1));
  await sleep(300);
  const afterTwo = proxy.since(mark);
  assert.equal(afterTwo.filter((r) => r.kind === 'GetObject').length, 2 + 4);
  const statMark = proxy.requests.length;
  const stat = await sftp.stat(`/few/${name(2)}`);
  assert.equal(stat.size, content(2).length);
  await sleep(100);
  assert.deepEqual(proxy.since(statMark), [], 'the STAT was answered from the file fetched ahead');
});

test('a file changed through another session after it was fetched ahead is read as changed', async () => {
  const reader = await connect();
  const writer = await connect();
  assert.deepEqual(await reader.get(`/changing/${name(0)}`), content(0));
  assert.deepEqual(await reader.get(`/changing/${name(1)}`), content(1));
  await sleep(300); // names 2-5 are fetched ahead now
  await writer.put(`/changing/${name(3)}`, content(3, 1));
  assert.deepEqual(await reader.get(`/changing/${name(2)}`), content(2));
  assert.deepEqual(await reader.get(`/changing/${name(3)}`), content(3, 1));
  assert.equal((await reader.stat(`/changing/${name(3)}`)).size, content(3, 1).length);
});
