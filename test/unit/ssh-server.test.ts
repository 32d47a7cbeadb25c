/**
 * The SSH front door over the in-process server: who gets in, who is thrown
 * out when the user table changes, and a drain that lets an upload finish.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { after, before, describe, test } from 'node:test';
import ssh2 from 'ssh2';
import { generateEd25519 } from '../../src/ssh/keygen.ts';
import { startInProcessServer, type InProcessServer } from '../support/in-process-server.ts';
import { SftpClient } from '../support/sftp-client.ts';

let srv: InProcessServer;

before(async () => {
  srv = await startInProcessServer({ users: [{ username: 'alice' }, { username: 'bob' }, { username: 'carol' }] });
});

after(() => srv.stop());

describe('ssh server', () => {
  test('an unknown user or a foreign key is refused', async () => {
    await assert.rejects(srv.connect('nobody'), /authentication/i);
    const client = new ssh2.Client();
    client.connect({ host: '127.0.0.1', port: srv.port, username: 'alice', privateKey: generateEd25519().private });
    const [err] = await once(client, 'error');
    assert.match((err as Error).message, /authentication/i);
  });

  test('removing a user ends their connection; other users stay', async () => {
    const bob = await srv.connect('bob');
    const alice = new SftpClient(await srv.sftp('alice'));
    const closed = once(bob, 'close');
    srv.users.remove('bob');
    await closed;
    assert.equal(await alice.realpath('.'), '/');
  });

  test('a drain lets an open upload finish and refuses new sessions', async () => {
    const client = await srv.connect('carol');
    const carol = await new Promise<SftpClient>((resolve, reject) =>
      client.sftp((err, sftp) => (err ? reject(err) : resolve(new SftpClient(sftp)))),
    );
    const handle = await carol.open('/during-drain', 'w');
    await carol.write(handle, 0, Buffer.from('first half '));
    const drained = srv.ssh.drain(10_000);
    assert.equal(srv.ssh.draining, true);
    await assert.rejects(new Promise((resolve, reject) => client.sftp((err, s) => (err ? reject(err) : resolve(s)))));
    await carol.write(handle, 11, Buffer.from('second half'));
    await carol.close(handle);
    await drained;
    assert.equal(srv.bucket.get('carol/during-drain')?.data.toString(), 'first half second half');
  });
});
