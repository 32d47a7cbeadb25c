/**
 * The server's AWS identity, end to end: the real CLI (`node src/cli/main.ts serve`) as a child
 * process with a controlled environment; STS, the container credentials endpoint and IMDSv2 faked
 * on 127.0.0.1 (test/support/fake-aws.ts); a private Swift whose tempauth users are exactly the
 * keys those fakes hand out; and a recorder in front of Swift that shows which access key and
 * session token signed each S3 request (Swift verifies the signature itself). Nothing leaves
 * 127.0.0.1: IMDS is disabled wherever it is not the subject, and ~/.aws is an empty temp dir.
 */
import { after, afterEach, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile, chmod } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { CreateBucketCommand, GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { pino } from 'pino';
import { startSwift, type SwiftS3, type TempauthUser } from '../../dev/swift.ts';
import { sftpBatch } from '../support/harness.ts';
import { CLI_MAIN } from '../support/cli-server.ts';
import { startFakeAws, type FakeAws, type FakeAwsOptions, type IssueSpec } from '../support/fake-aws.ts';
import { startS3Recorder, type RecordedRequest, type S3Recorder } from '../support/s3-recorder.ts';
import { loadConfig } from '../../src/config/load.ts';
import { ClientPool } from '../../src/storage/s3/client-pool.ts';
import { Identities, stsRoleAssumer } from '../../src/storage/s3/credentials.ts';
import type { User } from '../../src/users/user.ts';
import { generateEd25519 } from '../../src/ssh/keygen.ts';

const role = (name: string): string => `arn:aws:iam::111122223333:role/${name}`;

/** Swift users whose keys the fakes hand out; all in account "test", so they share its buckets. */
const SWIFT_USERS: TempauthUser[] = ['irsa', 'ecs', 'imds', 'server', 'alice', 'refresh'].map((user) => ({
  account: 'test',
  user,
  key: `${user}-secret-7f3a`,
}));
const issueFor = (user: string, ttlMs?: number): IssueSpec => ({
  accessKeyId: `test:${user}`,
  secretAccessKey: `${user}-secret-7f3a`,
  ...(ttlMs ? { ttlMs } : {}),
});
const SA_SUBJECT = 'system:serviceaccount:sftp:s3sftp';

let swift: SwiftS3;
let recorder: S3Recorder;
let direct: S3Client;
let dir: string;
let bucket: string;
let keyFile: string;
let publicKey: string;
let fake: FakeAws | undefined;
const servers: Served[] = [];

before(async () => {
  swift = await startSwift({ tempauthUsers: SWIFT_USERS });
  recorder = await startS3Recorder(swift.endpoint);
  direct = new S3Client({
    endpoint: swift.endpoint,
    region: swift.region,
    forcePathStyle: true,
    credentials: { accessKeyId: swift.accessKeyId, secretAccessKey: swift.secretAccessKey },
  });
  bucket = `identity-${Date.now().toString(36)}`;
  await direct.send(new CreateBucketCommand({ Bucket: bucket }));
  dir = await mkdtemp(join(tmpdir(), 's3sftp-identity-'));
  const pair = generateEd25519();
  keyFile = join(dir, 'id_ed25519');
  await writeFile(keyFile, pair.private);
  await chmod(keyFile, 0o600);
  publicKey = pair.public;
});

after(async () => {
  direct?.destroy();
  await recorder?.close();
  await swift?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

afterEach(async () => {
  while (servers.length > 0) await servers.pop()?.stop();
  await fake?.close();
  fake = undefined;
});

async function fakeAws(opts: FakeAwsOptions): Promise<FakeAws> {
  fake = await startFakeAws({ knownKeys: [{ accessKeyId: swift.accessKeyId, secretAccessKey: swift.secretAccessKey }], ...opts });
  return fake;
}

interface Served {
  port: number;
  /** Everything the server logged so far (pino JSON lines). */
  logs(): string;
  stop(): Promise<void>;
}

interface UserSpec {
  name: string;
  roleArn?: string;
}

/**
 * Runs `s3sftp serve` with only the variables given (plus an isolated HOME and AWS config files),
 * and resolves once it listens. The S3 endpoint is the recorder.
 */
async function serve(env: Record<string, string>, users: UserSpec[]): Promise<Served> {
  const home = await mkdtemp(join(dir, 'home-'));
  const usersDir = join(home, 'users');
  await mkdir(usersDir);
  for (const u of users) {
    const spec = {
      publicKeys: [publicKey],
      s3: { keyPrefix: `users/${u.name}/`, ...(u.roleArn ? { roleArn: u.roleArn } : {}) },
      permissions: ['*'],
    };
    await writeFile(
      join(usersDir, `${u.name}.yaml`),
      JSON.stringify({ apiVersion: 's3sftp.io/v1alpha1', kind: 'SftpUser', metadata: { name: u.name }, spec }),
    );
  }
  const child: ChildProcess = spawn(process.execPath, [CLI_MAIN, 'serve'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      HOME: home,
      AWS_CONFIG_FILE: join(home, 'aws-config'),
      AWS_SHARED_CREDENTIALS_FILE: join(home, 'aws-credentials'),
      S3SFTP_LISTEN: '127.0.0.1:0',
      S3SFTP_METRICS_LISTEN: '127.0.0.1:0',
      S3SFTP_DATADIR: join(home, 'data'),
      S3SFTP_USERS_DIRECTORY: usersDir,
      S3SFTP_S3_BUCKET: bucket,
      S3SFTP_S3_ENDPOINT: recorder.endpoint,
      S3SFTP_S3_REGION: 'us-east-1',
      S3SFTP_S3_FORCEPATHSTYLE: 'true',
      S3SFTP_LOG_LEVEL: 'info',
      ...env,
    },
  });
  let output = '';
  child.stdout?.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const served: Served = {
    port: 0,
    logs: () => output,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGINT');
      const done = await Promise.race([exited.then(() => true), sleep(10_000).then(() => false)]);
      if (!done) {
        child.kill('SIGKILL');
        await exited;
      }
    },
  };
  servers.push(served);
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    const m = /"address":"127\.0\.0\.1:(\d+)"[^\n]*"msg":"s3sftp listening"/.exec(output);
    if (m) {
      served.port = Number(m[1]);
      return served;
    }
    if (child.exitCode !== null) throw new Error(`server exited with code ${child.exitCode}:\n${output}`);
    await sleep(50);
  }
  throw new Error(`server did not start within 30 s:\n${output}`);
}

