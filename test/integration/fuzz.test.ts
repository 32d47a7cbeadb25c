/**
 * The SFTP packet fuzzer (test/support/sftp-fuzz.ts) against a real server
 * over real SSH connections. While one user's sessions receive malformed and
 * hostile packets, another user uploads and downloads normally; afterwards the
 * process is alive, memory is back near where it started, and every object in
 * the bucket is under one of the two users' prefixes.
 *
 * FUZZ_PACKETS (default 2000), FUZZ_CONNECTIONS (default 4) and FUZZ_SEED
 * (printed) tune and replay a run; `make fuzz` runs it for longer.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import ssh2 from 'ssh2';
import type { ClientChannel } from 'ssh2';
import { ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import type { SwiftS3 } from '../../dev/swift.ts';
import { createBucket, makeClientKey, s3ClientFor, s3Server, startTestServer, type TestServer } from '../support/harness.ts';
import { fuzzSftp, type FuzzReport } from '../support/sftp-fuzz.ts';

const SEED = Number(process.env.FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31));
const PACKETS = Number(process.env.FUZZ_PACKETS ?? 2000);
const CONNECTIONS = Number(process.env.FUZZ_CONNECTIONS ?? 4);
const MiB = 1024 * 1024;

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

let s3: SwiftS3;
let direct: S3Client;
let srv: TestServer;
let work: string;
let fuzzKey: string;
let otherKey: string;
let bucket: string;

before(async () => {
  console.log(`fuzz seed ${SEED} (FUZZ_SEED=${SEED} replays this run), ${PACKETS} packets over ${CONNECTIONS} connections`);
  s3 = await s3Server();
  direct = s3ClientFor(s3);
  bucket = await createBucket(s3);
  work = await mkdtemp(join(tmpdir(), 's3sftp-fuzz-'));
  fuzzKey = await makeClientKey(work, 'fuzz');
  otherKey = await makeClientKey(work, 'other');
  srv = await startTestServer({
    s3,
    bucket,
    users: [
      { username: 'fuzz', keyFile: fuzzKey, keyPrefix: 'fuzz/' },
      { username: 'other', keyFile: otherKey, keyPrefix: 'other/' },
    ],
  });
});

after(async () => {
  await srv?.stop();
  direct?.destroy();
  await s3?.stop();
  await rm(work, { recursive: true, force: true });
});

async function connect(user: string, keyFile: string): Promise<ssh2.Client> {
  const client = new ssh2.Client();
  const privateKey = await readFile(keyFile);
  await new Promise<void>((resolve, reject) => {
    client.once('ready', resolve).once('error', reject);
    client.connect({ host: '127.0.0.1', port: srv.port, username: user, privateKey, readyTimeout: 60_000 });
  });
  client.on('error', () => undefined);
  return client;
}

const sha = (data: Buffer) => createHash('sha256').update(data).digest('hex');

/** One normal upload and download of the bystander, with a sha256 check. */
async function roundTrip(sftp: ssh2.SFTPWrapper, n: number): Promise<void> {
  const data = randomBytes(64 * 1024 + (n % 7) * 50_000);
  const path = `/round-${n % 3}.bin`;
  await new Promise<void>((resolve, reject) => sftp.writeFile(path, data, (err) => (err ? reject(err) : resolve())));
  const back = await new Promise<Buffer>((resolve, reject) => sftp.readFile(path, (err, d) => (err ? reject(err) : resolve(d))));
  assert.equal(sha(back), sha(data), `${path} round-trips`);
}

function rssAfterGc(): number {
  gc();
  gc();
  return process.memoryUsage().rss;
}

async function allKeys(): Promise<string[]> {
  const keys: string[] = [];
  let token: string | undefined;
  do {
    const page = await direct.send(new ListObjectsV2Command({ Bucket: bucket, ...(token ? { ContinuationToken: token } : {}) }));
    for (const o of page.Contents ?? []) keys.push(o.Key!);
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  return keys;
}

test('fuzzed SFTP packets: no crash, the other user is unaffected, memory flat, nothing leaves the prefix', async () => {
  const bystander = await connect('other', otherKey);
  const sftp = await new Promise<ssh2.SFTPWrapper>((resolve, reject) => bystander.sftp((err, s) => (err ? reject(err) : resolve(s))));
  await roundTrip(sftp, 0); // warm-up, so the baseline includes the steady state of a session
  const rssBefore = rssAfterGc();

  let fuzzing = true;
  let roundTrips = 0;
  const bystanderLoop = (async () => {
    while (fuzzing) {
      await roundTrip(sftp, ++roundTrips);
    }
  })();

  const startedAt = performance.now();
  const perConnection = Math.ceil(PACKETS / CONNECTIONS);
  const reports: FuzzReport[] = await Promise.all(
    Array.from({ length: CONNECTIONS }, async (_, c) => {
      const client = await connect('fuzz', fuzzKey);
      try {
        return await fuzzSftp({
          seed: SEED + c,
          packets: perConnection,
          source: {
            open: () => new Promise<ClientChannel>((resolve, reject) => client.subsys('sftp', (err, ch) => (err ? reject(err) : resolve(ch)))),
          },
        });
      } finally {
        client.end();
      }
    }),
  );
  fuzzing = false;
  await bystanderLoop;
  const seconds = (performance.now() - startedAt) / 1000;
  await roundTrip(sftp, ++roundTrips); // still fine afterwards
  bystander.end();
  await new Promise((r) => setTimeout(r, 500)); // let the server tear the fuzzed sessions down
  const rssAfter = rssAfterGc();

  const sum = (pick: (r: FuzzReport) => number) => reports.reduce((n, r) => n + pick(r), 0);
  const merge = (pick: (r: FuzzReport) => Record<number, number>) => {
    const out: Record<number, number> = {};
    for (const r of reports) for (const [k, v] of Object.entries(pick(r))) out[Number(k)] = (out[Number(k)] ?? 0) + v;
    return out;
  };
  const keys = await allKeys();
  const escaped = keys.filter((k) => !k.startsWith('fuzz/') && !k.startsWith('other/'));
  console.log(
    [
      `seed ${SEED}: ${sum((r) => r.packets)} packets (${sum((r) => r.malformed)} malformed) in ${seconds.toFixed(1)} s over ${sum((r) => r.channels)} channels (${sum((r) => r.closedByServer)} closed by the server)`,
      `replies by type ${JSON.stringify(merge((r) => r.replies))}; statuses ${JSON.stringify(merge((r) => r.statuses))}; unanswered ${sum((r) => r.unanswered)}`,
      `bystander round trips ${roundTrips}, all sha256-equal`,
      `RSS after GC ${(rssBefore / MiB).toFixed(0)} MiB → ${(rssAfter / MiB).toFixed(0)} MiB; ${keys.length} objects in the bucket, ${escaped.length} outside the users' prefixes`,
    ].join('\n'),
  );

  assert.ok(roundTrips >= 2, 'the other user kept transferring during the fuzzing');
  assert.deepEqual(escaped, [], 'no object outside the two users\' prefixes');
  assert.ok(rssAfter - rssBefore < 64 * MiB, `RSS grew by ${((rssAfter - rssBefore) / MiB).toFixed(0)} MiB`);
  assert.equal(sum((r) => r.unanswered), 0, 'every well-formed request on an open channel is answered');
});
