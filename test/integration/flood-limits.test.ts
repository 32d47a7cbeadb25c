/**
 * One careless or hostile session against the real CLI (`s3sftp serve` as a child process, so its
 * memory can be read from /proc): pipelined WRITEs while S3 is stalled, READs whose replies are
 * never read, and a flood of OPENs and STATs while another user works. The server's RSS stays
 * bounded (sftp.maxQueuedWriteBytes, unread replies, sftp.uploadMemoryBudget) and the other user's
 * STAT stays fast (s3.maxRequestsPerSession). The figures are printed; docs/security.md quotes them.
 */
import { after, afterEach, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Duplex } from 'node:stream';
import ssh2 from 'ssh2';
import type { SwiftS3 } from '../../dev/swift.ts';
import { createBucket, makeClientKey, s3Server, userYaml } from '../support/harness.ts';
import { startSlowProxy, type SlowProxy } from '../support/slow-proxy.ts';
import { startCliServer, type CliServer } from '../support/cli-server.ts';
import { connectRaw, FX, FXF, handleOf, type RawSftp } from '../support/sftp-raw.ts';
import { scrape } from '../support/prometheus.ts';

const MiB = 1024 ** 2;
const UNLIMITED = 1024 ** 3;

let s3: SwiftS3;
let proxy: SlowProxy;
let bucket: string;
let work: string;
const keys: Record<string, string> = {};
const children = new Set<ChildProcess>();
const clients = new Set<{ end(): void }>();

before(async () => {
  s3 = await s3Server();
  proxy = await startSlowProxy({ target: s3.endpoint, bytesPerSecond: UNLIMITED });
  bucket = await createBucket(s3);
  work = await mkdtemp(join(tmpdir(), 's3sftp-flood-'));
  await mkdir(join(work, 'users'));
  for (const name of ['mallory', 'bob']) {
    keys[name] = await makeClientKey(work, name);
    await writeFile(join(work, 'users', `${name}.yaml`), await userYaml({ username: name, keyFile: keys[name]!, keyPrefix: `${name}/` }));
  }
});

afterEach(() => {
  for (const c of clients) c.end();
  clients.clear();
  for (const child of children) child.kill('SIGKILL');
  children.clear();
  proxy.setRate(UNLIMITED);
});

after(async () => {
  await proxy?.close();
  await s3?.stop();
  await rm(work, { recursive: true, force: true });
});

/** Starts `s3sftp serve` with S3 behind the proxy. */
async function startCli(env: Record<string, string> = {}): Promise<CliServer> {
  const cli = await startCliServer({ s3, endpoint: proxy.endpoint, bucket, dir: work, env: { S3SFTP_DEFENDER_TRUSTEDCIDRS: '127.0.0.0/8', ...env } });
  children.add(cli.child);
  return cli;
}

/** The server's resident memory in MiB (VmRSS of /proc/PID/status). */
async function rssMiB(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = Number(/VmRSS:\s+(\d+)\s+kB/.exec(status)?.[1]);
  return Math.round((kb / 1024) * 10) / 10;
}

/** The highest RSS seen while `work` runs (sampled every 100 ms). */
async function peakRss(pid: number, work: Promise<unknown>): Promise<number> {
  let peak = await rssMiB(pid);
  let done = false;
  void work.finally(() => (done = true));
  while (!done) {
    peak = Math.max(peak, await rssMiB(pid));
    await sleep(100);
  }
  return Math.max(peak, await rssMiB(pid));
}

/** An SFTP channel as a raw stream, for floods that ignore replies; plus the session's RawSftp for setup. */
async function rawChannel(port: number, username: string): Promise<{ channel: Duplex; end(): void }> {
  const client = new ssh2.Client();
  await new Promise<void>((resolve, reject) => {
    client.once('ready', resolve).once('error', reject);
    client.connect({ host: '127.0.0.1', port, username, privateKey: readFileSync(keys[username]!) });
  });
  const channel = await new Promise<Duplex>((resolve, reject) =>
    client.subsys('sftp', (err: Error | undefined, stream: unknown) => (err ? reject(err) : resolve(stream as Duplex))),
  );
  const c = { channel, end: () => client.end() };
  clients.add(c);
  return c;
}

