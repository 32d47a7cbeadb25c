/**
 * The SFTP receive-window patch (src/ssh/ssh2-window.ts) against the installed ssh2: a real ssh2
 * server and client in this process on 127.0.0.1. If ssh2 changes so that the wider window no
 * longer reaches the client (or the patch stops applying), these fail.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import ssh2 from 'ssh2';
import type { SFTPWrapper } from 'ssh2';
import { generateEd25519 } from '../../src/ssh/keygen.ts';
import { widenReceiveWindow, PATCHED_SSH2_VERSION, SFTP_RECEIVE_WINDOW, SSH2_DEFAULT_WINDOW } from '../../src/ssh/ssh2-window.ts';

const { STATUS_CODE } = ssh2.utils.sftp;

interface Window {
  outgoing: { window: number };
}

/** A bare ssh2 SFTP server answering REALPATH, OPEN and WRITE; `patch` decides whether to widen. */
async function withServer(patch: boolean, fn: (sftp: SFTPWrapper) => Promise<void>): Promise<{ applied: boolean }> {
  let applied = false;
  const server = new ssh2.Server({ hostKeys: [generateEd25519().private] }, (conn) => {
    conn.on('authentication', (ctx) => ctx.accept());
    conn.on('error', () => undefined);
    conn.on('ready', () =>
      conn.on('session', (accept) =>
        accept().on('sftp', (acceptSftp) => {
          const sftp = acceptSftp();
          if (patch) applied = widenReceiveWindow(sftp);
          sftp.on('REALPATH', (id) => sftp.name(id, [{ filename: '/', longname: '/', attrs: {} as never }]));
          sftp.on('OPEN', (id) => sftp.handle(id, Buffer.from([1])));
          sftp.on('WRITE', (id) => sftp.status(id, STATUS_CODE.OK));
        }),
      ),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const client = new ssh2.Client();
  try {
    const sftp = await new Promise<SFTPWrapper>((resolve, reject) => {
      client.on('error', reject);
      client.on('ready', () => client.sftp((err, s) => (err ? reject(err) : resolve(s))));
      client.connect({ host: '127.0.0.1', port: (server.address() as { port: number }).port, username: 'u', password: 'p' });
    });
    await fn(sftp);
  } finally {
    client.end();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
  return { applied };
}

const realpath = (s: SFTPWrapper) => new Promise<void>((res, rej) => s.realpath('.', (e) => (e ? rej(e) : res())));

/** Writes `total` bytes in 32 KiB WRITEs, 64 in flight, as OpenSSH's sftp does. */
async function upload(s: SFTPWrapper, total: number): Promise<void> {
  const h = await new Promise<Buffer>((res, rej) => s.open('f', 'w', (e, handle) => (e ? rej(e) : res(handle))));
  const chunk = Buffer.alloc(32 * 1024);
  const inFlight = new Set<Promise<void>>();
  for (let off = 0; off < total; off += chunk.length) {
    const w: Promise<void> = new Promise<void>((res, rej) => s.write(h, chunk, 0, chunk.length, off, (e) => (e ? rej(e) : res()))).finally(() => inFlight.delete(w));
    inFlight.add(w);
    if (inFlight.size >= 64) await Promise.race(inFlight);
  }
  await Promise.all(inFlight);
}

test('the patch is pinned to the installed ssh2 version', () => {
  const installed = (createRequire(import.meta.url)('ssh2/package.json') as { version: string }).version;
  assert.equal(installed, PATCHED_SSH2_VERSION, 'ssh2 was upgraded: re-check src/ssh/ssh2-window.ts against its lib/Channel.js and lib/server.js, then update PATCHED_SSH2_VERSION');
});

test('a patched SFTP channel gives the client the wider window, and keeps it wide during an upload', async () => {
  const { applied } = await withServer(true, async (sftp) => {
    await realpath(sftp); // the adjust was sent before this reply
    // Less the few bytes of INIT and REALPATH the client has sent since.
    assert.ok((sftp as unknown as Window).outgoing.window > SFTP_RECEIVE_WINDOW - 1024, `window: ${(sftp as unknown as Window).outgoing.window}`);
    await upload(sftp, 12 * 1024 * 1024);
    await realpath(sftp);
    assert.ok((sftp as unknown as Window).outgoing.window > SSH2_DEFAULT_WINDOW, `window after upload: ${(sftp as unknown as Window).outgoing.window}`);
  });
  assert.equal(applied, true);
});

test("without the patch the client sees ssh2's own 2 MiB window (what the patch changes)", async () => {
  await withServer(false, async (sftp) => {
    await realpath(sftp);
    assert.ok((sftp as unknown as Window).outgoing.window <= SSH2_DEFAULT_WINDOW);
    await upload(sftp, 4 * 1024 * 1024);
    await realpath(sftp);
    assert.ok((sftp as unknown as Window).outgoing.window <= SSH2_DEFAULT_WINDOW);
  });
});

test('an object without the expected internals is left alone', () => {
  assert.equal(widenReceiveWindow({}), false);
});
