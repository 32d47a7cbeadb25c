/**
 * Hardening against the internet (issue 11), with real sockets, a real Swift S3 and real clients:
 * a client that tries a key and then a password (paramiko), the algorithms the server offers (read
 * from its KEXINIT), spec.allowedCIDRs, channels per connection, the login grace time and the
 * limit on unauthenticated connections, and the defender's bans.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { generateKeyPairSync } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ssh2 from 'ssh2';
import type { SwiftS3 } from '../../dev/swift.ts';
import { createBucket, makeClientKey, PYTHON, run, s3Server, sftpPassword, startTestServer, type TestServer } from '../support/harness.ts';
import { scrape } from '../support/prometheus.ts';
import { DEFAULT_CIPHERS, DEFAULT_HOST_KEY_ALGORITHMS, DEFAULT_KEX, DEFAULT_MACS } from '../../src/ssh/crypto-policy.ts';

const PASSWORD = 'correct horse';
let s3: SwiftS3;
let work: string;
let key: string;
let unlistedKey: string;
const servers: TestServer[] = [];

before(async () => {
  s3 = await s3Server();
  work = await mkdtemp(join(tmpdir(), 's3sftp-hardening-'));
  key = await makeClientKey(work, 'listed');
  unlistedKey = await makeClientKey(work, 'unlisted');
});

after(async () => {
  for (const s of servers) await s.stop();
  await s3?.stop();
  await rm(work, { recursive: true, force: true });
});

async function server(env: Record<string, string> = {}): Promise<TestServer> {
  const srv = await startTestServer({
    s3,
    bucket: await createBucket(s3),
    env,
    users: [
      { username: 'pat', password: PASSWORD, keyFile: key, keyPrefix: 'pat/' },
      { username: 'erin', password: PASSWORD, keyPrefix: 'erin/', allowedCIDRs: ['192.0.2.0/24', '2001:db8::/32'] },
      { username: 'frank', password: PASSWORD, keyPrefix: 'frank/', allowedCIDRs: ['127.0.0.1/32'] },
    ],
  });
  servers.push(srv);
  return srv;
}

/** Logs in with ssh2's client; resolves the client or rejects with the error. */
function login(port: number, opts: { username: string; password?: string; privateKey?: Buffer }): Promise<ssh2.Client> {
  return new Promise((resolve, reject) => {
    const client = new ssh2.Client();
    client.once('ready', () => resolve(client)).once('error', (err) => reject(err));
    client.once('close', () => reject(new Error('closed before ready')));
    client.connect({ host: '127.0.0.1', port, readyTimeout: 20_000, ...opts });
  });
}

/** A TCP connection that says nothing (or only its version line); resolves once it is closed by the server. */
function silentSocket(port: number, banner = false): { socket: Socket; closed: Promise<number> } {
  const socket = connect(port, '127.0.0.1');
  const opened = Date.now();
  socket.on('connect', () => banner && socket.write('SSH-2.0-silent\r\n'));
  socket.on('data', () => undefined);
  socket.on('error', () => undefined);
  const closed = new Promise<number>((resolve) => socket.once('close', () => resolve(Date.now() - opened)));
  return { socket, closed };
}

function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([p, new Promise<T>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms)))]).finally(() => clearTimeout(timer));
}

