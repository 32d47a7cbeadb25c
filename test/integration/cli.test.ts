/**
 * The s3sftp command as an operator runs it: a start-up failure prints one line with the cause and the
 * fix, and exits 2 when a setting must change, 1 when the environment must (a port in use, an
 * unreachable API server).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { SwiftS3 } from '../../dev/swift.ts';
import { createBucket, run, s3Server, type RunResult } from '../support/harness.ts';
import { CLI_MAIN } from '../support/cli-server.ts';
import { verifyPassword } from '../../src/auth/password.ts';

let s3: SwiftS3;

before(async () => {
  s3 = await s3Server();
});
after(() => s3?.stop());

function serve(env: Record<string, string>) {
  return run(process.execPath, [CLI_MAIN, 'serve'], {
    timeoutMs: 60_000,
    env: {
      S3SFTP_LISTEN: '127.0.0.1:0',
      S3SFTP_METRICS_LISTEN: '127.0.0.1:0',
      S3SFTP_DATADIR: '/tmp/s3sftp-cli-test',
      S3SFTP_S3_ENDPOINT: s3.endpoint,
      S3SFTP_S3_FORCEPATHSTYLE: 'true',
      S3SFTP_S3_CREDENTIALS_ACCESSKEYID: s3.accessKeyId,
      S3SFTP_S3_CREDENTIALS_SECRETACCESSKEY: s3.secretAccessKey,
      ...env,
    },
  });
}

test('a missing bucket stops the server with exit code 2 and names the bucket', async () => {
  const r = await serve({ S3SFTP_S3_BUCKET: 'no-such-bucket-here' });
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /no-such-bucket-here/);
  assert.match(r.stderr, /does not exist/);
});

test('an invalid setting stops the server with exit code 2 and names the key', async () => {
  const r = await serve({ S3SFTP_S3_BUCKET: 'x', S3SFTP_S3_UPLOAD_PARTSIZE: '1MiB', S3SFTP_SETSTATMODE: '7' });
  assert.equal(r.code, 2);
  assert.match(r.stderr, /s3\.upload\.partSize/);
  assert.match(r.stderr, /setstatMode/);
});

test('hash-password prints a hash that verifies the password it read', async () => {
  const r = await run(process.execPath, [CLI_MAIN, 'hash-password'], { input: 's3cret\n' });
  assert.equal(r.code, 0, r.stderr);
  const hash = r.stdout.trim();
  assert.match(hash, /^\$argon2id\$/);
  assert.equal(await verifyPassword('s3cret', hash), true);
  assert.equal(await verifyPassword('s3cret\n', hash), false);
});

// ---- every start-up failure: one line with the cause and the fix, no stack, 2 or 1 ----------------

/** The one line a failed start-up prints, after checking there is exactly one and no stack trace. */
function failureLine(r: RunResult): string {
  assert.doesNotMatch(r.stderr, /^\s+at /m, 'a stack trace was printed');
  const lines = r.stderr.split('\n').filter((l) => l.trim() !== '');
  assert.equal(lines.length, 1, `expected one line, got:\n${r.stderr}`);
  return lines[0] ?? '';
}

async function withTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 's3sftp-startup-'));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** A port that was free a moment ago and is closed now. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Runs `fn` while something else listens on a port of 127.0.0.1. */
async function withPortTaken<T>(fn: (port: number) => Promise<T>): Promise<T> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    return await fn((server.address() as AddressInfo).port);
  } finally {
    await new Promise((resolve) => server.close(resolve));
  }
}

