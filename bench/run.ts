/**
 * `make bench` / `npm run bench`: s3sftp against its peers on this machine, loopback only, every
 * system on the same Swift S3 server, systems alternated round by round, medians of the rounds.
 * Writes bench/results/latest.md (tables with ratios against the baselines of the same run) and
 * bench/results/latest.png (throughput and server RSS over time, last round of the big-file part).
 *
 * Parts (BENCH_ONLY=big,small,memory,listing,sessions; default all):
 *   big       BENCH_MIB (1024) put and get with OpenSSH sftp: s3sftp, rclone serve sftp, OpenSSH
 *             sshd + sftp-server on local disk, and the SDK straight to S3 — MB/s and server CPU-s/GiB
 *   small     BENCH_SMALL_FILES (1000) files of 4 KiB through an S3 proxy adding BENCH_LATENCY_MS (20)
 *             per request: put, ls, get, rm in sftp batches — files/s; S3 requests per SFTP operation
 *   memory    BENCH_MEM_UPLOADS (8) concurrent uploads of BENCH_MEM_MIB (1024) — peak RSS vs the bound
 *   listing   a BENCH_LIST_OBJECTS (100000) object directory — first READDIR reply, total, vs raw ListObjectsV2
 *   sessions  BENCH_IDLE_SESSIONS (500) idle + BENCH_ACTIVE_SESSIONS (20) transferring — RSS, login p50/p99
 * BENCH_ROUNDS (3) rounds for big and small (BENCH_SMALL_ROUNDS for small alone). BENCH_COMPARE_ROOT=/other/checkout adds that s3sftp to the big
 * part (before/after a change, same run); BENCH_SERVER_NODE_ARGS passes Node/V8 flags to every s3sftp server started,
 * and S3SFTP_* variables set for the bench reach every s3sftp server too (a setting under trial). Needs dev/system-deps.sh (rclone, openssh-server, gnuplot-nox).
 */
