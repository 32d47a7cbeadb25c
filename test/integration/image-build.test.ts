/**
 * The Dockerfile's build steps, replayed without Docker (test/support/dockerfile.ts):
 * `npm ci`, the TypeScript build and the production-only install run in a temp
 * dir, and the assembled /app starts with production dependencies only and
 * answers /healthz and /readyz.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readFile, rm, stat, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { SwiftS3 } from '../../dev/swift.ts';
import { replayDockerfile } from '../support/dockerfile.ts';
import { createBucket, s3Server } from '../support/harness.ts';
import { freePort } from '../support/ports.ts';

const ROOT = join(import.meta.dirname, '../..');
let s3: SwiftS3;
let work: string;
let child: ChildProcess | undefined;

before(async () => {
  s3 = await s3Server();
  work = await mkdtemp(join(tmpdir(), 's3sftp-image-'));
});

after(async () => {
  child?.kill('SIGKILL');
  await s3?.stop();
  await rm(work, { recursive: true, force: true });
});


test('the image build steps produce an app that starts and answers /healthz', { timeout: 10 * 60_000 }, async () => {
  const image = await replayDockerfile({
    dockerfile: join(ROOT, 'Dockerfile'),
    context: ROOT,
    root: work,
    nodePrefix: dirname(dirname(process.execPath)),
  });
  const app = join(image.root, image.workdir);
  assert.ok((await stat(join(app, 'dist/cli/main.js'))).isFile());
  const modules = await readdir(join(app, 'node_modules'));
  assert.ok(modules.includes('ssh2'), 'production dependencies are installed');
  assert.ok(!modules.includes('typescript'), 'dev dependencies are not');
  const ssh2Crypto = await readFile(join(app, 'node_modules/ssh2/lib/protocol/crypto.js'), 'utf8');
  assert.ok(ssh2Crypto.includes('s3sftp: pooled padding'), "npm ci's postinstall applied the ssh2 patch (scripts/patch-ssh2.mjs)");

  // Users are checked against the CRD's schema at run time, so the image must carry crds/.
  assert.ok((await stat(join(app, 'crds/sftpusers.s3sftp.io.yaml'))).isFile(), 'the image has the SftpUser CRD');
  const users = join(work, 'users');
  await mkdir(users, { recursive: true });
  await copyFile(join(ROOT, 'examples', 'sftpuser-readonly.yaml'), join(users, 'readonly.yaml'));

  const metricsPort = await freePort();
  child = spawn(process.execPath, [join(app, 'dist/cli/main.js'), 'serve'], {
    cwd: app,
    stdio: ['ignore', 'ignore', 'pipe'],
    env: {
      PATH: process.env.PATH,
      NODE_ENV: 'production',
      S3SFTP_LISTEN: '127.0.0.1:0',
      S3SFTP_METRICS_LISTEN: `127.0.0.1:${metricsPort}`,
      S3SFTP_DATADIR: join(work, 'data'),
      S3SFTP_USERS_DIRECTORY: users,
      S3SFTP_S3_BUCKET: await createBucket(s3),
      S3SFTP_S3_ENDPOINT: s3.endpoint,
      S3SFTP_S3_FORCEPATHSTYLE: 'true',
      S3SFTP_S3_CREDENTIALS_ACCESSKEYID: s3.accessKeyId,
      S3SFTP_S3_CREDENTIALS_SECRETACCESSKEY: s3.secretAccessKey,
      AWS_EC2_METADATA_DISABLED: 'true',
    },
  });
  let stderr = '';
  child.stderr?.on('data', (d) => (stderr += d));
  let health: Response | undefined;
  for (let i = 0; i < 100 && !health?.ok; i++) {
    await new Promise((r) => setTimeout(r, 100));
    health = await fetch(`http://127.0.0.1:${metricsPort}/healthz`).catch(() => undefined);
  }
  assert.equal(health?.status, 200, stderr);
  let ready: Response | undefined;
  for (let i = 0; i < 100 && !ready?.ok; i++) {
    ready = await fetch(`http://127.0.0.1:${metricsPort}/readyz`).catch(() => undefined);
    if (!ready?.ok) await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(ready?.status, 200, `not ready with users.directory set: ${stderr}`);
  const version = spawn(process.execPath, [join(app, 'dist/cli/main.js'), '--version'], { cwd: app });
  let out = '';
  version.stdout.on('data', (d) => (out += d));
  await new Promise((r) => version.on('close', r));
  const pkg = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { version: string };
  assert.equal(out.trim(), pkg.version);
  child.kill('SIGTERM');
  const code = await new Promise((r) => child!.on('exit', (c) => r(c)));
  assert.equal(code, 0, stderr);
});
