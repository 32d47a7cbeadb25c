/** The s3sftp command as an operator runs it: start-up failures exit 2 with a message that says what to fix. */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { SwiftS3 } from '../../dev/swift.ts';
import { run, s3Server } from '../support/harness.ts';
import { verifyPassword } from '../../src/auth/password.ts';

const MAIN = join(import.meta.dirname, '../../src/cli/main.ts');
let s3: SwiftS3;

before(async () => {
  s3 = await s3Server();
});
after(() => s3?.stop());

function serve(env: Record<string, string>) {
  return run(process.execPath, [MAIN, 'serve'], {
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
  const r = await run(process.execPath, [MAIN, 'hash-password'], { input: 's3cret\n' });
  assert.equal(r.code, 0, r.stderr);
  const hash = r.stdout.trim();
  assert.match(hash, /^\$argon2id\$/);
  assert.equal(await verifyPassword('s3cret', hash), true);
  assert.equal(await verifyPassword('s3cret\n', hash), false);
});