describe('with the default settings', () => {
  let srv: TestServer;
  before(async () => {
    srv = await server();
  });

  test('paramiko with an unlisted key and a password logs in (a second ssh-userauth service request is accepted)', async () => {
    const script = `
import paramiko, sys
c = paramiko.SSHClient()
c.set_missing_host_key_policy(paramiko.AutoAddPolicy())
c.connect("127.0.0.1", port=${srv.port}, username="pat", password=${JSON.stringify(PASSWORD)}, key_filename=${JSON.stringify(unlistedKey)}, look_for_keys=False, allow_agent=False, timeout=20)
s = c.open_sftp()
print("cwd", s.normalize("."))
c.close()
`;
    const r = await run(PYTHON, ['-c', script], { timeoutMs: 60_000 });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /cwd \//);
  });

  test('the algorithms offered in KEXINIT are the documented policy: no SHA-1, no CBC, no small groups', async () => {
    const offered = await readKexinit(srv.port);
    const documented = documentedPolicy(await readFile(new URL('../../docs/security.md', import.meta.url), 'utf8'));
    // ssh2 adds the strict-kex marker (the Terrapin counter-measure) to the key exchange list.
    assert.deepEqual(offered.kex, [...documented.kex, 'kex-strict-s-v00@openssh.com']);
    // Only the signature algorithms of the host keys the server has: an ed25519 key here.
    assert.deepEqual(offered.hostKey, documented.hostKey.filter((a) => a === 'ssh-ed25519'));
    assert.deepEqual(offered.cipherCS, documented.cipher);
    assert.deepEqual(offered.cipherSC, documented.cipher);
    assert.deepEqual(offered.macCS, documented.mac);
    assert.deepEqual(offered.macSC, documented.mac);
    // The documented lists are the code's defaults.
    assert.deepEqual(documented, { kex: DEFAULT_KEX, hostKey: DEFAULT_HOST_KEY_ALGORITHMS, cipher: DEFAULT_CIPHERS, mac: DEFAULT_MACS });
    const all = [...offered.kex, ...offered.hostKey, ...offered.cipherCS, ...offered.macCS];
    assert.deepEqual(all.filter((a) => /sha1|-cbc|arcfour|md5|^ssh-rsa$|^ssh-dss$|group1-|group14-sha1/.test(a)), []);
  });

  test('with an RSA host key only the SHA-2 signatures are offered (not ssh-rsa), and OpenSSH connects', async () => {
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048, privateKeyEncoding: { type: 'pkcs1', format: 'pem' }, publicKeyEncoding: { type: 'spki', format: 'pem' } });
    const keyPath = join(work, 'rsa_host_key');
    await writeFile(keyPath, rsa.privateKey, { mode: 0o600 });
    const rsaSrv = await server({ S3SFTP_HOSTKEYS: keyPath });
    const offered = await readKexinit(rsaSrv.port);
    assert.deepEqual(offered.hostKey, ['rsa-sha2-512', 'rsa-sha2-256']);
    const r = await sftpPassword(rsaSrv.port, 'pat', PASSWORD, 'pwd\n', { timeoutMs: 30_000 });
    assert.equal(r.code, 0, r.stderr);
  });

  test('spec.allowedCIDRs: a login from another address fails like a wrong password; from an allowed one it works', async () => {
    const denied = await sftpPassword(srv.port, 'erin', PASSWORD, 'pwd\n', { timeoutMs: 30_000 });
    assert.notEqual(denied.code, 0);
    assert.match(denied.stderr, /Permission denied/);
    const allowed = await sftpPassword(srv.port, 'frank', PASSWORD, 'pwd\n', { timeoutMs: 30_000 });
    assert.equal(allowed.code, 0, allowed.stderr);
  });

  test('channels per connection are capped (ssh.maxChannelsPerConnection, default 10)', async () => {
    const client = await login(srv.port, { username: 'pat', privateKey: await readFile(key) });
    try {
      const results: string[] = [];
      for (let i = 0; i < 12; i++) {
        results.push(await new Promise<string>((resolve) => client.sftp((err) => resolve(err ? 'refused' : 'open'))));
      }
      assert.deepEqual(results, [...Array(10).fill('open'), 'refused', 'refused']);
      const m = await scrape(srv.server.metrics.port);
      assert.equal(m.value('s3sftp_connections_refused_total', { reason: 'channels-per-connection' }), 2);
    } finally {
      client.end();
    }
  });
});

describe('names and handles', () => {
  let srv: TestServer;
  before(async () => {
    srv = await server();
  });

  test('a file name that is not valid UTF-8 is refused with a clear message; two such names never share a key', async () => {
    const raw = await rawSftp(srv.port);
    try {
      const open = (name: Buffer, id: number) => raw.request(id, 3, [sshString(name), uint32(0x02 | 0x08 | 0x10), uint32(0)]);
      const first = await open(Buffer.from('caf\xe9.txt', 'latin1'), 10);
      const second = await open(Buffer.from('caf\xeb.txt', 'latin1'), 11);
      for (const reply of [first, second]) {
        assert.equal(reply.type, 101, 'STATUS');
        assert.equal(reply.code, 4, 'SSH_FX_FAILURE');
        assert.match(reply.message ?? '', /not valid UTF-8/);
      }
      // The session goes on, and a UTF-8 name with the same letters works.
      const ok = await open(Buffer.from('café.txt', 'utf8'), 12);
      assert.equal(ok.type, 102, 'HANDLE');
      const renamed = await raw.request(13, 18, [sshString(Buffer.from('a.txt')), sshString(Buffer.from([0x62, 0xff]))]);
      assert.equal(renamed.code, 4, 'RENAME to a non-UTF-8 name');
      assert.match(renamed.message ?? '', /not valid UTF-8/);
    } finally {
      raw.close();
    }
  });

  test('open handles are capped before any S3 request: the OPENs over the limit send no S3 request', async () => {
    await writeFile(join(work, 'same.txt'), 'same\n');
    const put = await sftpPassword(srv.port, 'pat', PASSWORD, `put ${join(work, 'same.txt')} same.txt\n`, { timeoutMs: 30_000 });
    assert.equal(put.code, 0, put.stderr);
    // An OPEN for reading is one GetObject (docs/adr/0018).
    const gets = async () => (await scrape(srv.server.metrics.port)).value('s3sftp_s3_requests_total', { operation: 'GetObject' });
    const raw = await rawSftp(srv.port);
    try {
      // What one OPEN costs in GETs, to count what 300 cost.
      const start = await gets();
      const one = await raw.request(99, 3, [sshString(Buffer.from('/same.txt')), uint32(0x01), uint32(0)]);
      assert.equal(one.type, 102);
      const perOpen = (await gets()) - start;
      const before = await gets();
      const replies = await Promise.all(Array.from({ length: 300 }, (_, i) => raw.request(100 + i, 3, [sshString(Buffer.from('/same.txt')), uint32(0x01), uint32(0)])));
      const handles = replies.filter((r) => r.type === 102).length;
      const refused = replies.filter((r) => r.type === 101 && /too many open handles/.test(r.message ?? '')).length;
      const after = await gets();
      console.log(`# 300 pipelined OPENs with 1 handle open: ${handles} handles, ${refused} refused, ${after - before} GET requests (${perOpen} per OPEN)`);
      assert.equal(perOpen, 1);
      assert.equal(handles, 255);
      assert.equal(refused, 45);
      assert.equal(after - before, 255 * perOpen, 'the refused OPENs sent no request');
    } finally {
      raw.close();
    }
  });
});