describe('start-up failures', () => {
  let bucket: string;
  before(async () => {
    bucket = await createBucket(s3);
  });

  test('an invalid value: exit 2, one line per problem, each naming the key and the fix', async () => {
    const r = await serve({ S3SFTP_S3_BUCKET: bucket, S3SFTP_LOG_LEVEL: 'loud', S3SFTP_LISTEN: '2022' });
    assert.equal(r.code, 2, r.stderr);
    assert.doesNotMatch(r.stderr, /^\s+at /m);
    const [head, ...problems] = r.stderr.trim().split('\n');
    assert.equal(head, 's3sftp: invalid configuration');
    assert.equal(problems.length, 2);
    for (const line of problems) assert.match(line, /^(log\.level|listen) \(env S3SFTP_\w+\): .*; use /);
  });

  test('a host key file that does not exist: exit 2, naming the file and hostKeys', async () => {
    const r = await serve({ S3SFTP_S3_BUCKET: bucket, S3SFTP_HOSTKEYS: '/nonexistent/ssh_host_key' });
    assert.equal(r.code, 2, r.stderr);
    const line = failureLine(r);
    assert.match(line, /\/nonexistent\/ssh_host_key does not exist/);
    assert.match(line, /hostKeys/);
  });

  test('a host key that is not a private key: exit 2, naming the file', async () => {
    await withTempDir(async (dir) => {
      const file = join(dir, 'not-a-key');
      await writeFile(file, 'hello\n');
      const r = await serve({ S3SFTP_S3_BUCKET: bucket, S3SFTP_HOSTKEYS: file });
      assert.equal(r.code, 2, r.stderr);
      const line = failureLine(r);
      assert.match(line, new RegExp(`host key ${file}`));
      assert.match(line, /list readable OpenSSH or PEM private keys/);
    });
  });

  test('a users directory that does not exist: exit 2, naming users.directory', async () => {
    const r = await serve({ S3SFTP_S3_BUCKET: bucket, S3SFTP_USERS_DIRECTORY: '/nonexistent/users' });
    assert.equal(r.code, 2, r.stderr);
    const line = failureLine(r);
    assert.match(line, /users\.directory \/nonexistent\/users does not exist; create it, or set users\.directory/);
  });

  test('the SSH port in use: exit 1; what was started is closed in reverse order', async () => {
    await withPortTaken(async (port) => {
      const r = await serve({ S3SFTP_S3_BUCKET: bucket, S3SFTP_LISTEN: `127.0.0.1:${port}`, S3SFTP_LOG_LEVEL: 'debug' });
      assert.equal(r.code, 1, r.stderr);
      const line = failureLine(r);
      assert.match(line, new RegExp(`cannot listen on 127\\.0\\.0\\.1:${port} \\(listen\\): the address is already in use; .*S3SFTP_LISTEN`));
      const closed = r.stdout
        .split('\n')
        .filter((l) => l.includes('after a failed start-up'))
        .map((l) => (JSON.parse(l) as { part: string }).part);
      assert.deepEqual(closed, ['SSH server', 'parked uploads', 'user sources', 'quota trackers', 'S3 clients', 'metrics listener']);
    });
  });

  test('the metrics port in use: exit 1, naming metrics.listen', async () => {
    await withPortTaken(async (port) => {
      const r = await serve({ S3SFTP_S3_BUCKET: bucket, S3SFTP_METRICS_LISTEN: `127.0.0.1:${port}` });
      assert.equal(r.code, 1, r.stderr);
      assert.match(failureLine(r), /\(metrics\.listen\): the address is already in use; .*S3SFTP_METRICS_LISTEN/);
    });
  });

  test('a missing bucket: exit 2, one line naming the bucket and the fix', async () => {
    const r = await serve({ S3SFTP_S3_BUCKET: 'no-such-bucket-here' });
    assert.equal(r.code, 2, r.stderr);
    assert.match(failureLine(r), /bucket no-such-bucket-here does not exist; create it, or set s3\.bucket/);
  });

  test('Kubernetes unreachable: exit 1, naming the API server and the fix', async () => {
    await withTempDir(async (dir) => {
      const port = await closedPort();
      const kubeconfig = join(dir, 'kubeconfig');
      await writeFile(
        kubeconfig,
        [
          'apiVersion: v1',
          'kind: Config',
          'clusters: [{ name: c, cluster: { server: "https://127.0.0.1:' + port + '", insecure-skip-tls-verify: true } }]',
          'users: [{ name: u, user: { token: t } }]',
          'contexts: [{ name: x, context: { cluster: c, user: u, namespace: sftp } }]',
          'current-context: x',
          '',
        ].join('\n'),
      );
      const r = await serve({ S3SFTP_S3_BUCKET: bucket, S3SFTP_USERS_KUBERNETES_ENABLED: 'true', S3SFTP_USERS_KUBERNETES_KUBECONFIG: kubeconfig });
      assert.equal(r.code, 1, r.stderr);
      const line = failureLine(r);
      assert.match(line, new RegExp(`cannot reach the Kubernetes API at https://127\\.0\\.0\\.1:${port} \\(ECONNREFUSED\\)`));
      assert.match(line, /check users\.kubernetes\.kubeconfig/);
    });
  });
});