/** Uploads `content` as /name for `user` with OpenSSH sftp; returns the object key. */
async function upload(served: Served, user: string, name: string, content: string): Promise<string> {
  const local = join(dir, `${user}-${name}`);
  await writeFile(local, content);
  const r = await sftpBatch(served.port, user, keyFile, `put ${local} /${name}\n`, { timeoutMs: 60_000 });
  assert.equal(r.code, 0, `sftp put as ${user} failed: ${r.stderr}\n--- server log ---\n${served.logs()}`);
  const key = `users/${user}/${name}`;
  const got = await direct.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  assert.equal(await got.Body?.transformToString(), content);
  return key;
}

/** The recorded S3 requests that wrote `key` (PutObject or multipart parts) and succeeded. */
function writesOf(key: string) {
  return recorder.requests.filter((r) => r.method === 'PUT' && r.path.split('?')[0] === `/${bucket}/${key}` && r.status === 200);
}

/** The recorded HeadBucket requests made since `since` (an index into recorder.requests). */
function headBucketsSince(since: number) {
  return recorder.requests.slice(since).filter((r) => r.method === 'HEAD' && /^\/[^/]+\/?$/.test(r.path.split('?')[0] ?? '') && r.path.includes(bucket));
}

/** Asserts that there are such requests and that every one was signed by `accessKeyId` with `sessionToken`. */
function assertSignedBy(requests: RecordedRequest[], accessKeyId: string, sessionToken: string | undefined, what: string): void {
  assert.ok(requests.length >= 1, `no ${what} recorded`);
  assert.deepEqual(
    requests.map((r) => [r.accessKeyId, r.sessionToken, r.status]),
    requests.map(() => [accessKeyId, sessionToken, 200]),
    `${what}: signer and session token`,
  );
}

