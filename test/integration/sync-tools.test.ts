/**
 * Sync and resume tools in their default ways, against s3sftp on Swift:
 * the checksum commands (plain `ssh host md5sum`, rclone check and
 * sync --checksum verifying content without downloading it), one mtime per
 * file (a second rclone sync / lftp mirror of an unchanged tree transfers
 * nothing), and resumed uploads (OpenSSH reput, lftp put -c) that continue
 * the stored file instead of starting again.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, truncate, writeFile, copyFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import type { SwiftS3 } from '../../dev/swift.ts';
import { PYTHON, createBucket, makeClientKey, run, s3Server, sftpBatch, startTestServer, type TestServer } from '../support/harness.ts';
import { scrape } from '../support/prometheus.ts';

const MiB = 1024 ** 2;
const PASSWORD = 'sync-pa55';
let s3: SwiftS3;
let srv: TestServer;
let work: string;
let key: string;
let remote: string;
const RCLONE_ENV = { RCLONE_CONFIG: '/dev/null' };
const SSH_OPTS = ['-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'LogLevel=ERROR', '-o', 'BatchMode=yes', '-o', 'IdentitiesOnly=yes'];

before(async () => {
  s3 = await s3Server();
  work = await mkdtemp(join(tmpdir(), 's3sftp-sync-'));
  key = await makeClientKey(work, 'dora');
  srv = await startTestServer({
    s3,
    bucket: await createBucket(s3),
    // Stored modification times (the default in later versions; explicit here so the test holds either way).
    env: { S3SFTP_SETSTATMODE: '2' },
    users: [{ username: 'dora', keyFile: key, password: PASSWORD, keyPrefix: 'tenants/dora/' }],
  });
  const obscured = await run('rclone', ['obscure', PASSWORD]);
  // No shell_type: rclone detects it and probes md5sum/sha1sum as it does against any server.
  remote = `:sftp,host=127.0.0.1,port=${srv.port},user=dora,pass=${obscured.stdout.trim()}:`;
});

after(async () => {
  await srv?.stop();
  await s3?.stop();
  await rm(work, { recursive: true, force: true });
});

const hex = (algorithm: string, data: Buffer) => createHash(algorithm).update(data).digest('hex');

function ssh(args: string[], timeoutMs = 60_000) {
  return run('ssh', [...SSH_OPTS, '-i', key, '-p', String(srv.port), 'dora@127.0.0.1', ...args], { timeoutMs });
}

function sftp(commands: string, cwd = work) {
  return sftpBatch(srv.port, 'dora', key, commands, { cwd, timeoutMs: 300_000 });
}

async function downloadSha256(path: string): Promise<string> {
  const local = join(work, `back-${randomBytes(4).toString('hex')}`);
  const r = await sftp(`get "${path}" ${local}\n`);
  assert.equal(r.code, 0, r.stderr);
  const data = await readFile(local);
  await rm(local);
  return hex('sha256', data);
}

/** s3sftp's own count of S3 requests of one kind, from /metrics. */
async function s3Requests(operation: string): Promise<number> {
  return (await scrape(srv.server.metrics.port)).value('s3sftp_s3_requests_total', { operation });
}

/** A local tree of `count` small files in a few directories, plus one multipart-sized file. */
async function makeTree(name: string, count: number): Promise<string> {
  const root = join(work, name);
  for (let i = 0; i < count; i++) {
    const dir = join(root, `d${i % 4}`);
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, `f ${i}.txt`), randomBytes(100 + i));
  }
  await writeFile(join(root, 'big.bin'), randomBytes(11 * MiB + 3));
  return root;
}

