/**
 * Server-side encryption through the real server: OpenSSH's sftp drives every kind of write and
 * read, and a recording proxy in front of Swift (test/support/s3-sse-proxy.ts) checks the headers
 * each S3 request carried. Swift's s3api refuses SSE headers (501), so the proxy removes them
 * after recording and signs the request again: the data path is real, the encryption is not.
 *
 * One server, three users: the server's own aws:kms settings (alice), a user overriding the mode
 * to AES256 (bob), and a user with SSE-C from a key file (carol).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { SwiftS3 } from '../../dev/swift.ts';
import { createBucket, makeClientKey, s3Server, sftpBatch, startTestServer, userYaml, type TestServer } from '../support/harness.ts';
import { startSseProxy, type SseProxy, type SseRecord } from '../support/s3-sse-proxy.ts';

const MiB = 1024 ** 2;
let s3: SwiftS3;
let proxy: SseProxy;
let server: TestServer;
let dir: string;
let keyFile: string;
const customerKey = randomBytes(32);

before(async () => {
  s3 = await s3Server();
  const bucket = await createBucket(s3);
  proxy = await startSseProxy(s3.endpoint, { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey, region: s3.region });
  dir = await mkdtemp(join(tmpdir(), 's3sftp-sse-'));
  keyFile = await makeClientKey(dir);
  await writeFile(join(dir, 'carol.key'), `${customerKey.toString('base64')}\n`);
  server = await startTestServer({
    s3: { ...s3, endpoint: proxy.endpoint },
    bucket,
    env: {
      S3SFTP_S3_SSE_MODE: 'aws:kms',
      S3SFTP_S3_SSE_KMSKEYID: 'alias/s3sftp-test',
      S3SFTP_S3_SSE_BUCKETKEYENABLED: 'true',
    },
    users: [{ username: 'alice', keyFile, keyPrefix: 'alice/' }],
  });
  const usersDir = join(server.dir, 'users');
  for (const [name, sse] of [
    ['bob', { mode: 'AES256' }],
    ['carol', { customerKeyFile: join(dir, 'carol.key') }],
  ] as const) {
    const doc = JSON.parse(await userYaml({ username: name, keyFile, keyPrefix: `${name}/` }));
    doc.spec.s3.sse = sse;
    await writeFile(join(usersDir, `${name}.yaml`), JSON.stringify(doc));
  }
  // The directory source picks new files up on its own; wait until both can log in.
  for (const name of ['bob', 'carol']) {
    for (let i = 0; i < 100; i++) {
      if ((await sftpBatch(server.port, name, keyFile, 'pwd\n')).code === 0) break;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  const big = randomBytes(12 * MiB);
  await writeFile(join(dir, 'small.bin'), randomBytes(1000));
  await writeFile(join(dir, 'big.bin'), big);
  await writeFile(join(dir, 'half.bin'), big.subarray(0, 6 * MiB));
});

after(async () => {
  await server?.stop();
  await proxy?.close();
  await s3?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** Every write and read kind: small and multipart uploads, mkdir, mtime, rename, resume, stat, download. */
async function exercise(user: string): Promise<SseRecord[]> {
  const mark = proxy.requests.length;
  const out = join(dir, `${user}-back.bin`);
  const result = await sftpBatch(
    server.port,
    user,
    keyFile,
    [
      `put -p ${join(dir, 'small.bin')} small.bin`,
      `put ${join(dir, 'big.bin')} big.bin`,
      'mkdir d',
      'rename small.bin d/moved.bin',
      `put ${join(dir, 'half.bin')} resumed.bin`,
      `reput ${join(dir, 'big.bin')} resumed.bin`,
      'ls -l resumed.bin',
      `get resumed.bin ${out}`,
    ].join('\n'),
  );
  assert.equal(result.code, 0, result.stderr);
  const back = await readFile(out);
  assert.equal(createHash('sha256').update(back).digest('hex'), createHash('sha256').update(await readFile(join(dir, 'big.bin'))).digest('hex'));
  const mine = proxy.requests.slice(mark).filter((r) => r.path.includes(`/${user}/`) || r.path.includes(`%2F${user}%2F`) || r.path.includes(`prefix=${user}`));
  // 404s are the server's own existence checks; a refused signature or header would be 400/403/501.
  for (const r of mine) assert.ok(r.status < 400 || r.status === 404, `${r.kind} ${r.path} answered ${r.status}`);
  return mine;
}

