/**
 * Legacy SCP (`scp -t` / `scp -f` over exec), fast: the real SshServer and
 * ScpSession over MemoryStorage, with the rcp protocol spoken byte by byte by
 * the test (test/integration/scp-legacy.test.ts runs OpenSSH's scp -O against
 * Swift). Uploads, downloads, directories, times, permissions and errors.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import type { ClientChannel } from 'ssh2';
import { PERMISSIONS, type Permission } from '../../src/users/user.ts';
import { startInProcessServer, type ExecChannel, type InProcessServer } from '../support/in-process-server.ts';
import { listAll, readFile, summary, writeFile } from '../support/storage-conformance.ts';

/** The client end of an scp exec channel: reads what the server sends, byte-exact. */
class ScpPeer {
  readonly channel: ClientChannel;
  #buffer = Buffer.alloc(0);
  #waiters: (() => void)[] = [];
  #ended = false;
  stderr = '';
  readonly exit: Promise<number | undefined>;

  constructor(channel: ExecChannel) {
    this.channel = channel;
    channel.on('data', (data: Buffer) => {
      this.#buffer = Buffer.concat([this.#buffer, data]);
      this.#wake();
    });
    channel.stderr.on('data', (data: Buffer) => (this.stderr += data.toString()));
    this.exit = new Promise((resolve) => {
      let code: number | undefined;
      channel.on('exit', (c: number) => (code = c));
      channel.on('close', () => {
        this.#ended = true;
        this.#wake();
        resolve(code ?? channel.exitCode);
      });
    });
  }

  #wake(): void {
    for (const w of this.#waiters.splice(0)) w();
  }