describe('base credentials from the default chain', () => {
  test('IRSA: web identity token file + AWS_ROLE_ARN, exchanged at the (fake) STS', async () => {
    const aws = await fakeAws({ webIdentity: { roleArn: role('s3sftp-irsa'), subject: SA_SUBJECT, issue: issueFor('irsa') } });
    const tokenFile = join(dir, 'irsa-token');
    const token = aws.webIdentityToken(SA_SUBJECT);
    await writeFile(tokenFile, token);
    const mark = recorder.requests.length;
    const served = await serve(
      {
        AWS_ROLE_ARN: role('s3sftp-irsa'),
        AWS_WEB_IDENTITY_TOKEN_FILE: tokenFile,
        AWS_ENDPOINT_URL_STS: aws.url,
        AWS_EC2_METADATA_DISABLED: 'true',
      },
      [{ name: 'irsa1' }],
    );
    // Started: the bucket check passed, signed with the STS-issued key and token.
    const web = aws.stsCalls.filter((c) => c.action === 'AssumeRoleWithWebIdentity');
    assert.equal(web.length, 1);
    assert.equal(web[0]?.status, 200);
    assert.equal(web[0]?.params.WebIdentityToken, token, 'the projected token is sent as it is in the file');
    assert.equal(web[0]?.params.RoleArn, role('s3sftp-irsa'));
    const issued = web[0]?.issued;
    assert.ok(issued);
    assertSignedBy(headBucketsSince(mark), 'test:irsa', issued.sessionToken, 'start-up HeadBucket');

    const key = await upload(served, 'irsa1', 'hello.txt', 'from IRSA\n');
    assertSignedBy(writesOf(key), 'test:irsa', issued.sessionToken, 'upload');
    // The credentials are cached: one exchange for start-up and the session.
    assert.equal(aws.stsCalls.length, 1);
  });

  test('a web identity token STS refuses stops the server with a message', async () => {
    const aws = await fakeAws({ webIdentity: { roleArn: role('s3sftp-irsa'), subject: SA_SUBJECT, issue: issueFor('irsa') } });
    const tokenFile = join(dir, 'wrong-token');
    await writeFile(tokenFile, aws.webIdentityToken('system:serviceaccount:other:intruder'));
    const r = await runToExit({
      AWS_ROLE_ARN: role('s3sftp-irsa'),
      AWS_WEB_IDENTITY_TOKEN_FILE: tokenFile,
      AWS_ENDPOINT_URL_STS: aws.url,
      AWS_EC2_METADATA_DISABLED: 'true',
    });
    assert.equal(r.code, 2, r.output);
    assert.match(r.output, /no AWS credentials found/);
    assert.match(r.output, /InvalidIdentityToken/);
    assert.equal(aws.stsCalls[0]?.status, 400);
  });

  test('ECS / EKS Pod Identity: the container credentials endpoint with its authorization token', async () => {
    const aws = await fakeAws({ container: { issue: issueFor('ecs'), authorizationToken: 'pod-identity-token-93c1' } });
    const tokenFile = join(dir, 'pod-identity-token');
    await writeFile(tokenFile, 'pod-identity-token-93c1');
    const mark = recorder.requests.length;
    const served = await serve(
      {
        AWS_CONTAINER_CREDENTIALS_FULL_URI: aws.containerUri,
        AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE: tokenFile,
        AWS_EC2_METADATA_DISABLED: 'true',
      },
      [{ name: 'ecs1' }],
    );
    assert.deepEqual(aws.containerCalls, [{ authorization: 'pod-identity-token-93c1', status: 200 }]);
    const issued = aws.issued[0];
    assert.ok(issued);
    assertSignedBy(headBucketsSince(mark), 'test:ecs', issued.sessionToken, 'start-up HeadBucket');
    const key = await upload(served, 'ecs1', 'hello.txt', 'from the container endpoint\n');
    assertSignedBy(writesOf(key), 'test:ecs', issued.sessionToken, 'upload');
    assert.equal(aws.containerCalls.length, 1);
  });

  test('EC2 instance metadata, IMDSv2 (session token required)', async () => {
    const aws = await fakeAws({ imds: { roleName: 'sftp-node-role', issue: issueFor('imds') } });
    const mark = recorder.requests.length;
    const served = await serve({ AWS_EC2_METADATA_SERVICE_ENDPOINT: aws.url }, [{ name: 'imds1' }]);
    const calls = aws.imdsCalls.map((c) => `${c.method} ${c.path} ${c.status}`);
    assert.deepEqual(calls.slice(0, 3), [
      'PUT /latest/api/token 200',
      'GET /latest/meta-data/iam/security-credentials/ 200',
      'GET /latest/meta-data/iam/security-credentials/sftp-node-role 200',
    ]);
    assert.ok(aws.imdsCalls.every((c) => c.status !== 401), 'every metadata read carried the IMDSv2 token');
    const issued = aws.issued[0];
    assert.ok(issued);
    assertSignedBy(headBucketsSince(mark), 'test:imds', issued.sessionToken, 'start-up HeadBucket');
    const key = await upload(served, 'imds1', 'hello.txt', 'from instance metadata\n');
    assertSignedBy(writesOf(key), 'test:imds', issued.sessionToken, 'upload');
  });
});