function packet(type: number, id: number, ...fields: Buffer[]): Buffer {
  const head = Buffer.alloc(9);
  const body = Buffer.concat(fields);
  head.writeUInt32BE(5 + body.length, 0);
  head[4] = type;
  head.writeUInt32BE(id, 5);
  return Buffer.concat([head, body]);
}
const u32 = (v: number) => Buffer.from([v >>> 24, (v >>> 16) & 255, (v >>> 8) & 255, v & 255]);
const u64 = (v: number) => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(v));
  return b;
};
const str = (s: string | Buffer) => {
  const b = typeof s === 'string' ? Buffer.from(s) : s;
  return Buffer.concat([u32(b.length), b]);
};
const T = { INIT: 1, OPEN: 3, READ: 5, WRITE: 6, STAT: 17 };

/**
 * Opens the channel's SFTP session and a file, replies read by a RawSftp-free parser: returns the
 * handle. The stream is then left to the flood, whose replies nobody reads.
 */
async function openOn(channel: Duplex, path: string, flags: number): Promise<Buffer> {
  let buf = Buffer.alloc(0);
  const replies: Buffer[] = [];
  const onData = (chunk: Buffer) => {
    buf = Buffer.concat([buf, chunk]);
    while (buf.length >= 4 && buf.length >= 4 + buf.readUInt32BE(0)) {
      replies.push(buf.subarray(4, 4 + buf.readUInt32BE(0)));
      buf = buf.subarray(4 + buf.readUInt32BE(0));
    }
  };
  channel.on('data', onData);
  const init = Buffer.alloc(9);
  init.writeUInt32BE(5, 0);
  init[4] = T.INIT;
  init.writeUInt32BE(3, 5);
  channel.write(init);
  channel.write(packet(T.OPEN, 1, str(path), u32(flags), u32(0)));
  for (let i = 0; i < 100 && replies.length < 2; i++) await sleep(50);
  channel.off('data', onData);
  const reply = replies[1];
  assert.ok(reply && reply[0] === 102, `OPEN ${path} failed: ${reply?.toString('hex')}`);
  return reply.subarray(9, 9 + reply.readUInt32BE(5));
}

/**
 * Writes `count` packets as fast as the SSH window lets them through, never reading a reply.
 * Stops early once the window stays closed for `stallMs` (the server stopped reading): returns
 * how many went out.
 */
async function pump(channel: Duplex, count: number, make: (i: number) => Buffer, stallMs = 3000): Promise<number> {
  for (let i = 0; i < count; i++) {
    if (channel.write(make(i))) continue;
    const drained = await Promise.race([
      new Promise<boolean>((resolve) => channel.once('drain', () => resolve(true))),
      sleep(stallMs).then(() => false),
    ]);
    if (!drained) return i + 1;
  }
  return count;
}