describe('login grace time and unauthenticated connections', () => {
  let srv: TestServer;
  before(async () => {
    // 5 s: short enough to wait for, long enough that a real login on a loaded 2-core machine
    // (handshake plus a password hash) finishes inside it.
    srv = await server({ S3SFTP_SSH_LOGINGRACETIME: '5s', S3SFTP_SSH_MAXUNAUTHENTICATEDPERSOURCE: '6' });
  });

  test('connections that never authenticate (silent, or only a version line) are closed after the grace time', async () => {
    const conns = [...Array.from({ length: 3 }, () => silentSocket(srv.port)), ...Array.from({ length: 3 }, () => silentSocket(srv.port, true))];
    const lifetimes = await within(Promise.all(conns.map((c) => c.closed)), 20_000, 'silent connections closed');
    for (const ms of lifetimes) assert.ok(ms >= 4500, `closed after ${ms} ms, before the grace time`);
    console.log(`# grace time 5s: silent connections closed after ${lifetimes.join(', ')} ms`);
    const m = await scrape(srv.server.metrics.port);
    assert.equal(m.value('s3sftp_connections_refused_total', { reason: 'login-grace-time' }), 6);
  });

  test('beyond ssh.maxUnauthenticatedPerSource a new connection is closed at once; the place frees up when one ends', async () => {
    const held = Array.from({ length: 6 }, () => silentSocket(srv.port));
    await Promise.all(held.map((c) => new Promise((r) => c.socket.once('connect', r))));
    // Let the server see all six before the seventh arrives.
    await new Promise((r) => setTimeout(r, 200));
    const extra = silentSocket(srv.port);
    const lifetime = await within(extra.closed, 1500, 'the connection over the limit closed');
    assert.ok(lifetime < 1500);
    for (const c of held) c.socket.destroy();
    await Promise.all(held.map((c) => c.closed));
    const ok = await sftpPassword(srv.port, 'pat', PASSWORD, 'pwd\n', { timeoutMs: 30_000 });
    assert.equal(ok.code, 0, ok.stderr);
    const m = await scrape(srv.server.metrics.port);
    assert.ok(m.value('s3sftp_connections_refused_total', { reason: 'unauthenticated-per-source' }) >= 1);
  });
});

describe('defender', () => {
  let srv: TestServer;
  before(async () => {
    // The harness trusts loopback; here it is scored like any other source ("" is unset: no trusted CIDRs).
    srv = await server({ S3SFTP_DEFENDER_TRUSTEDCIDRS: '', S3SFTP_DEFENDER_THRESHOLD: '3', S3SFTP_DEFENDER_BANTIME: '10m' });
  });

  test('three wrong passwords ban the source: even the right password is then refused before the handshake', async () => {
    for (let i = 0; i < 3; i++) {
      await assert.rejects(login(srv.port, { username: i === 1 ? 'nobody' : 'pat', password: 'wrong' }));
    }
    const banned = await Promise.allSettled([login(srv.port, { username: 'pat', password: PASSWORD })]);
    assert.equal(banned[0]?.status, 'rejected');
    const m = await scrape(srv.server.metrics.port);
    assert.equal(m.value('s3sftp_defender_bans_total'), 1);
    assert.equal(m.value('s3sftp_defender_banned_sources'), 1);
    assert.ok(m.value('s3sftp_connections_refused_total', { reason: 'banned' }) >= 1);
  });
});

function uint32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}

function sshString(b: Buffer): Buffer {
  return Buffer.concat([uint32(b.length), b]);
}

