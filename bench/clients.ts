/**
 * `node bench/clients.ts`: what the sync clients cost per small file, in S3 requests and files/s.
 * rclone (copy up, copy again, lsl, copy down, delete) and lftp (mirror -R, again, mirror down,
 * rm -r) and psftp (mput, mget, rm) run with their defaults against s3sftp on Swift, behind the counting proxy that adds
 * BENCH_LATENCY_MS (20) to every S3 request, over BENCH_FILES (50) files of 4 KiB. rclone runs
 * several connections at once and sets each file's time after CLOSE, then checks it with STAT and
 * md5sum; lftp runs one. Printed per step: seconds, files/s, S3 requests per file by operation,
 * and files read ahead (ADR 0021) used and unused.
 */
import { mkdtemp, mkdir, writeFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { createBucket, makeClientKey, run, s3Server, startTestServer, type TestServer } from '../test/support/harness.ts';
import { countByKind, formatCounts, startS3LatencyProxy, type S3LatencyProxy } from '../test/support/s3-latency-proxy.ts';
import { scrape } from '../test/support/prometheus.ts';

const FILES = Number(process.env.BENCH_FILES ?? 50);
const LATENCY_MS = Number(process.env.BENCH_LATENCY_MS ?? 20);
const PASSWORD = 'bench-clients-1';

async function step(server: TestServer, proxy: S3LatencyProxy, name: string, command: string, args: string[]): Promise<void> {
  const mark = proxy.requests.length;
  const before = await scrape(server.server.metrics.port);
  const started = performance.now();
  const result = await run(command, args, { env: { ...process.env, RCLONE_CONFIG: '/dev/null' }, timeoutMs: 600_000 });
  const seconds = (performance.now() - started) / 1000;
  // Requests a client's last reply let go of (a listing index write) still count.
  await sleep(300);
  const counts = countByKind(proxy.since(mark));
  const total = Object.values(counts).reduce((a, b) => a + b, 0);
  const after = await scrape(server.server.metrics.port);
  const ahead = (result: string) =>
    after.value('s3sftp_read_ahead_files_total', { result }) - before.value('s3sftp_read_ahead_files_total', { result });
  console.log(
    `${name.padEnd(22)} exit ${result.code}  ${seconds.toFixed(2)} s  ${(FILES / seconds).toFixed(1)} files/s  ` +
      `${(total / FILES).toFixed(2)} S3 req/file (${formatCounts(counts)})  read ahead used ${ahead('used')} unused ${ahead('unused')}`,
  );
  if (result.code !== 0) console.log(result.stderr.slice(-2000));
}

async function main(): Promise<void> {
  const s3 = await s3Server();
  const bucket = await createBucket(s3);
  const proxy = await startS3LatencyProxy(s3.endpoint, { delayMs: LATENCY_MS });
  const work = await mkdtemp(join(tmpdir(), 's3sftp-bench-clients-'));
  const keyFile = await makeClientKey(work);
  const server = await startTestServer({
    s3: { ...s3, endpoint: proxy.endpoint },
    bucket,
    users: [{ username: 'bench', keyFile, password: PASSWORD, keyPrefix: 'bench/' }],
  });
  try {
    const source = join(work, 'source');
    await mkdir(source);
    for (let i = 0; i < FILES; i++) await writeFile(join(source, `f${String(i).padStart(5, '0')}.dat`), randomBytes(4096));
    console.log(`${FILES} files of 4 KiB, ${LATENCY_MS} ms per S3 request`);
    const obscured = (await run('rclone', ['obscure', PASSWORD])).stdout.trim();
    const remote = `:sftp,host=127.0.0.1,port=${server.port},user=bench,pass=${obscured}:`;
    await step(server, proxy, 'rclone copy up', 'rclone', ['copy', source, `${remote}rc`]);
    await step(server, proxy, 'rclone copy up again', 'rclone', ['copy', source, `${remote}rc`]);
    await step(server, proxy, 'rclone lsl', 'rclone', ['lsl', `${remote}rc`]);
    await step(server, proxy, 'rclone copy down', 'rclone', ['copy', `${remote}rc`, join(work, 'rc-down')]);
    await step(server, proxy, 'rclone delete', 'rclone', ['delete', `${remote}rc`]);
    const url = `sftp://bench:${PASSWORD}@127.0.0.1:${server.port}`;
    const lftp = (commands: string) => ['-c', `set sftp:auto-confirm yes; set net:max-retries 1; open ${url}; ${commands}`];
    await step(server, proxy, 'lftp mirror -R', 'lftp', lftp(`mirror -R ${source} /lf`));
    await step(server, proxy, 'lftp mirror -R again', 'lftp', lftp(`mirror -R ${source} /lf`));
    await step(server, proxy, 'lftp mirror down', 'lftp', lftp(`mirror /lf ${join(work, 'lf-down')}`));
    await step(server, proxy, 'lftp rm -r', 'lftp', lftp('rm -r /lf'));
    // psftp (PuTTY; FileZilla's SFTP engine comes from it): the host key pinned by its fingerprint, one batch file per step.
    const scanned = await run('ssh-keyscan', ['-p', String(server.port), '-t', 'ed25519', '127.0.0.1']);
    await writeFile(join(work, 'hostkey'), scanned.stdout);
    const fingerprint = (await run('ssh-keygen', ['-lf', join(work, 'hostkey')])).stdout.split(' ')[1] ?? '';
    const psftp = async (name: string, commands: string) => {
      const script = join(work, `psftp-${name.replace(/\W+/g, '-')}`);
      await writeFile(script, `${commands}\nquit\n`);
      await step(server, proxy, name, 'psftp', ['-batch', '-hostkey', fingerprint, '-P', String(server.port), '-pw', PASSWORD, '-b', script, 'bench@127.0.0.1']);
    };
    await mkdir(join(work, 'ps-down'));
    await psftp('psftp mput', `mkdir ps\ncd ps\nlcd ${source}\nmput *`);
    await psftp('psftp mget', `cd ps\nlcd ${join(work, 'ps-down')}\nmget *`);
    await psftp('psftp rm', 'cd ps\nrm *');
  } finally {
    await server.stop();
    await proxy.close();
    await s3.stop();
    await rm(work, { recursive: true, force: true });
  }
}

await main();