describe('memory stays bounded under pipelining floods', () => {
  test('2,000 × 255 KiB WRITEs with S3 stalled (the packet limit is 256 KiB): the server stops reading the channel', async () => {
    const cli = await startCli();
    const { channel } = await rawChannel(cli.sshPort, 'mallory');
    const handle = await openOn(channel, '/flood.bin', FXF.WRITE | FXF.CREAT | FXF.TRUNC);
    channel.pause(); // replies are never read
    proxy.setRate(1); // S3 takes nothing from now on
    await sleep(500);
    const before = await rssMiB(cli.pid);
    const chunk = Buffer.alloc(255 * 1024, 7);
    let sent = 0;
    const peak = await peakRss(cli.pid, pump(channel, 2000, (i) => packet(T.WRITE, 10 + i, str(handle), u64(i * chunk.length), str(chunk))).then((n) => (sent = n)));
    const metrics = await scrape(cli.metricsPort);
    const holds = metrics.value('s3sftp_sftp_channel_holds_total', { reason: 'session-writes' });
    console.log(`WRITE flood: ${sent} of 2000 × 255 KiB sent before the window stayed shut; RSS ${before} → peak ${peak} MiB (+${(peak - before).toFixed(1)}); holds(session-writes)=${holds}`);
    assert.ok(sent < 2000, 'the server kept reading while S3 was stalled');
    // 32 MiB of queued WRITEs + 5 parts of 5 MiB + the 8 MiB window, plus the runtime's slack (before: +540 MiB).
    assert.ok(peak - before < 160, `RSS grew by ${peak - before} MiB`);
    assert.ok(holds >= 1, 's3sftp_sftp_channel_holds_total{reason="session-writes"} did not count the hold');
  });

  test('eight sessions flooding WRITEs with S3 stalled and a 16 MiB sftp.uploadMemoryBudget: part memory stays within it', async () => {
    const cli = await startCli({ S3SFTP_SFTP_UPLOADMEMORYBUDGET: '16MiB' });
    const sessions = [];
    for (let i = 0; i < 8; i++) {
      const { channel } = await rawChannel(cli.sshPort, 'mallory');
      sessions.push({ channel, handle: await openOn(channel, `/budget-${i}.bin`, FXF.WRITE | FXF.CREAT | FXF.TRUNC) });
    }
    for (const { channel } of sessions) channel.pause();
    proxy.setRate(1);
    await sleep(500);
    const before = await rssMiB(cli.pid);
    const chunk = Buffer.alloc(255 * 1024, 7);
    const flood = (channel: Duplex, handle: Buffer) => pump(channel, 2000, (i) => packet(T.WRITE, 10 + i, str(handle), u64(i * chunk.length), str(chunk)));
    let sent: number[] = [];
    const peak = await peakRss(cli.pid, Promise.all(sessions.map((s) => flood(s.channel, s.handle))).then((n) => (sent = n)));
    const metrics = await scrape(cli.metricsPort);
    const held = metrics.value('s3sftp_upload_part_memory_bytes') / MiB;
    const peakHeld = metrics.value('s3sftp_upload_part_memory_peak_bytes') / MiB;
    const waiting = metrics.value('s3sftp_upload_memory_waiting');
    const holds = metrics.value('s3sftp_sftp_channel_holds_total', { reason: 'session-writes' });
    console.log(`eight-session WRITE flood, 16 MiB budget: ${sent.join(' + ')} WRITEs accepted; RSS ${before} → peak ${peak} MiB (+${(peak - before).toFixed(1)}); part memory ${held.toFixed(2)} MiB now, peak ${peakHeld.toFixed(2)} MiB; ${waiting} uploads waiting; holds(session-writes)=${holds}`);
    // Before the budget was hard: 64 MiB in use under a 16 MiB budget with only two sessions.
    assert.ok(peakHeld <= 16, `part memory peaked at ${peakHeld} MiB`);
    assert.ok(peakHeld > 0, 'no part memory was reserved');
    assert.ok(waiting >= 1, 's3sftp_upload_memory_waiting never showed an upload waiting');
    assert.ok(sent.every((n) => n < 2000), 'a session kept being read');
    assert.ok(peak - before < 400, `RSS grew by ${peak - before} MiB`);
  });

  test('eight parallel 24 MiB uploads under a 1 MiB sftp.uploadMemoryBudget all complete (waiting never deadlocks)', async () => {
    const cli = await startCli({ S3SFTP_SFTP_UPLOADMEMORYBUDGET: '1MiB' });
    const sessions = [];
    for (let i = 0; i < 8; i++) {
      const s = await connectRaw(cli.sshPort, 'mallory', keys.mallory!);
      clients.add(s);
      sessions.push(s);
    }
    const started = performance.now();
    await Promise.all(sessions.map((s, i) => putFile(s.sftp, `/tight-${i}.bin`, 24 * MiB)));
    const seconds = (performance.now() - started) / 1000;
    for (let i = 0; i < 8; i++) {
      const attrs = (await sessions[0]!.sftp.stat(`/tight-${i}.bin`)) as { type: string; attrs?: { size?: number } };
      assert.equal(attrs.attrs?.size, 24 * MiB, `/tight-${i}.bin`);
    }
    const metrics = await scrape(cli.metricsPort);
    const peakHeld = metrics.value('s3sftp_upload_part_memory_peak_bytes') / MiB;
    console.log(`eight 24 MiB uploads, 1 MiB budget: done in ${seconds.toFixed(1)} s; part memory peak ${peakHeld.toFixed(2)} MiB (one 5 MiB part let through at a time)`);
    assert.equal(metrics.value('s3sftp_upload_part_memory_bytes'), 0);
  });

  test('2,000 × 255 KiB READs whose replies are never read: READs wait for the client', async () => {
    const cli = await startCli();
    // A 16 MiB file to read from, stored through the server.
    const setup = await connectRaw(cli.sshPort, 'mallory', keys.mallory!);
    clients.add(setup);
    await putFile(setup.sftp, '/source.bin', 16 * MiB);
    const { channel } = await rawChannel(cli.sshPort, 'mallory');
    const handle = await openOn(channel, '/source.bin', FXF.READ);
    channel.pause(); // replies are never read
    await sleep(500);
    const before = await rssMiB(cli.pid);
    const len = 255 * 1024;
    const reads = pump(channel, 2000, (i) => packet(T.READ, 10 + i, str(handle), u64((i * len) % (16 * MiB - len)), u32(len)));
    // Every READ fits in the window (2,000 × ~30 bytes): give the server time to answer what it will.
    const peak = await peakRss(cli.pid, reads.then(() => sleep(5000)));
    const metrics = await scrape(cli.metricsPort);
    const holds = metrics.value('s3sftp_sftp_channel_holds_total', { reason: 'unread-replies' });
    console.log(`READ flood: RSS ${before} → peak ${peak} MiB (+${(peak - before).toFixed(1)}); holds(unread-replies)=${holds}`);
    // At most 64 READs of 255 KiB in flight (before: every READ answered into ssh2's buffer, +210 MiB in 5 s and growing).
    assert.ok(peak - before < 100, `RSS grew by ${peak - before} MiB`);
    assert.ok(holds >= 1, 's3sftp_sftp_channel_holds_total{reason="unread-replies"} did not count the hold');
  });
});