import { mkdtemp, mkdir, rm, writeFile, readFile, open } from 'node:fs/promises';
import { createReadStream } from 'node:fs';
import { execFileSync, spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import {
  S3Client,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  GetObjectCommand,
  UploadPartCommand,
  PutObjectCommand,
  ListObjectsV2Command,
} from '@aws-sdk/client-s3';
import { createBucket, s3ClientFor } from '../test/support/harness.ts';
import { startSwift, type SwiftS3 } from '../dev/swift.ts';
import { startS3LatencyProxy, countByKind, formatCounts, type S3LatencyProxy } from '../test/support/s3-latency-proxy.ts';
import { median, percentile, fmt, ratio, markdownTable, mbps } from './lib/stats.ts';
import { groupCpuSeconds, groupRssBytes, settledRssBytes, machineBusySeconds, RssSampler } from './lib/procs.ts';
import { startS3sftp, startRclone, startSshd, writeClientKey, type SftpSystem, type ClientKey } from './lib/systems.ts';
import { runSftp, check, ioChars, storageWrites, openSsh2Sftp, p, type Ssh2Session } from './lib/client.ts';

const MIB = 1024 * 1024;
const GIB = 1024 * MIB;
const env = (name: string, def: number) => Number(process.env[name] ?? def);
const CFG = {
  rounds: env('BENCH_ROUNDS', 3),
  smallRounds: env('BENCH_SMALL_ROUNDS', env('BENCH_ROUNDS', 3)),
  mib: env('BENCH_MIB', 1024),
  smallFiles: env('BENCH_SMALL_FILES', 1000),
  latencyMs: env('BENCH_LATENCY_MS', 20),
  memUploads: env('BENCH_MEM_UPLOADS', 8),
  memMib: env('BENCH_MEM_MIB', 1024),
  listObjects: env('BENCH_LIST_OBJECTS', 100_000),
  idleSessions: env('BENCH_IDLE_SESSIONS', 500),
  activeSessions: env('BENCH_ACTIVE_SESSIONS', 20),
  only: new Set((process.env.BENCH_ONLY ?? 'big,small,memory,listing,sessions').split(',').map((s) => s.trim())),
  /** s3sftp's defaults (src/config/load.ts); the direct SDK baseline and rclone use the same. */
  partSize: 16 * MIB,
  concurrency: 4,
  downloadPart: 8 * MIB,
};
const RESULTS = new URL('./results/', import.meta.url).pathname;

interface Ctx {
  s3: SwiftS3;
  client: S3Client;
  bucket: string;
  work: string;
  key: ClientKey;
  privateKey: string;
  report: string[];
  cleanup: (() => Promise<void>)[];
}

const log = (msg: string) => process.stderr.write(`bench: ${msg}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The systems in a different order each round, so no system always runs first (or after the same one). */
function rotate<T>(items: readonly T[], round: number): T[] {
  const k = round % items.length;
  return [...items.slice(k), ...items.slice(0, k)];
}

async function makeFile(path: string, bytes: number): Promise<void> {
  const chunk = randomBytes(4 * MIB);
  const fh = await open(path, 'w');
  for (let done = 0; done < bytes; done += chunk.length) await fh.write(chunk, 0, Math.min(chunk.length, bytes - done));
  await fh.close();
}

// ---------------------------------------------------------------- big files

interface Sample {
  t: number;
  rssMiB: number;
  mbps: number;
}

/** Runs one sftp transfer, measuring time, server CPU and a time series (client bytes, server RSS). */
async function measuredTransfer(ctx: Ctx, sys: SftpSystem, commands: string, dir: 'put' | 'get'): Promise<{ ms: number; cpu: number; machine: number; series: Sample[] }> {
  const cpu0 = groupCpuSeconds(sys.pid);
  const machine0 = machineBusySeconds();
  const series: Sample[] = [];
  let clientPid = 0;
  let last = { t: performance.now(), bytes: 0 };
  const t0 = performance.now();
  const timer = setInterval(() => {
    if (!clientPid) return;
    void ioChars(clientPid).then((io) => {
      const now = performance.now();
      const bytes = dir === 'put' ? io.read : io.written;
      if (bytes === 0) return;
      series.push({ t: (now - t0) / 1000, rssMiB: groupRssBytes(sys.pid) / MIB, mbps: mbps(bytes - last.bytes, now - last.t) });
      last = { t: now, bytes };
    });
  }, 250);
  const run = await runSftp(sys, ctx.key, commands, { cwd: ctx.work, workDir: ctx.work, onStart: (pid) => (clientPid = pid) });
  clearInterval(timer);
  check(run, `${sys.name} ${dir}`);
  const machine = machineBusySeconds() - machine0;
  await sleep(300); // sshd reaps its per-connection children; their CPU lands in its cutime
  return { ms: run.ms, cpu: groupCpuSeconds(sys.pid) - cpu0, machine, series };
}

async function bigFiles(ctx: Ctx): Promise<void> {
  const size = CFG.mib * MIB;
  const payload = join(ctx.work, 'payload.bin');
  await makeFile(payload, size);
  const s3sftp = await startS3sftp({ s3: ctx.s3, endpoint: ctx.s3.endpoint, bucket: ctx.bucket, dir: join(ctx.work, 'big-s3sftp'), key: ctx.key });
  const rclone = await startRclone({ s3: ctx.s3, endpoint: ctx.s3.endpoint, bucket: ctx.bucket, dir: join(ctx.work, 'big-rclone'), key: ctx.key, partSize: CFG.partSize, concurrency: CFG.concurrency });
  const sshd = await startSshd({ dir: join(ctx.work, 'big-sshd'), key: ctx.key });
  const systems: (SftpSystem | 'sdk')[] = [s3sftp, rclone, sshd, 'sdk'];
  // BENCH_COMPARE_ROOT: another checkout of s3sftp (e.g. the commit before a change) as one more system.
  const compareRoot = process.env.BENCH_COMPARE_ROOT;
  const other = compareRoot
    ? await startS3sftp({ s3: ctx.s3, endpoint: ctx.s3.endpoint, bucket: ctx.bucket, dir: join(ctx.work, 'big-other'), key: ctx.key, root: compareRoot, name: `s3sftp at ${compareRoot}` })
    : undefined;
  if (other) systems.push(other);
  // BENCH_BIG_SYSTEMS=s3sftp,compare (ids: s3sftp rclone sshd sdk compare) runs only those, e.g. for an A/B.
  const ids = new Map<SftpSystem | 'sdk', string>([[s3sftp, 's3sftp'], [rclone, 'rclone'], [sshd, 'sshd'], ['sdk', 'sdk'], ...(other ? [[other, 'compare'] as const] : [])]);
  const wanted = process.env.BENCH_BIG_SYSTEMS?.split(',').map((x) => x.trim());
  if (wanted) systems.splice(0, systems.length, ...systems.filter((x) => wanted.includes(ids.get(x)!)));
  type Row = { put: number[]; get: number[]; cpuPut: number[]; cpuGet: number[]; machinePut: number[]; machineGet: number[] };
  const rows = new Map<string, Row>();
  const empty = (): Row => ({ put: [], get: [], cpuPut: [], cpuGet: [], machinePut: [], machineGet: [] });
  const row = (name: string) => rows.get(name) ?? rows.set(name, empty()).get(name)!;
  const chart: Record<string, Sample[]> = {};
  try {
    for (let round = 0; round < CFG.rounds; round++) {
      for (const sys of rotate(systems, round)) {
        const back = join(ctx.work, 'back.bin');
        if (sys === 'sdk') {
          const up = await timed(() => directUpload(ctx.client, ctx.bucket, 'direct/payload.bin', payload));
          const down = await timed(() => directDownload(ctx.client, ctx.bucket, 'direct/payload.bin', size, back));
          const r = row('AWS SDK straight to S3');
          r.put.push(mbps(size, up.ms));
          r.get.push(mbps(size, down.ms));
          r.machinePut.push(up.machine / (size / GIB));
          r.machineGet.push(down.machine / (size / GIB));
          log(`big round ${round + 1}: sdk put ${fmt(mbps(size, up.ms))} get ${fmt(mbps(size, down.ms))} MB/s`);
        } else {
          const put = await measuredTransfer(ctx, sys, `put payload.bin ${sys.remoteDir}payload.bin\n`, 'put');
          const get = await measuredTransfer(ctx, sys, `get ${sys.remoteDir}payload.bin ${back}\n`, 'get');
          const r = row(sys.name);
          r.put.push(mbps(size, put.ms));
          r.get.push(mbps(size, get.ms));
          r.cpuPut.push(put.cpu / (size / GIB));
          r.cpuGet.push(get.cpu / (size / GIB));
          r.machinePut.push(put.machine / (size / GIB));
          r.machineGet.push(get.machine / (size / GIB));
          if (round === CFG.rounds - 1) {
            const offset = put.series.at(-1)?.t ?? 0;
            chart[sys.name] = [...put.series, ...get.series.map((s) => ({ ...s, t: s.t + offset + 0.25 }))];
          }
          log(`big round ${round + 1}: ${sys.name} put ${fmt(mbps(size, put.ms))} get ${fmt(mbps(size, get.ms))} MB/s, cpu ${fmt(put.cpu, 2)}/${fmt(get.cpu, 2)} s`);
        }
        await rm(back, { force: true });
      }
    }
  } finally {
    await Promise.all([s3sftp.stop(), rclone.stop(), sshd.stop(), other?.stop()]);
    await rm(payload, { force: true });
  }
  const m = (name: string) => {
    const r = rows.get(name) ?? empty();
    return { put: median(r.put), get: median(r.get), cpuPut: median(r.cpuPut), cpuGet: median(r.cpuGet), machinePut: median(r.machinePut), machineGet: median(r.machineGet) };
  };
  const me = m('s3sftp');
  const rc = m(rclone.name);
  const ssh = m(sshd.name);
  const sdk = m('AWS SDK straight to S3');
  const table = markdownTable(
    ['system', 'put MB/s', 'get MB/s', 'server CPU-s/GiB put', 'get', 'machine CPU-s/GiB put', 'get'],
    [
      [sshd.name + ' — SSH ceiling', fmt(ssh.put), fmt(ssh.get), fmt(ssh.cpuPut), fmt(ssh.cpuGet), fmt(ssh.machinePut), fmt(ssh.machineGet)],
      ['AWS SDK straight to S3 — S3 ceiling', fmt(sdk.put), fmt(sdk.get), '–', '–', fmt(sdk.machinePut), fmt(sdk.machineGet)],
      [`\`${rclone.name}\` — the peer`, fmt(rc.put), fmt(rc.get), fmt(rc.cpuPut), fmt(rc.cpuGet), fmt(rc.machinePut), fmt(rc.machineGet)],
      ['**s3sftp**', fmt(me.put), fmt(me.get), fmt(me.cpuPut), fmt(me.cpuGet), fmt(me.machinePut), fmt(me.machineGet)],
      ...(other ? [((o) => [other.name, fmt(o.put), fmt(o.get), fmt(o.cpuPut), fmt(o.cpuGet), fmt(o.machinePut), fmt(o.machineGet)])(m(other.name))] : []),
    ],
  );
  const ratios = markdownTable(
    ['s3sftp ÷', 'put', 'get', 'goal'],
    [
      ['rclone serve sftp (MB/s)', ratio(me.put, rc.put), ratio(me.get, rc.get), '≥ 1.5× / 1.5×'],
      ['AWS SDK straight to S3 (MB/s)', ratio(me.put, sdk.put), ratio(me.get, sdk.get), '≥ 0.8× / 0.9×'],
      ['OpenSSH sftp-server (CPU-s/GiB)', ratio(me.cpuPut, ssh.cpuPut), ratio(me.cpuGet, ssh.cpuGet), '≤ 1.3× / 1.3×'],
    ],
  );
  ctx.report.push(
    `## Big files: ${CFG.mib} MiB, OpenSSH sftp client, median of ${CFG.rounds} rounds`,
    '',
    `Upload parts ${CFG.partSize / MIB} MiB × ${CFG.concurrency}, download ranges ${CFG.downloadPart / MIB} MiB × ${CFG.concurrency} (s3sftp defaults; the SDK baseline and rclone use the same). Server CPU = user+sys of the server's process group during the transfer. Machine CPU = every core's busy time during it (/proc/stat): client, server and the S3 server together, and anything else running; when a transfer keeps the machine busy, throughput between two systems goes as the inverse of their machine CPU per GiB (docs/performance.md, "Session 9: the put's ceiling on two cores").`,
    '',
    table,
    '',
    ratios,
    '',
    '![throughput and server RSS over time, last round](latest.png)',
    '',
  );
  await renderChart(chart);
}