describe('roles assumed through STS', () => {
  const staticKeys = (): Record<string, string> => ({
    S3SFTP_S3_CREDENTIALS_ACCESSKEYID: swift.accessKeyId,
    S3SFTP_S3_CREDENTIALS_SECRETACCESSKEY: swift.secretAccessKey,
    AWS_EC2_METADATA_DISABLED: 'true',
  });

  test('s3.credentials.roleArn: AssumeRole signed with the static key, with externalId, session name and duration', async () => {
    const aws = await fakeAws({
      roles: { [role('s3sftp-server')]: { issue: issueFor('server'), externalId: 'ext-5521', trustedKeys: [swift.accessKeyId] } },
    });
    const mark = recorder.requests.length;
    const served = await serve(
      {
        ...staticKeys(),
        AWS_ENDPOINT_URL_STS: aws.url,
        S3SFTP_S3_CREDENTIALS_ROLEARN: role('s3sftp-server'),
        S3SFTP_S3_CREDENTIALS_EXTERNALID: 'ext-5521',
        S3SFTP_S3_CREDENTIALS_SESSIONNAME: 'sftp-prod',
        S3SFTP_S3_CREDENTIALS_DURATION: '2h',
      },
      [{ name: 'plain1' }],
    );
    assert.equal(aws.stsCalls.length, 1);
    const call = aws.stsCalls[0];
    assert.equal(call?.action, 'AssumeRole');
    assert.equal(call?.status, 200);
    assert.equal(call?.signedBy, swift.accessKeyId, 'signed (SigV4, verified) with the static key');
    assert.equal(call?.params.RoleArn, role('s3sftp-server'));
    assert.equal(call?.params.ExternalId, 'ext-5521');
    assert.equal(call?.params.RoleSessionName, 'sftp-prod');
    assert.equal(call?.params.DurationSeconds, '7200');
    const issued = call?.issued;
    assert.ok(issued);
    assertSignedBy(headBucketsSince(mark), 'test:server', issued.sessionToken, 'start-up HeadBucket');
    const key = await upload(served, 'plain1', 'hello.txt', 'through the server role\n');
    assertSignedBy(writesOf(key), 'test:server', issued.sessionToken, 'upload');
  });

  test('a server role STS refuses stops the server, naming the role', async () => {
    const aws = await fakeAws({ roles: { [role('s3sftp-server')]: { issue: issueFor('server'), externalId: 'right' } } });
    const r = await runToExit({
      ...staticKeys(),
      AWS_ENDPOINT_URL_STS: aws.url,
      S3SFTP_S3_CREDENTIALS_ROLEARN: role('s3sftp-server'),
      S3SFTP_S3_CREDENTIALS_EXTERNALID: 'wrong',
    });
    assert.equal(r.code, 2, r.output);
    assert.match(r.output, /cannot assume role arn:aws:iam::111122223333:role\/s3sftp-server: AccessDenied/);
  });

  test('per-user roles: each user signs with their own role; a refused role fails only that user', async () => {
    const aws = await fakeAws({
      roles: {
        [role('sftp-alice')]: { issue: issueFor('alice'), trustedKeys: [swift.accessKeyId] },
        [role('sftp-carol')]: { issue: issueFor('alice'), deny: true },
      },
    });
    const served = await serve({ ...staticKeys(), AWS_ENDPOINT_URL_STS: aws.url }, [
      { name: 'alice', roleArn: role('sftp-alice') },
      { name: 'bob' },
      { name: 'carol', roleArn: role('sftp-carol') },
    ]);
    // Start-up used the base keys only.
    assert.equal(aws.stsCalls.length, 0);

    // carol first: her role is refused; she gets "permission denied", the log names role and user.
    const local = join(dir, 'carol.txt');
    await writeFile(local, 'never stored\n');
    const carol = await sftpBatch(served.port, 'carol', keyFile, `put ${local} /carol.txt\n`, { timeoutMs: 60_000 });
    assert.notEqual(carol.code, 0);
    assert.match(carol.stderr, /Permission denied/i);
    const carolCalls = aws.stsCalls.filter((c) => c.params.RoleArn === role('sftp-carol'));
    assert.ok(carolCalls.length >= 1 && carolCalls.every((c) => c.status === 403));
    // The refusal is remembered: one STS call for her whole session, not one per request.
    assert.equal(carolCalls.length, 1);
    assert.ok(!recorder.requests.some((r) => r.path.includes('users/carol')), 'nothing reached S3 for carol');
    await waitFor(() => served.logs().includes('cannot assume role arn:aws:iam::111122223333:role/sftp-carol for user carol'), served);

    // alice and bob are unaffected.
    const aliceKey = await upload(served, 'alice', 'a.txt', 'alice via her role\n');
    const aliceCalls = aws.stsCalls.filter((c) => c.params.RoleArn === role('sftp-alice'));
    assert.equal(aliceCalls.length, 1);
    assert.equal(aliceCalls[0]?.signedBy, swift.accessKeyId, 'user roles are assumed with the server credentials');
    const aliceToken = aliceCalls[0]?.issued?.sessionToken;
    assert.ok(aliceToken);
    assertSignedBy(writesOf(aliceKey), 'test:alice', aliceToken, 'alice\'s upload');

    const bobKey = await upload(served, 'bob', 'b.txt', 'bob with the server keys\n');
    assertSignedBy(writesOf(bobKey), swift.accessKeyId, undefined, 'bob\'s upload');

    // A second alice session reuses the cached role credentials.
    await upload(served, 'alice', 'a2.txt', 'again\n');
    assert.equal(aws.stsCalls.filter((c) => c.params.RoleArn === role('sftp-alice')).length, 1);
  });

  test('credentials are renewed before they expire (IRSA base and a user role)', async () => {
    // Renewal starts 5 minutes before expiry: credentials valid for 5 min + 3 s are renewed after ~3 s.
    const ttlMs = 5 * 60_000 + 3_000;
    const aws = await fakeAws({
      webIdentity: { roleArn: role('s3sftp-irsa'), subject: SA_SUBJECT, issue: issueFor('irsa', ttlMs) },
      roles: { [role('sftp-refresh')]: { issue: issueFor('refresh', ttlMs), trustedKeys: ['test:irsa'] } },
    });
    const tokenFile = join(dir, 'refresh-token');
    await writeFile(tokenFile, aws.webIdentityToken(SA_SUBJECT));
    const served = await serve(
      {
        AWS_ROLE_ARN: role('s3sftp-irsa'),
        AWS_WEB_IDENTITY_TOKEN_FILE: tokenFile,
        AWS_ENDPOINT_URL_STS: aws.url,
        AWS_EC2_METADATA_DISABLED: 'true',
      },
      [{ name: 'refresh', roleArn: role('sftp-refresh') }],
    );
    const first = await upload(served, 'refresh', 'one.txt', '1\n');
    const assumed = () => aws.stsCalls.filter((c) => c.action === 'AssumeRole' && c.status === 200);
    const webIdentity = () => aws.stsCalls.filter((c) => c.action === 'AssumeRoleWithWebIdentity' && c.status === 200);
    assert.equal(assumed().length, 1);
    assert.equal(webIdentity().length, 1);
    assertSignedBy(writesOf(first), 'test:refresh', assumed()[0]?.issued?.sessionToken, 'first upload');

    await sleep(3_500);
    // Still-valid credentials keep serving while the renewal runs in the background.
    await upload(served, 'refresh', 'two.txt', '2\n');
    await waitFor(() => assumed().length >= 2, served);
    const third = await upload(served, 'refresh', 'three.txt', '3\n');
    assert.equal(assumed().length, 2, 'renewed once, not on every request');
    const renewed = assumed()[1]?.issued?.sessionToken;
    assert.ok(renewed);
    assertSignedBy(writesOf(third), 'test:refresh', renewed, 'upload after renewal');
    // The base (IRSA) credentials were renewed too, and the renewal of the role was signed with them.
    assert.ok(webIdentity().length >= 2);
    const baseTokens = new Set(webIdentity().map((c) => c.issued?.sessionToken));
    assert.ok(assumed().every((c) => c.signedBy === 'test:irsa' && baseTokens.has(c.signedWithToken)));
  });
});

