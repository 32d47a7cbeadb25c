/**
 * Hostile or broken clients: garbage on the TCP port, a malformed SFTP packet,
 * an unknown extension, requests on handles that do not exist. Each gets a
 * clear refusal; the process and the other sessions carry on.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ssh2 from 'ssh2';
import type { ClientChannel } from 'ssh2';
import type { SwiftS3 } from '../../dev/swift.ts';
import { createBucket, makeClientKey, s3Server, sftpBatch, startTestServer, type TestServer } from '../support/harness.ts';

let s3: SwiftS3;
let srv: TestServer;
let work: string;
let key: string;

before(async () => {
  s3 = await s3Server();
  work = await mkdtemp(join(tmpdir(), 's3sftp-robust-'));
  key = await makeClientKey(work, 'dora');
  srv = await startTestServer({ s3, bucket: await createBucket(s3), users: [{ username: 'dora', keyFile: key, keyPrefix: 'dora/' }] });
});

after(async () => {
  await srv?.stop();
  await s3?.stop();
  await rm(work, { recursive: true, force: true });
});

async function connectClient(): Promise<ssh2.Client> {
  const client = new ssh2.Client();
  const privateKey = await readFile(key);
  await new Promise<void>((resolve, reject) => {
    client.once('ready', resolve).once('error', reject);
    client.connect({ host: '127.0.0.1', port: srv.port, username: 'dora', privateKey });
  });
  return client;
}

/** An authenticated ssh2 client with the raw sftp subsystem channel, to send bytes of our own. */
async function rawSftpChannel(): Promise<{ client: ssh2.Client; channel: ClientChannel }> {
  const client = await connectClient();
  const channel = await new Promise<ClientChannel>((resolve, reject) => client.subsys('sftp', (err, ch) => (err ? reject(err) : resolve(ch))));
  return { client, channel };
}

async function stillServes(): Promise<void> {
  const r = await sftpBatch(srv.port, 'dora', key, 'pwd\n', { timeoutMs: 30_000 });
  assert.equal(r.code, 0, r.stderr);
}

test('garbage instead of an SSH handshake is dropped; the server keeps serving', async () => {
  await new Promise<void>((resolve) => {
    const sock = connect(srv.port, '127.0.0.1', () => sock.end(Buffer.from('GET / HTTP/1.1\r\n\r\n\x00\xff\xfe garbage')));
    sock.on('data', () => undefined);
    sock.on('close', () => resolve());
    sock.on('error', () => resolve());
    sock.setTimeout(10_000, () => sock.destroy());
  });
  await stillServes();
});

test('a malformed SFTP packet closes that channel only; the process and other sessions carry on', async () => {
  const bystander = await rawSftpChannel();
  const { client, channel } = await rawSftpChannel();
  const closed = new Promise<void>((resolve) => channel.on('close', () => resolve()));
  channel.resume(); // the stream ends (and closes) only once its data is consumed
  // INIT, then a READ whose declared length runs past the packet.
  channel.write(Buffer.from([0, 0, 0, 5, 1, 0, 0, 0, 3]));
  channel.write(Buffer.from([0, 0, 0, 9, 5, 0, 0, 0, 1, 0, 0, 0, 200]));
  const outcome = await Promise.race([closed.then(() => 'closed'), new Promise((r) => setTimeout(() => r('still open'), 10_000))]);
  assert.equal(outcome, 'closed', 'the server closes the channel that sent garbage');
  client.end();
  assert.equal(bystander.channel.destroyed, false, 'another session on another connection is untouched');
  bystander.client.end();
  await stillServes();
});

test('requests on unknown handles and paths above the root get error statuses, not a hang', async () => {
  const client = await connectClient();
  const sftp = await new Promise<ssh2.SFTPWrapper>((resolve, reject) => client.sftp((err, s) => (err ? reject(err) : resolve(s))));
  const bogus = Buffer.from([0, 0, 0, 99]);
  const readErr = await new Promise<Error | undefined>((resolve) => sftp.read(bogus, Buffer.alloc(10), 0, 10, 0, (err) => resolve(err ?? undefined)));
  assert.match(String(readErr?.message), /invalid handle|Failure/i);
  const closeErr = await new Promise<Error | undefined>((resolve) => sftp.close(bogus, (err) => resolve(err ?? undefined)));
  assert.ok(closeErr, 'closing an unknown handle fails');
  const stat = await new Promise<Error | undefined>((resolve) => sftp.stat('/../../../../etc/passwd', (err) => resolve(err ?? undefined)));
  assert.match(String(stat?.message), /No such file/i, 'a path above the root is the root-relative /etc/passwd, which does not exist');
  client.end();
  await stillServes();
});