/** Wall ms and the machine's busy CPU seconds over `fn`. */
async function timed(fn: () => Promise<void>): Promise<{ ms: number; machine: number }> {
  const start = performance.now();
  const machine0 = machineBusySeconds();
  await fn();
  return { ms: performance.now() - start, machine: machineBusySeconds() - machine0 };
}

/** The S3 ceiling for uploads: SDK multipart with the same part size and concurrency. */
async function directUpload(client: S3Client, bucket: string, key: string, file: string): Promise<void> {
  const { UploadId } = await client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: key }));
  const parts: { PartNumber: number; ETag?: string }[] = [];
  const inFlight = new Set<Promise<void>>();
  let partNumber = 0;
  let buffered: Buffer[] = [];
  let size = 0;
  const send = (body: Buffer, n: number) => {
    const tracked: Promise<void> = client
      .send(new UploadPartCommand({ Bucket: bucket, Key: key, UploadId, PartNumber: n, Body: body }))
      .then((r) => void parts.push({ PartNumber: n, ETag: r.ETag }))
      .finally(() => inFlight.delete(tracked));
    inFlight.add(tracked);
  };
  for await (const data of createReadStream(file, { highWaterMark: MIB })) {
    buffered.push(data as Buffer);
    size += (data as Buffer).length;
    if (size >= CFG.partSize) {
      send(Buffer.concat(buffered), ++partNumber);
      buffered = [];
      size = 0;
      while (inFlight.size >= CFG.concurrency) await Promise.race(inFlight);
    }
  }
  if (size > 0) send(Buffer.concat(buffered), ++partNumber);
  await Promise.all(inFlight);
  parts.sort((a, b) => a.PartNumber - b.PartNumber);
  await client.send(new CompleteMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId, MultipartUpload: { Parts: parts } }));
}

