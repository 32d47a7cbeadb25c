import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough, Readable } from 'node:stream';
import { hashPassword, passwordHashAlgorithm, verifyPassword } from '../../src/auth/password.ts';
import { hashPasswordCommand } from '../../src/cli/hash-password.ts';

// Made outside this code base so the test does not just check our own output:
// bcrypt vectors by glibc/libxcrypt crypt(3), the argon2id one by Node's
// crypto.argon2Sync (OpenSSL) formatted as a PHC string.
const BCRYPT_2A = '$2a$04$abcdefghijklmnopqrstuujydOTSfIH/d5oUHpsygqV5X9xJLQc6e';
const BCRYPT_2B = '$2b$04$abcdefghijklmnopqrstuujydOTSfIH/d5oUHpsygqV5X9xJLQc6e';
const BCRYPT_2Y = '$2y$04$abcdefghijklmnopqrstuujydOTSfIH/d5oUHpsygqV5X9xJLQc6e';
const BCRYPT_UNICODE = '$2y$05$ZYXWVUTSRQPONMLKJIHGFepPkNAYO/AAKM6F2yOebeoZ8MpU.HKDa'; // "pässwörd ☃"
const ARGON2ID = '$argon2id$v=19$m=4096,t=2,p=1$c29tZXNhbHQxMjM0$cvEazogelEb60VCJP01gP23apDs0bsO4NQBlpChXn9U';
const PASSWORD = 'correct horse';

describe('verifyPassword', () => {
  for (const [name, hash] of [
    ['$2a$', BCRYPT_2A],
    ['$2b$', BCRYPT_2B],
    ['$2y$', BCRYPT_2Y],
    ['$argon2id$', ARGON2ID],
  ] as const) {
    test(`${name}: right password true, wrong password false`, async () => {
      assert.equal(await verifyPassword(PASSWORD, hash), true);
      assert.equal(await verifyPassword('correct horsE', hash), false);
      assert.equal(await verifyPassword('', hash), false);
      assert.equal(await verifyPassword(`${PASSWORD} `, hash), false);
    });
  }

  test('non-ASCII passwords are compared as UTF-8', async () => {
    assert.equal(await verifyPassword('pässwörd ☃', BCRYPT_UNICODE), true);
    assert.equal(await verifyPassword('passwoerd ☃', BCRYPT_UNICODE), false);
  });

  test('garbage or unsupported hashes give false and never throw', async () => {
    for (const hash of [
      '',
      'correct horse',
      '$2b$04$short',
      '$2x$04$abcdefghijklmnopqrstuujydOTSfIH/d5oUHpsygqV5X9xJLQc6e',
      '$argon2id$garbage',
      '$argon2id$v=19$m=4096,t=2,p=1$c29tZQ$!!!!',
      // Well-formed shapes the libraries reject (they throw; we must not):
      '$argon2id$v=19$m=1,t=1,p=1$c29tZQ$aGFzaA',
      '$2b$99$abcdefghijklmnopqrstuujydOTSfIH/d5oUHpsygqV5X9xJLQc6e',
      '$argon2i$v=19$m=4096,t=2,p=1$c29tZXNhbHQxMjM0$cvEazogelEb60VCJP01gP23apDs0bsO4NQBlpChXn9U',
      '$1$abc$def',
      '{SSHA}abcdef',
    ]) {
      assert.equal(await verifyPassword(PASSWORD, hash), false, hash);
    }
  });
});

describe('hashPassword', () => {
  test('argon2id by default, and it verifies', async () => {
    const hash = await hashPassword('s3cret!');
    assert.match(hash, /^\$argon2id\$/);
    assert.equal(passwordHashAlgorithm(hash), 'argon2id');
    assert.equal(await verifyPassword('s3cret!', hash), true);
    assert.equal(await verifyPassword('s3cret', hash), false);
  });

  test('bcrypt on request, and it verifies', async () => {
    const hash = await hashPassword('s3cret!', 'bcrypt');
    assert.match(hash, /^\$2b\$12\$/);
    assert.equal(await verifyPassword('s3cret!', hash), true);
  });

  test('the same password hashes differently each time (salted)', async () => {
    assert.notEqual(await hashPassword('same'), await hashPassword('same'));
  });

  test('refuses what bcrypt would silently truncate, and empty passwords', async () => {
    await assert.rejects(hashPassword('a'.repeat(73), 'bcrypt'), /72 bytes/);
    await assert.rejects(hashPassword(''), /empty/);
  });
});

describe('s3sftp hash-password', () => {
  async function run(input: string, args: string[] = []): Promise<{ code: number; out: string; err: string }> {
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    let out = '';
    let err = '';
    stdout.on('data', (c: Buffer) => (out += c.toString()));
    stderr.on('data', (c: Buffer) => (err += c.toString()));
    const code = await hashPasswordCommand(Readable.from([Buffer.from(input)]), stdout, args, stderr);
    return { code, out, err };
  }

  test('prints an argon2id hash of stdin minus one trailing newline', async () => {
    const { code, out } = await run('pw with spaces \n');
    assert.equal(code, 0);
    assert.match(out, /^\$argon2id\$\S+\n$/);
    assert.equal(await verifyPassword('pw with spaces ', out.trim()), true);
  });

  test('only one newline is stripped', async () => {
    const { out } = await run('pw\n\n');
    assert.equal(await verifyPassword('pw\n', out.trim()), true);
  });

  test('--bcrypt prints a bcrypt hash', async () => {
    const { code, out } = await run('pw\r\n', ['--bcrypt']);
    assert.equal(code, 0);
    assert.match(out, /^\$2b\$/);
    assert.equal(await verifyPassword('pw', out.trim()), true);
  });

  test('an empty password is refused with exit code 1 and nothing on stdout', async () => {
    for (const input of ['', '\n']) {
      const { code, out, err } = await run(input);
      assert.equal(code, 1);
      assert.equal(out, '');
      assert.match(err, /empty password/);
    }
  });

  test('an unknown argument is a usage error', async () => {
    const { code, err } = await run('pw', ['--md5']);
    assert.equal(code, 2);
    assert.match(err, /unknown argument "--md5"[\s\S]*usage/);
  });
});