interface Reply {
  type: number;
  id: number;
  code?: number;
  message?: string;
}

/** An SFTP channel spoken byte by byte (as pat, by key): send a request, get its reply by id. */
async function rawSftp(port: number): Promise<{ request(id: number, type: number, body: Buffer[]): Promise<Reply>; close(): void }> {
  const client = await login(port, { username: 'pat', privateKey: await readFile(key) });
  const channel = await new Promise<ssh2.ClientChannel>((resolve, reject) => client.subsys('sftp', (err, ch) => (err ? reject(err) : resolve(ch))));
  const waiting = new Map<number, (r: Reply) => void>();
  let versionSeen: (() => void) | undefined;
  const version = new Promise<void>((r) => (versionSeen = r));
  let buf = Buffer.alloc(0);
  channel.on('data', (d: Buffer) => {
    buf = Buffer.concat([buf, d]);
    while (buf.length >= 4 && buf.length >= 4 + buf.readUInt32BE(0)) {
      const packet = buf.subarray(4, 4 + buf.readUInt32BE(0));
      buf = buf.subarray(4 + packet.length);
      const type = packet[0] ?? 0;
      if (type === 2) {
        versionSeen?.();
        continue;
      }
      const id = packet.readUInt32BE(1);
      const reply: Reply = { type, id };
      if (type === 101) {
        reply.code = packet.readUInt32BE(5);
        const n = packet.readUInt32BE(9);
        reply.message = packet.subarray(13, 13 + n).toString('utf8');
      }
      waiting.get(id)?.(reply);
      waiting.delete(id);
    }
  });
  const send = (type: number, parts: Buffer[]) => {
    const body = Buffer.concat([Buffer.from([type]), ...parts]);
    channel.write(Buffer.concat([uint32(body.length), body]));
  };
  send(1, [uint32(3)]);
  await within(version, 10_000, 'SFTP VERSION');
  return {
    request: (id, type, body) =>
      within(
        new Promise<Reply>((resolve) => {
          waiting.set(id, resolve);
          send(type, [uint32(id), ...body]);
        }),
        60_000,
        `reply to request ${id}`,
      ),
    close: () => client.end(),
  };
}

interface Offered {
  kex: string[];
  hostKey: string[];
  cipherCS: string[];
  cipherSC: string[];
  macCS: string[];
  macSC: string[];
}

/** Reads the server's KEXINIT over raw TCP: its version line, our version line, then the first binary packet. */
async function readKexinit(port: number): Promise<Offered> {
  const socket = connect(port, '127.0.0.1');
  let buf = Buffer.alloc(0);
  const payload = await within(
    new Promise<Buffer>((resolve, reject) => {
      let identSeen = false;
      socket.on('connect', () => socket.write('SSH-2.0-kexinit-probe\r\n'));
      socket.on('error', reject);
      socket.on('data', (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        if (!identSeen) {
          const eol = buf.indexOf('\r\n');
          if (eol < 0) return;
          assert.match(buf.subarray(0, eol).toString(), /^SSH-2\.0-/);
          buf = buf.subarray(eol + 2);
          identSeen = true;
        }
        if (buf.length < 5) return;
        const length = buf.readUInt32BE(0);
        if (buf.length < 4 + length) return;
        const padding = buf.readUInt8(4);
        resolve(buf.subarray(5, 4 + length - padding));
      });
    }),
    10_000,
    'KEXINIT',
  );
  socket.destroy();
  assert.equal(payload[0], 20, 'SSH_MSG_KEXINIT');
  let at = 1 + 16;
  const lists: string[][] = [];
  for (let i = 0; i < 10; i++) {
    const n = payload.readUInt32BE(at);
    const text = payload.subarray(at + 4, at + 4 + n).toString('ascii');
    lists.push(text === '' ? [] : text.split(','));
    at += 4 + n;
  }
  const [kex = [], hostKey = [], cipherCS = [], cipherSC = [], macCS = [], macSC = []] = lists;
  return { kex, hostKey, cipherCS, cipherSC, macCS, macSC };
}

/** The four lists in docs/security.md: a fenced block after each "<!-- policy:NAME -->" marker, one name a line. */
function documentedPolicy(doc: string): { kex: string[]; hostKey: string[]; cipher: string[]; mac: string[] } {
  const list = (name: string) => {
    const m = new RegExp(`<!-- policy:${name} -->\\s*\`\`\`[a-z]*\\n([\\s\\S]*?)\`\`\``).exec(doc);
    assert.ok(m, `docs/security.md has no policy:${name} block`);
    return (m[1] ?? '').split('\n').map((l) => l.trim()).filter((l) => l !== '');
  };
  return { kex: list('kex'), hostKey: list('hostKey'), cipher: list('cipher'), mac: list('mac') };
}