  async #until(ready: () => boolean): Promise<void> {
    while (!ready()) {
      if (this.#ended) throw new Error(`channel closed; stderr: ${this.stderr}`);
      await new Promise<void>((resolve) => this.#waiters.push(resolve));
    }
  }

  async bytes(n: number): Promise<Buffer> {
    await this.#until(() => this.#buffer.length >= n);
    const out = this.#buffer.subarray(0, n);
    this.#buffer = this.#buffer.subarray(n);
    return out;
  }

  async line(): Promise<string> {
    await this.#until(() => this.#buffer.includes(0x0a));
    const end = this.#buffer.indexOf(0x0a);
    const out = this.#buffer.toString('utf8', 0, end);
    this.#buffer = this.#buffer.subarray(end + 1);
    return out;
  }

  /** One answer: "" for "\0", else "\1message" / "\2message". */
  async response(): Promise<string> {
    const [first] = await this.bytes(1);
    if (first === 0) return '';
    return String.fromCharCode(first!) + (await this.line());
  }

  send(data: string | Buffer): void {
    this.channel.write(data);
  }

  /** Ends our side and waits for the exit status. */
  async finish(): Promise<number | undefined> {
    this.channel.end();
    return this.exit;
  }
}

let srv: InProcessServer;

before(async () => {
  srv = await startInProcessServer({ users: [{ username: 'alice' }], setstatMode: 2 });
});

after(() => srv.stop());

const scp = async (command: string, username = 'alice') => new ScpPeer(await srv.exec(username, command));

/** Sends one file record and its data; the server's answers to the record and to the data. */
async function sendFile(peer: ScpPeer, name: string, data: Buffer): Promise<[string, string]> {
  peer.send(`C0644 ${data.length} ${name}\n`);
  const record = await peer.response();
  if (record !== '') return [record, ''];
  peer.send(data);
  peer.send('\0');
  return [record, await peer.response()];
}

describe('upload (scp -t)', () => {
  test('files into a directory and onto a new name', async () => {
    await srv.storageOf('alice').mkdir('/in');
    const data = randomBytes(3 * 1024 * 1024 + 7);
    const peer = await scp('scp -t /in');
    assert.equal(await peer.response(), '');
    assert.deepEqual(await sendFile(peer, 'big.bin', data), ['', '']);
    assert.deepEqual(await sendFile(peer, 'small.txt', Buffer.from('small')), ['', '']);
    assert.equal(await peer.finish(), 0);
    assert.deepEqual(await readFile(srv.storageOf('alice'), '/in/big.bin'), data);

    const renamed = await scp('scp -t /renamed.txt');
    assert.equal(await renamed.response(), '');
    assert.deepEqual(await sendFile(renamed, 'whatever.txt', Buffer.from('r')), ['', '']);
    assert.equal(await renamed.finish(), 0);
    assert.deepEqual(await readFile(srv.storageOf('alice'), '/renamed.txt'), Buffer.from('r'));
  });

  test('-r creates directories; -p keeps the modification time (setstatMode 2)', async () => {
    const peer = await scp('scp -r -p -t /');
    assert.equal(await peer.response(), '');
    peer.send('D0755 0 tree\n');
    assert.equal(await peer.response(), '');
    peer.send('T1000000000 0 1000000000 0\n');
    assert.equal(await peer.response(), '');
    assert.deepEqual(await sendFile(peer, 'leaf', Buffer.from('leaf')), ['', '']);
    peer.send('D0755 0 sub\n');
    assert.equal(await peer.response(), '');
    peer.send('E\n');
    assert.equal(await peer.response(), '');
    peer.send('E\n');
    assert.equal(await peer.response(), '');
    assert.equal(await peer.finish(), 0);
    const storage = srv.storageOf('alice');
    assert.deepEqual(summary(await listAll(storage, '/tree')), ['leaf', 'sub/']);
    assert.equal((await storage.stat('/tree/leaf')).mtime.getTime(), 1_000_000_000_000);
  });

  test('a connection lost in the middle of a file stores nothing and leaves no upload', async () => {
    const peer = await scp('scp -t /cut.bin');
    assert.equal(await peer.response(), '');
    peer.send('C0644 100000 cut.bin\n');
    assert.equal(await peer.response(), '');
    peer.send(Buffer.alloc(50_000));
    for (let i = 0; i < 200 && srv.storageOf('alice').leftoverUploads().length === 0; i++) await sleep(5);
    peer.channel.close();
    await peer.exit;
    for (let i = 0; i < 200 && srv.storageOf('alice').leftoverUploads().length > 0; i++) await sleep(10);
    assert.deepEqual(srv.storageOf('alice').leftoverUploads(), []);
    await assert.rejects(srv.storageOf('alice').stat('/cut.bin'));
  });

  test('a name reaching outside the target ends the session with a fatal error', async () => {
    const peer = await scp('scp -t /');
    assert.equal(await peer.response(), '');
    peer.send('C0644 1 ../escape\n');
    assert.match(await peer.response(), /^\x02scp: protocol error: refused file name/);
    assert.equal(await peer.exit, 1);
  });

  test('the client reporting an error while sending stores nothing', async () => {
    const peer = await scp('scp -t /client-error.txt');
    assert.equal(await peer.response(), '');
    peer.send('C0644 3 client-error.txt\n');
    assert.equal(await peer.response(), '');
    peer.send('abc');
    peer.send('\x01read error\n');
    assert.match(await peer.response(), /^\x01scp: \/client-error\.txt: the client reported an error/);
    assert.equal(await peer.finish(), 1);
    await assert.rejects(srv.storageOf('alice').stat('/client-error.txt'));
  });

  test('-d with a target that is not a directory is refused', async () => {
    const peer = await scp('scp -d -t /no-such-dir');
    assert.match(await peer.response(), /^\x02scp: \/no-such-dir: no such directory/);
    assert.equal(await peer.exit, 1);
  });
});

describe('download (scp -f)', () => {
  before(async () => {
    const storage = srv.storageOf('alice');
    await writeFile(storage, '/down/one.txt', Buffer.from('one'));
    await writeFile(storage, '/down/deeper/two.txt', Buffer.from('two two'));
    await storage.setMtime('/down/one.txt', new Date('2002-03-04T05:06:07Z'));
  });

  test('one file, with -p its time first', async () => {
    const peer = await scp('scp -p -f /down/one.txt');
    peer.send('\0');
    assert.equal(await peer.line(), `T${Date.UTC(2002, 2, 4, 5, 6, 7) / 1000} 0 ${Date.UTC(2002, 2, 4, 5, 6, 7) / 1000} 0`);
    peer.send('\0');
    assert.equal(await peer.line(), 'C0644 3 one.txt');
    peer.send('\0');
    assert.deepEqual(await peer.bytes(4), Buffer.from('one\0'));
    peer.send('\0');
    assert.equal(await peer.finish(), 0);
  });

  test('-r sends the directory tree', async () => {
    const peer = await scp('scp -r -f /down');
    peer.send('\0');
    const records: string[] = [];
    for (let i = 0; i < 20; i++) {
      const [first] = await peer.bytes(1);
      const line = String.fromCharCode(first!) + (await peer.line());
      records.push(line);
      peer.send('\0');
      const file = /^C0644 (\d+) /.exec(line);
      if (file) {
        records.push((await peer.bytes(Number(file[1]) + 1)).subarray(0, -1).toString());
        peer.send('\0');
      }
      if (records.filter((r) => r === 'E').length === 2) break;
    }
    assert.deepEqual(records, ['D0755 0 down', 'D0755 0 deeper', 'C0644 7 two.txt', 'two two', 'E', 'C0644 3 one.txt', 'one', 'E']);
    assert.equal(await peer.finish(), 0);
  });

  test('a missing file is a warning naming it, the others still come, exit status 1', async () => {
    const peer = await scp('scp -f /missing /down/one.txt');
    peer.send('\0');
    assert.match(await peer.response(), /^\x01scp: \/missing: no such file/);
    assert.equal(await peer.line(), 'C0644 3 one.txt');
    peer.send('\0');
    assert.deepEqual(await peer.bytes(4), Buffer.from('one\0'));
    peer.send('\0');
    assert.equal(await peer.finish(), 1);
  });

  test('a directory without -r is refused', async () => {
    const peer = await scp('scp -f /down');
    peer.send('\0');
    assert.match(await peer.response(), /^\x01scp: \/down: not a regular file \(use -r/);
    assert.equal(await peer.finish(), 1);
  });
});

describe('permissions', () => {
  const as = (missing: Permission) => {
    const username = `scp-no-${missing.replace('_', '-')}`;
    srv.addUser({ username, permissions: PERMISSIONS.filter((p) => p !== missing) });
    return username;
  };

  test('download: each file refused with a warning', async () => {
    const user = as('download');
    await writeFile(srv.storageOf(user), '/f', Buffer.from('f'));
    const peer = await scp('scp -f /f', user);
    peer.send('\0');
    assert.match(await peer.response(), /^\x01scp: \/f: permission denied: "download"/);
    assert.equal(await peer.finish(), 1);
  });

  test('upload: the file record is refused and its data never sent', async () => {
    const user = as('upload');
    const peer = await scp('scp -t /', user);
    assert.equal(await peer.response(), '');
    const [record] = await sendFile(peer, 'f', Buffer.from('f'));
    assert.match(record, /^\x01scp: \/f: permission denied: "upload"/);
    assert.equal(await peer.finish(), 1);
    assert.deepEqual(await listAll(srv.storageOf(user), '/'), []);
  });

  test('overwrite: replacing a file refused, a new one stored', async () => {
    const user = as('overwrite');
    await writeFile(srv.storageOf(user), '/old', Buffer.from('old'));
    const peer = await scp('scp -t /', user);
    assert.equal(await peer.response(), '');
    const [refused] = await sendFile(peer, 'old', Buffer.from('new'));
    assert.match(refused, /^\x01scp: \/old: permission denied: "overwrite"/);
    assert.deepEqual(await sendFile(peer, 'fresh', Buffer.from('fresh')), ['', '']);
    assert.equal(await peer.finish(), 1);
    assert.deepEqual(await readFile(srv.storageOf(user), '/old'), Buffer.from('old'));
    assert.deepEqual(await readFile(srv.storageOf(user), '/fresh'), Buffer.from('fresh'));
  });

  test('create_dirs: a D record for a new directory refused', async () => {
    const user = as('create_dirs');
    const peer = await scp('scp -r -t /', user);
    assert.equal(await peer.response(), '');
    peer.send('D0755 0 newdir\n');
    assert.match(await peer.response(), /^\x01scp: \/newdir: permission denied: "create_dirs"/);
    assert.equal(await peer.finish(), 1);
  });

  test('list: a directory download refused', async () => {
    const user = as('list');
    await writeFile(srv.storageOf(user), '/d/f', Buffer.from('f'));
    const peer = await scp('scp -r -f /d', user);
    peer.send('\0');
    const answer = await peer.response();
    assert.match(answer, /permission denied: "list"/);
    assert.ok(answer.startsWith('\x01') || answer.startsWith('\x02'), JSON.stringify(answer));
  });
});

describe('commands', () => {
  test('anything but scp is refused with a message on stderr and exit status 1', async () => {
    for (const command of ['ls -la', 'scp -t /a; rm -rf /', 'scp -x -t /']) {
      const peer = await scp(command);
      assert.equal(await peer.exit, 1, command);
      assert.ok(peer.stderr.length > 0, command);
    }
  });
});