function kinds(records: SseRecord[]): Set<string> {
  return new Set(records.map((r) => r.kind));
}

test('aws:kms from the server config: every object creation names the key; parts and reads carry nothing', async () => {
  const records = await exercise('alice');
  const seen = kinds(records);
  for (const kind of ['PutObject', 'CreateMultipartUpload', 'CopyObject', 'UploadPart', 'UploadPartCopy', 'GetObject', 'HeadObject']) {
    assert.ok(seen.has(kind), `no ${kind} was made (${[...seen].join(', ')})`);
  }
  for (const r of records) {
    if (r.kind === 'PutObject' || r.kind === 'CreateMultipartUpload' || r.kind === 'CopyObject') {
      assert.deepEqual(
        r.sse,
        {
          'x-amz-server-side-encryption': 'aws:kms',
          'x-amz-server-side-encryption-aws-kms-key-id': 'alias/s3sftp-test',
          'x-amz-server-side-encryption-bucket-key-enabled': 'true',
        },
        `${r.kind} ${r.path}`,
      );
    } else {
      // S3 refuses SSE-KMS headers on UploadPart, GET and HEAD.
      assert.deepEqual(r.sse, {}, `${r.kind} ${r.path}`);
    }
  }
});

test('a user overriding the mode with AES256 sends only that, and no KMS key', async () => {
  const records = await exercise('bob');
  for (const r of records) {
    const creates = r.kind === 'PutObject' || r.kind === 'CreateMultipartUpload' || r.kind === 'CopyObject';
    assert.deepEqual(r.sse, creates ? { 'x-amz-server-side-encryption': 'AES256' } : {}, `${r.kind} ${r.path}`);
  }
});

test('SSE-C from a key file: every request that touches bytes carries the key, copies carry it twice', async () => {
  const records = await exercise('carol');
  const key = customerKey.toString('base64');
  const md5 = createHash('md5').update(customerKey).digest('base64');
  const customer = {
    'x-amz-server-side-encryption-customer-algorithm': 'AES256',
    'x-amz-server-side-encryption-customer-key': key,
    'x-amz-server-side-encryption-customer-key-md5': md5,
  };
  const source = {
    'x-amz-copy-source-server-side-encryption-customer-algorithm': 'AES256',
    'x-amz-copy-source-server-side-encryption-customer-key': key,
    'x-amz-copy-source-server-side-encryption-customer-key-md5': md5,
  };
  const seen = kinds(records);
  for (const kind of ['PutObject', 'CreateMultipartUpload', 'UploadPart', 'UploadPartCopy', 'CompleteMultipartUpload', 'CopyObject', 'GetObject', 'HeadObject']) {
    assert.ok(seen.has(kind), `no ${kind} was made`);
  }
  for (const r of records) {
    if (r.kind === 'CopyObject' || r.kind === 'UploadPartCopy') assert.deepEqual(r.sse, { ...customer, ...source }, `${r.kind} ${r.path}`);
    else if (['PutObject', 'CreateMultipartUpload', 'UploadPart', 'CompleteMultipartUpload', 'GetObject', 'HeadObject'].includes(r.kind)) {
      assert.deepEqual(r.sse, customer, `${r.kind} ${r.path}`);
    } else assert.deepEqual(r.sse, {}, `${r.kind} ${r.path}`);
  }
});
