/** Server-side encryption settings: request fields per command kind, validation, effective settings. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { effectiveSse, NO_SSE, parseCustomerKey, serverSse, sseFields, sseProblems } from '../../src/storage/s3/encryption.ts';
import { ConfigError, loadConfig } from '../../src/config/load.ts';
import { parseSftpUser } from '../../src/users/sftp-user.ts';
import { resolveSseKey } from '../../src/kube/user-table.ts';

const kms = { mode: 'aws:kms' as const, kmsKeyId: 'alias/k', bucketKeyEnabled: true };

test('SSE-KMS goes on object creations only; parts, reads and completions carry nothing', () => {
  const expected = { ServerSideEncryption: 'aws:kms', SSEKMSKeyId: 'alias/k', BucketKeyEnabled: true };
  for (const kind of ['PutObject', 'CreateMultipartUpload', 'CopyObject'] as const) assert.deepEqual(sseFields(kms, kind), expected);
  for (const kind of ['UploadPart', 'UploadPartCopy', 'CompleteMultipartUpload', 'GetObject', 'HeadObject'] as const) {
    assert.deepEqual(sseFields(kms, kind), {});
  }
  assert.deepEqual(sseFields({ mode: 'AES256', kmsKeyId: '', bucketKeyEnabled: false }, 'PutObject'), { ServerSideEncryption: 'AES256' });
  assert.deepEqual(sseFields(NO_SSE, 'PutObject'), {});
});

test('SSE-C sends the key and its MD5 everywhere, and as the copy source on copies', () => {
  const key = randomBytes(32);
  const sse = { ...NO_SSE, customerKey: key };
  const customer = { SSECustomerAlgorithm: 'AES256', SSECustomerKey: key.toString('base64'), SSECustomerKeyMD5: createHash('md5').update(key).digest('base64') };
  assert.deepEqual(sseFields(sse, 'GetObject'), customer);
  assert.deepEqual(sseFields(sse, 'UploadPart'), customer);
  assert.deepEqual(sseFields(sse, 'UploadPartCopy'), {
    ...customer,
    CopySourceSSECustomerAlgorithm: 'AES256',
    CopySourceSSECustomerKey: customer.SSECustomerKey,
    CopySourceSSECustomerKeyMD5: customer.SSECustomerKeyMD5,
  });
});

test('settings that cannot work are refused with the field and the fix', () => {
  assert.match(sseProblems({ mode: 'AES256', kmsKeyId: 'alias/k', bucketKeyEnabled: false }, 's3.sse.').join(), /s3\.sse\.kmsKeyId: .*only aws:kms/);
  assert.match(sseProblems({ mode: 'aws:kms:dsse', kmsKeyId: '', bucketKeyEnabled: true }, 's3.sse.').join(), /bucketKeyEnabled/);
  assert.match(sseProblems({ mode: 'aws:kms', kmsKeyId: '', bucketKeyEnabled: false, hasCustomerKey: true }, 's3.sse.').join(), /SSE-C .* cannot be combined/);
  assert.deepEqual(sseProblems(kms, 's3.sse.'), []);
  assert.match((parseCustomerKey('not base64!', 'the key') as { error: string }).error, /not base64/);
  assert.match((parseCustomerKey(randomBytes(16).toString('base64'), 'the key') as { error: string }).error, /16 bytes; SSE-C needs exactly 32/);
  assert.ok('key' in parseCustomerKey(`${randomBytes(32).toString('base64')}\n`, 'the key'));
});

test('the server config refuses a KMS key without a KMS mode, and reads the SSE-C key file at start', () => {
  assert.throws(
    () => loadConfig({ env: { S3SFTP_S3_BUCKET: 'b', S3SFTP_S3_SSE_MODE: 'AES256', S3SFTP_S3_SSE_KMSKEYID: 'alias/k' } }),
    (err: unknown) => err instanceof ConfigError && /s3\.sse\.kmsKeyId/.test(err.message),
  );
  assert.throws(() => loadConfig({ env: { S3SFTP_S3_BUCKET: 'b', S3SFTP_S3_SSE_MODE: 'aes' } }), /s3\.sse\.mode/);
  const config = loadConfig({ env: { S3SFTP_S3_BUCKET: 'b', S3SFTP_S3_SSE_MODE: 'aws:kms', S3SFTP_S3_SSE_KMSKEYID: 'alias/k' } });
  assert.deepEqual(serverSse(config.s3.sse, () => Buffer.alloc(0)), { mode: 'aws:kms', kmsKeyId: 'alias/k', bucketKeyEnabled: false });
  assert.throws(() => serverSse({ mode: 'none', kmsKeyId: '', bucketKeyEnabled: false, customerKeyFile: '/k' }, () => Buffer.from('short')), /not base64|bytes/);
});

test('a user overrides the server field by field; an SSE-C key replaces the mode; an unreadable key file refuses every request', () => {
  const server = { mode: 'aws:kms' as const, kmsKeyId: 'alias/server', bucketKeyEnabled: true };
  assert.deepEqual(effectiveSse(server, { kmsKeyId: 'alias/user' }, () => Buffer.alloc(0)), { mode: 'aws:kms', kmsKeyId: 'alias/user', bucketKeyEnabled: true });
  assert.deepEqual(effectiveSse(server, { mode: 'AES256' }, () => Buffer.alloc(0)), { mode: 'AES256', kmsKeyId: '', bucketKeyEnabled: false });
  const key = randomBytes(32);
  assert.deepEqual(effectiveSse(server, { customerKeyFile: '/k' }, () => Buffer.from(key.toString('base64'))).customerKey, key);
  const broken = effectiveSse(server, { customerKeyFile: '/missing' }, () => {
    throw Object.assign(new Error('nope'), { code: 'ENOENT' });
  });
  assert.match(broken.unusable ?? '', /cannot be read \(ENOENT\)/);
});

test('spec.s3.sse is parsed, checked and its Secret reference returned', () => {
  const doc = (sse: unknown) => ({
    apiVersion: 's3sftp.io/v1alpha1',
    kind: 'SftpUser',
    metadata: { name: 'alice' },
    spec: { s3: { keyPrefix: 'a/', sse }, permissions: ['*'] },
  });
  const ok = parseSftpUser(doc({ mode: 'aws:kms', kmsKeyId: 'alias/a' }), { defaultBucket: 'b', source: 't' });
  assert.ok('user' in ok);
  assert.deepEqual({ ...ok.user.s3.sse }, { mode: 'aws:kms', kmsKeyId: 'alias/a' });
  const bad = parseSftpUser(doc({ mode: 'AES256', kmsKeyId: 'alias/a', extra: 1 }), { defaultBucket: 'b', source: 't' });
  assert.ok('error' in bad);
  assert.match(bad.error, /spec\.s3\.sse\.extra: is not a known field/);
  assert.match(bad.error, /spec\.s3\.sse\.kmsKeyId: is set, but only aws:kms/);
  const withRef = parseSftpUser(doc({ customerKeySecretRef: { name: 'alice-sse' } }), { defaultBucket: 'b', source: 't' });
  assert.ok('user' in withRef);
  assert.deepEqual(withRef.sseKeySecretRef, { name: 'alice-sse', key: 'key' });
  const both = parseSftpUser(doc({ mode: 'aws:kms', customerKeySecretRef: { name: 'alice-sse' } }), { defaultBucket: 'b', source: 't' });
  assert.ok('error' in both && /cannot be combined/.test(both.error));
});

test('the SSE-C key from a Secret: missing, short and valid', () => {
  const ref = { name: 'alice-sse', key: 'key' };
  const secrets = (data: Record<string, string> | undefined) => ({
    listed: true as const,
    get: (name: string) => (name === 'alice-sse' && data ? { metadata: { name }, data } : undefined),
  });
  assert.deepEqual(resolveSseKey('ns', ref, { listed: false }), undefined);
  assert.equal((resolveSseKey('ns', ref, secrets(undefined)) as { reason: string }).reason, 'SecretNotFound');
  const short = Buffer.from(randomBytes(8).toString('base64')).toString('base64');
  assert.equal((resolveSseKey('ns', ref, secrets({ key: short })) as { reason: string }).reason, 'InvalidSecret');
  const key = randomBytes(32);
  const good = resolveSseKey('ns', ref, secrets({ key: Buffer.from(key.toString('base64')).toString('base64') }));
  assert.deepEqual((good as { key: Buffer }).key, key);
});