describe('checkUserAccess (for the SftpUser status)', () => {
  test('reports ok, AssumeRoleFailed and BucketNotFound without throwing', async () => {
    const aws = await fakeAws({
      roles: {
        [role('sftp-alice')]: { issue: issueFor('alice') },
        [role('sftp-carol')]: { issue: issueFor('alice'), deny: true },
      },
    });
    const config = loadConfig({
      env: {
        S3SFTP_S3_BUCKET: bucket,
        S3SFTP_S3_ENDPOINT: recorder.endpoint,
        S3SFTP_S3_FORCEPATHSTYLE: 'true',
        S3SFTP_S3_CREDENTIALS_ACCESSKEYID: swift.accessKeyId,
        S3SFTP_S3_CREDENTIALS_SECRETACCESSKEY: swift.secretAccessKey,
      },
    });
    const log = pino({ level: 'silent' });
    const pool = new ClientPool({
      config: config.s3,
      log,
      identities: new Identities({ config: config.s3, log, assumeRole: stsRoleAssumer({ endpoint: aws.url }) }),
      clientOverrides: { maxAttempts: 1 },
    });
    try {
      const user = (name: string, s3: Partial<User['s3']> = {}): User => ({
        username: name,
        disabled: false,
        publicKeys: [],
        permissions: new Set(),
        source: 'test',
        s3: { bucket, keyPrefix: `users/${name}/`, ...s3 },
      });
      assert.deepEqual(await pool.checkUserAccess(user('bob')), { ok: true });
      assert.deepEqual(await pool.checkUserAccess(user('alice', { roleArn: role('sftp-alice') })), { ok: true });
      const carol = await pool.checkUserAccess(user('carol', { roleArn: role('sftp-carol') }));
      assert.equal(carol.ok, false);
      assert.ok(!carol.ok);
      assert.equal(carol.reason, 'AssumeRoleFailed');
      assert.match(carol.message, /^cannot assume role arn:aws:iam::111122223333:role\/sftp-carol: AccessDenied: .* \(for user carol\)$/);
      // A check asks STS again (the status must follow a fixed trust policy promptly).
      await pool.checkUserAccess(user('carol', { roleArn: role('sftp-carol') }));
      assert.equal(aws.stsCalls.filter((c) => c.params.RoleArn === role('sftp-carol')).length, 2);
      aws.roles.set(role('sftp-carol'), { issue: issueFor('alice') });
      assert.deepEqual(await pool.checkUserAccess(user('carol', { roleArn: role('sftp-carol') })), { ok: true });
      const missing = await pool.checkUserAccess(user('dave', { bucket: 'no-such-bucket-here' }));
      assert.deepEqual(missing.ok ? undefined : missing.reason, 'BucketNotFound');
    } finally {
      pool.destroy();
    }
  });
});