/** The S3 ceiling for downloads: ranged GETs of the download part size, `concurrency` at once, written in order. */
async function directDownload(client: S3Client, bucket: string, key: string, total: number, out: string): Promise<void> {
  const part = CFG.downloadPart;
  const fh = await open(out, 'w');
  try {
    for (let offset = 0; offset < total; offset += part * CFG.concurrency) {
      const ranges = [];
      for (let i = 0; i < CFG.concurrency && offset + i * part < total; i++) {
        const start = offset + i * part;
        const end = Math.min(total, start + part) - 1;
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
  }
}

/** gnuplot (Debian gnuplot-nox) draws client throughput and server RSS against time, one line per system. */
async function renderChart(chart: Record<string, Sample[]>): Promise<void> {
  const names = Object.keys(chart);
  if (names.length === 0) return;
  const dataFiles: string[] = [];
  for (const [i, name] of names.entries()) {
    const f = join(RESULTS, `.chart-${i}.tsv`);
    await writeFile(f, chart[name]!.map((s) => `${s.t.toFixed(2)}\t${s.mbps.toFixed(1)}\t${s.rssMiB.toFixed(1)}`).join('\n') + '\n');
    dataFiles.push(f);
  }
  const plot = (col: number) => dataFiles.map((f, i) => `'${f}' using 1:${col} with lines lw 2 title '${names[i]!.replace(/'/g, '')}'`).join(', ');
  const script = [
    `set terminal png size 1000,700`,
    `set output '${join(RESULTS, 'latest.png')}'`,
    `set multiplot layout 2,1 title 'put then get of ${CFG.mib} MiB (last round)'`,
    `set xlabel 'seconds'`,
    `set ylabel 'client MB/s'`,
    `set key top right`,
    `plot ${plot(2)}`,
    `set ylabel 'server RSS MiB'`,
    `plot ${plot(3)}`,
    `unset multiplot`,
  ].join('\n');
  try {
    execFileSync('gnuplot', [], { input: script });
  } catch (err) {
    log(`chart not drawn (gnuplot: ${(err as Error).message})`);
  } finally {
    for (const f of dataFiles) await rm(f, { force: true });
  }
}

// ---------------------------------------------------------------- small files

async function smallFiles(ctx: Ctx): Promise<void> {
  const n = CFG.smallFiles;
  const proxy = await startS3LatencyProxy(ctx.s3.endpoint, { delayMs: CFG.latencyMs });
  ctx.cleanup.push(() => proxy.close());
  const src = join(ctx.work, 'small-src');
  await mkdir(src, { recursive: true });
  for (let i = 0; i < n; i++) await writeFile(join(src, `f${String(i).padStart(5, '0')}.dat`), randomBytes(4096));
  const s3sftp = await startS3sftp({ s3: ctx.s3, endpoint: proxy.endpoint, bucket: ctx.bucket, dir: join(ctx.work, 'small-s3sftp'), key: ctx.key });
  const rclone = await startRclone({ s3: ctx.s3, endpoint: proxy.endpoint, bucket: ctx.bucket, dir: join(ctx.work, 'small-rclone'), key: ctx.key, partSize: CFG.partSize, concurrency: CFG.concurrency });
  const phases = ['put', 'ls', 'get', 'rm'] as const;
  const rate = new Map<string, Record<(typeof phases)[number], number[]>>();
  // Server CPU per file (user+sys of the server's process group during the phase, login included):
  // what a small-file workload costs a pod, beside how fast it goes.
  const cpuMsPerFile = new Map<string, Record<(typeof phases)[number], number[]>>();
  const requests: Record<string, number[]> = { session: [], put: [], ls: [], get: [], rm: [] };
  const kinds: Record<string, string> = {};
  try {
    // What a session costs on its own (login, realpath), subtracted from each phase's requests.
    const mark0 = proxy.requests.length;
    check(await runSftp(s3sftp, ctx.key, 'pwd\n', { cwd: ctx.work, workDir: ctx.work }), 'empty session');
    const sessionCost = proxy.since(mark0).length;
    requests.session!.push(sessionCost);
    for (let round = 0; round < CFG.smallRounds; round++) {
      for (const sys of rotate([s3sftp, rclone], round)) {
        const dir = `small-${round}`;
        const dst = join(ctx.work, `small-dst-${round}`);
        await mkdir(dst, { recursive: true });
        check(await runSftp(sys, ctx.key, `mkdir ${dir}\n`, { cwd: src, workDir: ctx.work }), `${sys.name} mkdir`);
        const r = rate.get(sys.name) ?? rate.set(sys.name, { put: [], ls: [], get: [], rm: [] }).get(sys.name)!;
        const cpu = cpuMsPerFile.get(sys.name) ?? cpuMsPerFile.set(sys.name, { put: [], ls: [], get: [], rm: [] }).get(sys.name)!;
        const cmds: Record<(typeof phases)[number], string> = {
          put: `cd ${dir}\nput *\n`,
          ls: `ls -l ${dir}\n`,
          get: `lcd ${dst}\nget ${dir}/*\n`,
          rm: `rm ${dir}/*\nrmdir ${dir}\n`,
        };
        for (const phase of phases) {
          const mark = proxy.requests.length;
          const cpu0 = groupCpuSeconds(sys.pid);
          const run = check(await runSftp(sys, ctx.key, cmds[phase], { cwd: src, workDir: ctx.work }), `${sys.name} small ${phase}`);
          r[phase].push(n / (run.ms / 1000));
          await sleep(300); // work the server finishes after the client left (a held upload's last request, logging)
          cpu[phase].push(((groupCpuSeconds(sys.pid) - cpu0) * 1000) / n);
          if (sys === s3sftp) {
            requests[phase]!.push((proxy.since(mark).length - sessionCost) / n);
            kinds[phase] = formatCounts(countByKind(proxy.since(mark)));
          }
        }
        log(`small round ${round + 1}: ${sys.name} ${phases.map((ph) => `${ph} ${fmt(r[ph].at(-1))}`).join(' ')} files/s`);
        if (sys === s3sftp) log(`small round ${round + 1}: s3sftp S3 requests ${phases.map((ph) => `${ph} [${kinds[ph]}]`).join(' ')}`);
        await rm(dst, { recursive: true, force: true });
      }
    }
    const perOp = await requestsPerOperation(ctx, s3sftp, proxy);
    const me = rate.get('s3sftp')!;
    const rc = rate.get(rclone.name)!;
    ctx.report.push(
      `## Small files: ${n} × 4 KiB, S3 behind a proxy adding ${CFG.latencyMs} ms per request, median of ${CFG.smallRounds} rounds`,
      '',
      'One OpenSSH `sftp -b` session per phase: `put *`, `ls -l`, `get dir/*`, `rm dir/*` + `rmdir`.',
      '',
      markdownTable(
        ['system', 'put files/s', 'ls files/s', 'get files/s', 'rm files/s'],
        [
          [`\`${rclone.name}\``, ...phases.map((ph) => fmt(median(rc[ph])))],
          ['**s3sftp**', ...phases.map((ph) => fmt(median(me[ph])))],
          ['s3sftp ÷ rclone (goal ≥ 2×)', ...phases.map((ph) => ratio(median(me[ph]), median(rc[ph])))],
          ['s3sftp S3 requests per file', ...phases.map((ph) => fmt(median(requests[ph]!), 2))],
          [`\`${rclone.name}\` server CPU ms per file`, ...phases.map((ph) => fmt(median(cpuMsPerFile.get(rclone.name)![ph]), 2))],
          ['s3sftp server CPU ms per file', ...phases.map((ph) => fmt(median(cpuMsPerFile.get('s3sftp')![ph]), 2))],
        ],
      ),
      '',
      `An sftp session on its own (login, realpath, \`pwd\`) costs s3sftp ${sessionCost} S3 request(s); subtracted above.`,
      'Server CPU per file is user+sys of the server process during the phase, its one login included, divided by the files (docs/performance.md, "Server CPU per small file").',
      `S3 requests of the last round by kind (session included): ${phases.map((ph) => `${ph} ${kinds[ph]}`).join('; ')}.`,
      '',
      `### S3 requests per SFTP operation (s3sftp, counted at the proxy, ssh2 SFTP client, ${CFG.latencyMs} ms per request)`,
      '',
      markdownTable(['operation', 'SFTP requests', 'S3 requests', 'by kind', 'ms'], perOp.map((o) => [o.name, o.sftp, String(o.count), o.kinds, fmt(o.ms, 0)])),
      '',
    );
  } finally {
    await Promise.all([s3sftp.stop(), rclone.stop()]);
  }
}

/** Each SFTP operation alone, with the S3 requests it made (nothing else runs meanwhile). */
async function requestsPerOperation(ctx: Ctx, sys: SftpSystem, proxy: S3LatencyProxy): Promise<{ name: string; sftp: string; count: number; kinds: string; ms: number }[]> {
  const session = await openSsh2Sftp(sys, ctx.privateKey);
  const s = session.sftp;
  const body = randomBytes(4096);
  // A directory with a few more names than one READDIR page holds, made straight in S3 (not counted).
  const listing = 'ops-list';
  await Promise.all(
    Array.from({ length: 150 }, (_, i) => ctx.client.send(new PutObjectCommand({ Bucket: ctx.bucket, Key: `bench/${listing}/n${String(i).padStart(4, '0')}`, Body: 'x' }))),
  );
  const out: { name: string; sftp: string; count: number; kinds: string; ms: number }[] = [];
  const op = async (name: string, sftp: string, fn: () => Promise<void>) => {
    await sleep(50);
    const mark = proxy.requests.length;
    const { ms } = await timed(fn);
    await sleep(100); // requests the server makes after replying (none expected) are still counted
    const reqs = proxy.since(mark);
    out.push({ name, sftp, count: reqs.length, kinds: formatCounts(countByKind(reqs)), ms });
  };
  const upload = async (path: string) => {
    const h = await p.open(s, path, 'w');
    await p.write(s, h, body);
    await p.close(s, h);
  };
  try {
    await op('new file upload (4 KiB)', 'OPEN(create) WRITE CLOSE', () => upload('ops-a.dat'));
    await op('overwrite (4 KiB)', 'OPEN(create,trunc) WRITE CLOSE', () => upload('ops-a.dat'));
    await op('download (4 KiB)', 'OPEN(read) FSTAT READ CLOSE', async () => {
      const h = await p.open(s, 'ops-a.dat', 'r');
      await p.fstat(s, h);
      await p.read(s, h, 32768);
      await p.close(s, h);
    });
    await op('stat of a file', 'STAT', () => p.stat(s, 'ops-a.dat'));
    await op('rename of a file', 'RENAME', () => p.rename(s, 'ops-a.dat', 'ops-b.dat'));
    await op('remove a file', 'REMOVE', () => p.unlink(s, 'ops-b.dat'));
    await op('mkdir', 'MKDIR', () => p.mkdir(s, 'ops-dir'));
    await op('rmdir (empty)', 'RMDIR', () => p.rmdir(s, 'ops-dir'));
    await op('one READDIR page (150-name directory)', 'OPENDIR READDIR', async () => {
      const h = await p.opendir(s, listing);
      await p.readdir(s, h);
      await p.close(s, h);
    });
  } finally {
    session.client.end();
  }
  return out;
}

// ---------------------------------------------------------------- memory

async function memory(ctx: Ctx): Promise<void> {
  const size = CFG.memMib * MIB;
  const file = join(ctx.work, 'mem.bin');
  await makeFile(file, size);
  const sys = await startS3sftp({ s3: ctx.s3, endpoint: ctx.s3.endpoint, bucket: ctx.bucket, dir: join(ctx.work, 'mem-s3sftp'), key: ctx.key, name: 's3sftp' });
  try {
    await sleep(500);
    const idle = groupRssBytes(sys.pid);
    // du exits non-zero when another process removes a file under it meanwhile (/tmp is shared); its total still counts.
    const du = (path: string) => Number(spawnSync('du', ['-sb', path], { encoding: 'utf8' }).stdout.split('\t')[0]);
    await mkdir(sys.dataDir, { recursive: true });
    const before = { data: du(sys.dataDir), tmp: du(tmpdir()), writes: await storageWrites(sys.pid) };
    const sampler = new RssSampler(sys.pid, 100);
    const runs = await Promise.all(
      Array.from({ length: CFG.memUploads }, (_, i) => runSftp(sys, ctx.key, `put mem.bin mem-${i}.bin\n`, { cwd: ctx.work, workDir: ctx.work })),
    );
    sampler.stop();
    const after = { data: du(sys.dataDir), tmp: du(tmpdir()), writes: await storageWrites(sys.pid) };
    const failed = runs.filter((r) => r.code !== 0).length;
    const bound = CFG.memUploads * CFG.partSize * (CFG.concurrency + 1) + 96 * MIB;
    const slowest = Math.max(...runs.map((r) => r.ms));
    ctx.report.push(
      `## Memory: ${CFG.memUploads} concurrent uploads of ${CFG.memMib} MiB (OpenSSH sftp) to one s3sftp`,
      '',
      markdownTable(
        ['idle RSS MiB', 'peak RSS MiB', `bound ${CFG.memUploads} × ${CFG.partSize / MIB} MiB × ${CFG.concurrency + 1} + 96 MiB`, 'peak ÷ bound', 'failed uploads', 'aggregate MB/s', 'dataDir Δ bytes', '/tmp Δ bytes (whole machine)', 'server write_bytes Δ'],
        [[fmt(idle / MIB, 0), fmt(sampler.peak / MIB, 0), fmt(bound / MIB, 0), ratio(sampler.peak, bound), String(failed), fmt(mbps(size * CFG.memUploads, slowest)), String(after.data - before.data), String(after.tmp - before.tmp), String(after.writes - before.writes)]],
      ),
      '',
      'server write_bytes is what the s3sftp process itself caused to be written to disk (/proc/PID/io); /tmp is shared with other processes on the machine.',
      '',
    );
  } finally {
    await sys.stop();
    await rm(file, { force: true });
  }
}

// ---------------------------------------------------------------- listing

async function listing(ctx: Ctx): Promise<void> {
  const n = CFG.listObjects;
  const prefix = 'bench/list/';
  log(`listing: creating ${n} objects`);
  let next = 0;
  await Promise.all(
    Array.from({ length: 32 }, async () => {
      while (next < n) {
        const i = next++;
        await ctx.client.send(new PutObjectCommand({ Bucket: ctx.bucket, Key: `${prefix}o${String(i).padStart(7, '0')}`, Body: 'x' }));
      }
    }),
  );
  /** The baseline: the directory paged through with the SDK, one page after another. */
  const rawListing = async () => {
    const out = { firstMs: 0, totalMs: 0, count: 0 };
    const t0 = performance.now();
    let token: string | undefined;
    do {
      const page = await ctx.client.send(new ListObjectsV2Command({ Bucket: ctx.bucket, Prefix: prefix, Delimiter: '/', ContinuationToken: token }));
      if (out.count === 0) out.firstMs = performance.now() - t0;
      out.count += (page.Contents?.length ?? 0) + (page.CommonPrefixes?.length ?? 0);
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    out.totalMs = performance.now() - t0;
    return out;
  };
  // One listing takes well under a second here and swings with the machine: the median of three.
  const raws = [await rawListing(), await rawListing(), await rawListing()].sort((a, b) => a.totalMs - b.totalMs);
  const raw = raws[1]!;
  // The listing index (docs/adr/0020) records versions a second older than the listing.
  await sleep(2000);
  const started = (name: string, env: Record<string, string> = {}) =>
    startS3sftp({ s3: ctx.s3, endpoint: ctx.s3.endpoint, bucket: ctx.bucket, dir: join(ctx.work, name), key: ctx.key, env });
  let sys = await started('list-s3sftp');
  /** One READDIR of the whole directory on a fresh server (nothing in memory). */
  const readAll = async () => {
    const session = await openSsh2Sftp(sys, ctx.privateKey);
    await sleep(300);
    const idle = groupRssBytes(sys.pid);
    const sampler = new RssSampler(sys.pid, 100);
    const me = { firstMs: 0, totalMs: 0, count: 0 };
    const t1 = performance.now();
    const h = await p.opendir(session.sftp, 'list');
    for (;;) {
      const got = await p.readdir(session.sftp, h);
      if (got === false) break;
      if (me.count === 0) me.firstMs = performance.now() - t1;
      me.count += got;
    }
    me.totalMs = performance.now() - t1;
    sampler.stop();
    await p.close(session.sftp, h);
    session.client.end();
    return { ...me, idle, peak: sampler.peak };
  };
  try {
    const me = await readAll();
    // A restarted pod or another replica: a new server, with the index the first listing wrote.
    for (let i = 0; i < 100; i++) {
      const found = await ctx.client.send(new ListObjectsV2Command({ Bucket: ctx.bucket, Prefix: '.s3sftp/listing-index/', MaxKeys: 1 }));
      if ((found.KeyCount ?? 0) > 0) break;
      await sleep(100);
    }
    await sys.stop();
    sys = await started('list-s3sftp-restarted');
    const again = await readAll();
    // The ceiling: the same listing with S3's LastModified as the mtime (no lookups, no index).
    await sys.stop();
    sys = await started('list-s3sftp-lastmodified', { S3SFTP_LISTING_MTIME: 'lastModified' });
    const plain = await readAll();
    const names = me.count;
    ctx.report.push(
      `## Listing: a directory of ${n} objects`,
      '',
      markdownTable(
        ['', 'first page / first READDIR reply ms', 'total s', 'names/s', 'server RSS idle → peak MiB'],
        [
          ['raw ListObjectsV2 paging (SDK, 1000 per page; median of 3)', fmt(raw.firstMs, 0), fmt(raw.totalMs / 1000, 2), fmt(raw.count / (raw.totalMs / 1000), 0), '–'],
          ['s3sftp READDIR, cold (ssh2 client; writes the listing index)', fmt(me.firstMs, 0), fmt(me.totalMs / 1000, 2), fmt(names / (me.totalMs / 1000), 0), `${fmt(me.idle / MIB, 0)} → ${fmt(me.peak / MIB, 0)}`],
          ['s3sftp ÷ raw, cold', '', '', ratio(names / me.totalMs, raw.count / raw.totalMs), ''],
          ['s3sftp READDIR, restarted server, index present', fmt(again.firstMs, 0), fmt(again.totalMs / 1000, 2), fmt(again.count / (again.totalMs / 1000), 0), `${fmt(again.idle / MIB, 0)} → ${fmt(again.peak / MIB, 0)}`],
          ['s3sftp ÷ raw, index present (goal ≥ 0.8×)', '', '', ratio(again.count / again.totalMs, raw.count / raw.totalMs), ''],
          ['s3sftp READDIR, listing.mtime lastModified (no mtime lookups)', fmt(plain.firstMs, 0), fmt(plain.totalMs / 1000, 2), fmt(plain.count / (plain.totalMs / 1000), 0), `${fmt(plain.idle / MIB, 0)} → ${fmt(plain.peak / MIB, 0)}`],
          ['s3sftp ÷ raw, lastModified', '', '', ratio(plain.count / plain.totalMs, raw.count / raw.totalMs), ''],
        ],
      ),
      '',
      names === n ? '' : `**s3sftp listed ${names} names, expected ${n}.**\n`,
    );
  } finally {
    await sys.stop();
  }
}

// ---------------------------------------------------------------- sessions

async function sessions(ctx: Ctx): Promise<void> {
  const sys = await startS3sftp({ s3: ctx.s3, endpoint: ctx.s3.endpoint, bucket: ctx.bucket, dir: join(ctx.work, 'sessions-s3sftp'), key: ctx.key });
  const file = join(ctx.work, 'active.bin');
  await makeFile(file, 32 * MIB);
  const open: Ssh2Session[] = [];
  const logins: number[] = [];
  let failures = 0;
  try {
    // One login first, so that the idle figure already holds the code and buffers every session
    // shares (ssh2, crypto, the SFTP path) and only the per-session cost remains in the difference.
    const warmUp = await openSsh2Sftp(sys, ctx.privateKey);
    warmUp.client.end();
    const idle = await settledRssBytes(sys.pid);
    let next = 0;
    await Promise.all(
      Array.from({ length: 20 }, async () => {
        while (next < CFG.idleSessions) {
          next++;
          try {
            const s = await openSsh2Sftp(sys, ctx.privateKey);
            s.client.on('error', () => undefined);
            open.push(s);
            logins.push(s.loginMs);
          } catch {
            failures++;
          }
        }
      }),
    );
    const withIdle = await settledRssBytes(sys.pid);
    const sampler = new RssSampler(sys.pid, 100);
    const runs = await Promise.all(
      Array.from({ length: CFG.activeSessions }, (_, i) => runSftp(sys, ctx.key, `put active.bin active-${i}.bin\n`, { cwd: ctx.work, workDir: ctx.work })),
    );
    sampler.stop();
    const activeFailures = runs.filter((r) => r.code !== 0).length;
    const alive = open.filter((s) => (s.client as unknown as { _sock?: { destroyed: boolean } })._sock?.destroyed === false).length;
    ctx.report.push(
      `## Sessions: ${CFG.idleSessions} idle SFTP sessions (ssh2 client, 20 logins at a time) + ${CFG.activeSessions} uploading 32 MiB (OpenSSH sftp)`,
      '',
      markdownTable(
        ['idle server RSS MiB', `RSS with ${CFG.idleSessions} idle MiB`, 'per idle session KiB', 'peak with transfers MiB', 'login p50 ms', 'login p99 ms', 'failed logins', 'failed transfers', 'idle sessions still open'],
        [[fmt(idle / MIB, 0), fmt(withIdle / MIB, 0), fmt((withIdle - idle) / 1024 / Math.max(1, open.length), 0), fmt(sampler.peak / MIB, 0), fmt(percentile(logins, 50), 0), fmt(percentile(logins, 99), 0), String(failures), String(activeFailures), `${alive} / ${open.length}`]],
      ),
      '',
      `Goal: ${CFG.idleSessions} idle sessions ≤ 200 MiB above the idle server (scaled: ${fmt((200 * CFG.idleSessions) / 500, 0)} MiB for ${CFG.idleSessions}).`,
      '',
    );
  } finally {
    for (const s of open) s.client.end();
    await sys.stop();
    await rm(file, { force: true });
  }
}

// ---------------------------------------------------------------- main

async function main(): Promise<void> {
  const work = await mkdtemp(join(tmpdir(), 's3sftp-bench-'));
  const s3 = await startSwift();
  const client = s3ClientFor(s3);
  const bucket = await createBucket(s3);
  const key = await writeClientKey(work);
  const ctx: Ctx = { s3, client, bucket, work, key, privateKey: await readFile(key.path, 'utf8'), report: [], cleanup: [] };
  const started = new Date();
  const parts: [string, (c: Ctx) => Promise<void>][] = [
    ['big', bigFiles],
    ['small', smallFiles],
    ['memory', memory],
    ['listing', listing],
    ['sessions', sessions],
  ];
  try {
    await mkdir(RESULTS, { recursive: true });
    for (const [name, fn] of parts) {
      if (!CFG.only.has(name)) continue;
      log(`${name}…`);
      try {
        await fn(ctx);
      } catch (err) {
        log(`${name} failed: ${(err as Error).stack ?? String(err)}`);
        ctx.report.push(`## ${name}: failed`, '', '```', String((err as Error).message), '```', '');
      }
    }
    const head = [
      '# s3sftp benchmark',
      '',
      `Run ${started.toISOString()} on ${execFileSync('nproc', { encoding: 'utf8' }).trim()} cores (load average at start ${(await readFile('/proc/loadavg', 'utf8')).split(' ').slice(0, 3).join(' ')}), Node ${process.version}, loopback only, Swift s3api for every system.`,
      `Command: \`${Object.entries(process.env).filter(([k]) => k.startsWith('BENCH_')).map(([k, v]) => `${k}=${v}`).join(' ')} npm run bench\`.`,
      'The machine is shared: absolute numbers are noisy; the ratios between systems of the same run are what to read.',
      '',
    ];
    await writeFile(join(RESULTS, 'latest.md'), [...head, ...ctx.report].join('\n'));
    process.stdout.write([...head, ...ctx.report].join('\n') + '\n');
  } finally {
    for (const c of ctx.cleanup) await c().catch(() => undefined);
    client.destroy();
    await s3.stop();
    await rm(work, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
