/**
 * `make run`: a local Swift S3 emulator on 127.0.0.1, a demo bucket and user,
 * and the real server (the CLI, as in production) on 127.0.0.1:2022.
 * State lives in .run/ so uploaded files survive a restart.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, writeFile, chmod, readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { S3Client, CreateBucketCommand } from '@aws-sdk/client-s3';
import { startSwift } from './swift.ts';
import { hashPassword } from '../src/auth/password.ts';
import { generateEd25519 } from '../src/ssh/keygen.ts';

const root = resolve(import.meta.dirname, '..');
// S3SFTP_DEMO_STATE moves the state elsewhere (bench/cpu-ab.sh runs throw-away demos).
const state = resolve(process.env.S3SFTP_DEMO_STATE ?? join(root, '.run'));
const port = Number(process.env.S3SFTP_DEMO_PORT ?? 2022);
const metricsPort = Number(process.env.S3SFTP_DEMO_METRICS_PORT ?? 9090);
const bucket = 's3sftp-demo';

async function main(): Promise<void> {
  await mkdir(join(state, 'users'), { recursive: true });
  await mkdir(join(state, 'swift'), { recursive: true });
  const s3 = await startSwift({ dir: join(state, 'swift') });
  const client = new S3Client({
    endpoint: s3.endpoint,
    region: s3.region,
    forcePathStyle: true,
    credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
  });
  await client.send(new CreateBucketCommand({ Bucket: bucket })).catch((err: Error) => {
    if (err.name !== 'BucketAlreadyOwnedByYou' && err.name !== 'BucketAlreadyExists') throw err;
  });
  client.destroy();

  const keyFile = join(state, 'demo_id_ed25519');
  if (!existsSync(keyFile)) {
    const pair = generateEd25519();
    await writeFile(keyFile, pair.private, { mode: 0o600 });
    await writeFile(`${keyFile}.pub`, `${pair.public}\n`);
  }
  await chmod(keyFile, 0o600);
  const publicKey = (await readFile(`${keyFile}.pub`, 'utf8')).trim();
  await writeFile(
    join(state, 'users', 'demo.yaml'),
    [
      'apiVersion: s3sftp.io/v1alpha1',
      'kind: SftpUser',
      'metadata: { name: demo }',
      'spec:',
      `  passwordHash: ${JSON.stringify(await hashPassword('demo'))}`,
      `  publicKeys: [${JSON.stringify(publicKey)}]`,
      '  s3: { keyPrefix: users/demo/ }',
      '  permissions: ["*"]',
      '',
    ].join('\n'),
  );
  await writeFile(
    join(state, 'config.yaml'),
    [
      `listen: 127.0.0.1:${port}`,
      `dataDir: ${JSON.stringify(join(state, 'data'))}`,
      'setstatMode: 2',
      'renameMode: 1',
      's3:',
      `  bucket: ${bucket}`,
      `  endpoint: ${s3.endpoint}`,
      `  region: ${s3.region}`,
      '  forcePathStyle: true',
      `  credentials: { accessKeyId: ${JSON.stringify(s3.accessKeyId)}, secretAccessKey: ${JSON.stringify(s3.secretAccessKey)} }`,
      'users:',
      `  directory: ${JSON.stringify(join(state, 'users'))}`,
      'metrics:',
      `  listen: 127.0.0.1:${metricsPort}`,
      '',
    ].join('\n'),
  );

  // S3SFTP_DEMO_NODE_ARGS: extra node flags for the server (e.g. --cpu-prof --cpu-prof-dir=/tmp/prof).
  const nodeArgs = (process.env.S3SFTP_DEMO_NODE_ARGS ?? '').split(' ').filter(Boolean);
  const server = spawn(process.execPath, [...nodeArgs, join(root, 'src/cli/main.ts'), 'serve', '--config', join(state, 'config.yaml')], {
    stdio: 'inherit',
  });
  process.stdout.write(
    [
      '',
      `s3sftp demo: S3 emulator (OpenStack Swift) at ${s3.endpoint}, bucket ${bucket}, user "demo" (password "demo")`,
      'Connect with:',
      `  sftp -P ${port} -i ${keyFile} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null demo@127.0.0.1`,
      `  sftp -P ${port} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null demo@127.0.0.1   (password: demo)`,
      `Metrics: http://127.0.0.1:${metricsPort}/metrics (also /healthz, /readyz)`,
      'Press Ctrl-C to stop.',
      '',
    ].join('\n'),
  );
  const stop = async () => {
    server.kill('SIGTERM');
    await s3.stop();
    process.exit(0);
  };
  process.once('SIGINT', () => void stop());
  process.once('SIGTERM', () => void stop());
  server.on('exit', async (code) => {
    await s3.stop();
    process.exit(code ?? 1);
  });
}

main().catch((err: unknown) => {
  process.stderr.write(`make run: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