async function waitFor(check: () => boolean, served: Served, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) assert.fail(`condition not met within ${timeoutMs} ms\n--- server log ---\n${served.logs()}`);
    await sleep(50);
  }
}

/** Runs `s3sftp serve` expecting it to exit by itself (start-up failure). */
async function runToExit(env: Record<string, string>): Promise<{ code: number | null | 'timeout'; output: string }> {
  const home = await mkdtemp(join(dir, 'home-'));
  const child = spawn(process.execPath, [CLI_MAIN, 'serve'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      HOME: home,
      AWS_CONFIG_FILE: join(home, 'aws-config'),
      AWS_SHARED_CREDENTIALS_FILE: join(home, 'aws-credentials'),
      S3SFTP_LISTEN: '127.0.0.1:0',
      S3SFTP_METRICS_LISTEN: '127.0.0.1:0',
      S3SFTP_DATADIR: join(home, 'data'),
      S3SFTP_S3_BUCKET: bucket,
      S3SFTP_S3_ENDPOINT: recorder.endpoint,
      S3SFTP_S3_FORCEPATHSTYLE: 'true',
      ...env,
    },
  });
  let output = '';
  child.stdout?.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (output += d.toString()));
  const code = await Promise.race([
    new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c))),
    sleep(30_000).then(() => {
      child.kill('SIGKILL');
      return 'timeout' as const;
    }),
  ]);
  return { code, output };
}