/** Files rclone reports as transferred in a -v log. */
function rcloneCopied(log: string): string[] {
  return log.split('\n').filter((line) => /: Copied \(/.test(line));
}

describe('checksum commands', () => {
  test('ssh md5sum/sha1sum/sha256sum print what coreutils prints locally; errors like coreutils', async () => {
    const local = await mkdtemp(join(work, 'sums-'));
    await mkdir(join(local, 'sub dir'));
    const files = { 'small.txt': randomBytes(777), 'sub dir/big.bin': randomBytes(12 * MiB + 1), 'empty': Buffer.alloc(0) };
    for (const [name, data] of Object.entries(files)) await writeFile(join(local, name), data);
    const up = await sftp(['mkdir sums', 'mkdir "sums/sub dir"', ...Object.keys(files).map((n) => `put "${n}" "sums/${n}"`)].join('\n'), local);
    assert.equal(up.code, 0, up.stderr);
    const getsBefore = await s3Requests('GetObject');
    for (const command of ['md5sum', 'sha1sum', 'sha256sum']) {
      const names = Object.keys(files);
      const expected = await run(command, names, { cwd: local });
      const remoteNames = names.map((n) => `sums/${n}`);
      const got = await ssh([command, ...remoteNames.map((n) => `'${n}'`)]);
      assert.equal(got.code, 0, got.stderr);
      assert.equal(got.stdout, expected.stdout.replaceAll(/  /g, '  sums/'), command);
    }
    // small.txt and empty carry the hashes stored with their PutObject; big.bin (multipart) is read
    // once per command, inside the server.
    assert.equal(await s3Requests('GetObject'), getsBefore + 3, 'only the multipart file was read back, once per command');

    const missing = await ssh(['md5sum', 'sums/small.txt', 'nope', 'sums']);
    assert.equal(missing.code, 1);
    assert.equal(missing.stdout, `${hex('md5', files['small.txt'])}  sums/small.txt\n`);
    assert.match(missing.stderr, /^md5sum: nope: No such file or directory$/m);
    assert.match(missing.stderr, /^md5sum: sums: Is a directory$/m);

    // rclone's probe: no path hashes standard input (empty here).
    const probe = await ssh(['sha1sum'], 30_000);
    assert.equal(probe.stdout, 'da39a3ee5e6b4b0d3255bfef95601890afd80709  -\n');

    const refused = await ssh(['cat', 'sums/small.txt']);
    assert.notEqual(refused.code, 0);
    assert.equal(refused.stdout, '');
    const shell = await ssh(['md5sum sums/small.txt; rm -rf /']);
    assert.notEqual(shell.code, 0);
    assert.equal(shell.stdout, '');
  });

  test('rclone check and sync --checksum compare content by hash, without downloading', async () => {
    const tree = await makeTree('hashed', 20);
    const up = await run('rclone', ['copy', tree, `${remote}hashed`], { env: RCLONE_ENV, timeoutMs: 180_000 });
    assert.equal(up.code, 0, up.stderr);
    const getsBefore = await s3Requests('GetObject');
    const check = await run('rclone', ['check', '-v', tree, `${remote}hashed`], { env: RCLONE_ENV, timeoutMs: 180_000 });
    assert.equal(check.code, 0, check.stderr);
    assert.match(check.stderr, /0 differences found/);
    assert.match(check.stderr, /21 matching files/);
    assert.doesNotMatch(check.stderr, /hashes could not be checked/);
    // The small files' hashes were stored with their PutObject; the multipart-sized big.bin is read
    // once inside the server (ranged GETs of one object, nothing crosses to the client).
    assert.equal(await s3Requests('GetObject'), getsBefore + 1, 'check read only the multipart file, once');

    // Same size, same time, different bytes: only a hash can tell.
    const changed = join(tree, 'd1', 'f 1.txt');
    const stat = (await readFile(changed)).length;
    await writeFile(changed, randomBytes(stat));
    const differ = await run('rclone', ['check', tree, `${remote}hashed`], { env: RCLONE_ENV, timeoutMs: 180_000 });
    assert.notEqual(differ.code, 0);
    assert.match(differ.stderr, /1 differences found/);
    const sync = await run('rclone', ['sync', '--checksum', '-v', tree, `${remote}hashed`], { env: RCLONE_ENV, timeoutMs: 180_000 });
    assert.equal(sync.code, 0, sync.stderr);
    assert.deepEqual(rcloneCopied(sync.stderr).length, 1, sync.stderr);
    const again = await run('rclone', ['check', tree, `${remote}hashed`], { env: RCLONE_ENV, timeoutMs: 180_000 });
    assert.equal(again.code, 0, again.stderr);
  });
});

describe('one modification time per file', () => {
  test('a second rclone sync of an unchanged 200-file tree transfers nothing', async () => {
    const tree = await makeTree('synced', 200);
    const first = await run('rclone', ['sync', '-v', tree, `${remote}synced`], { env: RCLONE_ENV, timeoutMs: 300_000 });
    assert.equal(first.code, 0, first.stderr);
    assert.equal(rcloneCopied(first.stderr).length, 201);
    const second = await run('rclone', ['sync', '-v', tree, `${remote}synced`], { env: RCLONE_ENV, timeoutMs: 300_000 });
    assert.equal(second.code, 0, second.stderr);
    assert.deepEqual(rcloneCopied(second.stderr), []);
    assert.doesNotMatch(second.stderr, /Modification times differ|Updated modification time/);
  });

  test('a second lftp mirror -R of an unchanged tree transfers nothing', async () => {
    const tree = await makeTree('mirrored', 30);
    const mirror = () =>
      run(
        'lftp',
        [
          '-c',
          [
            'set sftp:auto-confirm yes',
            'set net:max-retries 1',
            `open -u dora,${PASSWORD} -p ${srv.port} sftp://127.0.0.1`,
            `mirror -R -v ${tree} mirrored`,
            'bye',
          ].join('\n'),
        ],
        { timeoutMs: 300_000 },
      );
    const first = await mirror();
    assert.equal(first.code, 0, first.stderr);
    assert.equal(first.stdout.match(/Transferring file/g)?.length, 31, first.stdout);
    const second = await mirror();
    assert.equal(second.code, 0, second.stderr);
    assert.doesNotMatch(second.stdout, /Transferring file/, second.stdout);
  });
});

describe('resumed uploads', () => {
  test('OpenSSH reput of a 60 MiB file cut at 23 MiB continues it inside S3', async () => {
    const source = join(work, 'sixty.bin');
    await writeFile(source, randomBytes(60 * MiB));
    const cut = join(work, 'sixty-cut.bin');
    await copyFile(source, cut);
    await truncate(cut, 23 * MiB);
    assert.equal((await sftp(`put ${cut} sixty.bin\n`)).code, 0);
    const copiesBefore = await s3Requests('UploadPartCopy');
    const r = await sftp(`reput ${source} sixty.bin\nls -l sixty.bin\n`);
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(r.stderr, /unsupported|failure/i);
    assert.ok((await s3Requests('UploadPartCopy')) > copiesBefore, 'the stored 23 MiB were copied inside S3');
    assert.equal(await downloadSha256('sixty.bin'), hex('sha256', await readFile(source)));
    // The resumed file is new: its hash is computed, its time is the upload's, and listing agrees with stat.
    const sum = await ssh(['sha256sum', 'sixty.bin'], 120_000);
    assert.equal(sum.stdout, `${hex('sha256', await readFile(source))}  sixty.bin\n`);
    const times = await run(PYTHON, ['-c', paramikoTimes('sixty.bin')], { timeoutMs: 60_000 });
    const [stat, listed] = JSON.parse(times.stdout) as [number, number];
    assert.equal(listed, stat);
    assert.ok(Math.abs(stat - Date.now() / 1000) < 300, `mtime ${stat} is the upload's`);
  });

  test('reput of a file under 5 MiB (read back and re-sent as the first part)', async () => {
    const source = join(work, 'four.bin');
    await writeFile(source, randomBytes(4 * MiB + 5));
    const cut = join(work, 'four-cut.bin');
    await copyFile(source, cut);
    await truncate(cut, 3 * MiB);
    assert.equal((await sftp(`put ${cut} four.bin\n`)).code, 0);
    const r = await sftp(`reput ${source} four.bin\n`);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await downloadSha256('four.bin'), hex('sha256', await readFile(source)));
    const md5 = await ssh(['md5sum', 'four.bin']);
    assert.equal(md5.stdout, `${hex('md5', await readFile(source))}  four.bin\n`);
  });

  test('paramiko append mode adds to the end of a stored file', async () => {
    const script = `
import json, paramiko
t = paramiko.Transport(("127.0.0.1", ${srv.port}))
t.connect(username="dora", password=${JSON.stringify(PASSWORD)})
s = paramiko.SFTPClient.from_transport(t)
with s.open("log.txt", "w") as f:
    f.write(b"line 1\\n")
with s.open("log.txt", "a") as f:
    f.write(b"line 2\\n")
with s.open("log.txt", "r") as f:
    print(json.dumps(f.read().decode()))
`;
    const r = await run(PYTHON, ['-c', script], { timeoutMs: 60_000 });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout), 'line 1\nline 2\n');
  });

  test('lftp put -c continues a partial upload', async () => {
    const source = join(work, 'lftp-resume.bin');
    await writeFile(source, randomBytes(14 * MiB + 9));
    const cut = join(work, 'lftp-cut.bin');
    await copyFile(source, cut);
    await truncate(cut, 9 * MiB);
    assert.equal((await sftp(`put ${cut} lftp-resume.bin\n`)).code, 0);
    const copiesBefore = await s3Requests('UploadPartCopy');
    const r = await run(
      'lftp',
      [
        '-c',
        [
          'set sftp:auto-confirm yes',
          'set net:max-retries 1',
          `open -u dora,${PASSWORD} -p ${srv.port} sftp://127.0.0.1`,
          `put -c ${source} -o lftp-resume.bin`,
          'bye',
        ].join('\n'),
      ],
      { timeoutMs: 180_000 },
    );
    assert.equal(r.code, 0, r.stderr);
    assert.ok((await s3Requests('UploadPartCopy')) > copiesBefore, 'resumed, not re-sent');
    assert.equal(await downloadSha256('lftp-resume.bin'), hex('sha256', await readFile(source)));
  });
});

/** A paramiko script printing [stat mtime, listed mtime] of a file in the root. */
function paramikoTimes(name: string): string {
  return `
import json, paramiko
t = paramiko.Transport(("127.0.0.1", ${srv.port}))
t.connect(username="dora", password=${JSON.stringify(PASSWORD)})
s = paramiko.SFTPClient.from_transport(t)
listed = [a.st_mtime for a in s.listdir_attr(".") if a.filename == ${JSON.stringify(name)}][0]
print(json.dumps([s.stat(${JSON.stringify(name)}).st_mtime, listed]))
`;
}