describe('fair S3 access', () => {
  test("another user's STAT during a 10,000-request OPEN/STAT flood stays fast", async () => {
    const cli = await startCli();
    const bobSession = await connectRaw(cli.sshPort, 'bob', keys.bob!);
    clients.add(bobSession);
    const bob = bobSession.sftp;
    await putFile(bob, '/hello.txt', 1024);
    const { channel } = await rawChannel(cli.sshPort, 'mallory');
    await openOn(channel, '/', FXF.READ).catch(() => undefined); // INIT; opening "/" for reading is refused, which is fine
    channel.resume(); // replies are read and dropped: the flood is about requests
    const before = await rssMiB(cli.pid);
    // Half OPENs (each a HEAD, capped at 256 open at once), half STATs (no cap but s3.maxRequestsPerSession).
    const flood = pump(channel, 10_000, (i) =>
      i % 2 === 0 ? packet(T.OPEN, 10 + i, str(`/missing-${i}`), u32(FXF.READ), u32(0)) : packet(T.STAT, 10 + i, str(`/missing-${i}`)),
    );
    await flood;
    await sleep(300); // the flood is queued at the server
    const latencies: number[] = [];
    for (let i = 0; i < 5; i++) {
      const start = performance.now();
      const reply = await bob.stat('/hello.txt');
      latencies.push(Math.round(performance.now() - start));
      assert.equal(reply.type, 'attrs', `bob's STAT failed during the flood: ${JSON.stringify(reply)}`);
    }
    const after = await rssMiB(cli.pid);
    const metrics = await scrape(cli.metricsPort);
    const waited = metrics.value('s3sftp_storage_operations_waited_total', { scope: 'session' });
    console.log(`OPEN/STAT flood: bob's STAT ${latencies.join(', ')} ms during the flood; RSS ${before} → ${after} MiB; waited(session)=${waited}`);
    assert.ok(Math.max(...latencies) < 5000, `bob's STAT took ${Math.max(...latencies)} ms`);
    assert.ok(waited > 0, 's3sftp_storage_operations_waited_total{scope="session"} did not count the flood');
  });
});

/** Uploads `size` bytes to `path` with the raw client (WRITEs of 64 KiB, in order). */
async function putFile(sftp: RawSftp, path: string, size: number): Promise<void> {
  const handle = handleOf(await sftp.open(path, FXF.WRITE | FXF.CREAT | FXF.TRUNC));
  const chunk = Buffer.alloc(64 * 1024, 3);
  const writes: Promise<unknown>[] = [];
  for (let offset = 0; offset < size; offset += chunk.length) writes.push(sftp.write(handle, offset, chunk.subarray(0, Math.min(chunk.length, size - offset))));
  for (const r of await Promise.all(writes)) assert.equal((r as { code?: number }).code, FX.OK);
  assert.equal(((await sftp.close(handle)) as { code: number }).code, FX.OK);
}
