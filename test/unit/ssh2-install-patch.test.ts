/**
 * The install-time ssh2 patch (scripts/patch-ssh2.mjs): padding drawn from a pooled CSPRNG buffer,
 * and SFTP DATA replies sent without copying the data. Fails if `npm ci` stopped applying it, if it
 * touches anything but the pinned version's exact text, if the padding a real ssh2 server sends stops
 * looking random, or if large DATA replies stop reaching a real client intact.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ssh2 from 'ssh2';
import { generateEd25519 } from '../../src/ssh/keygen.ts';
// @ts-expect-error: a plain .mjs script without type declarations
import { patchSsh2, PATCHED_SSH2_VERSION, MARKER, DATA_MARKER, PATCHES } from '../../scripts/patch-ssh2.mjs';

type PatchResult = { state: string; version: string };
const patch = patchSsh2 as (o?: { check?: boolean; dir?: string }) => PatchResult;
const patches = PATCHES as { file: string; original: string; marker: string }[];

test('the installed ssh2 carries both changes (npm ci runs scripts/patch-ssh2.mjs)', () => {
  const { state, version } = patch({ check: true });
  assert.equal(version, PATCHED_SSH2_VERSION, 'ssh2 was upgraded: re-check scripts/patch-ssh2.mjs against the new lib/protocol/crypto.js');
  assert.equal(state, 'patched');
});

test('the patch changes only the pinned version, only where the expected text is', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'ssh2-patch-'));
  try {
    await mkdir(join(dir, 'lib/protocol'), { recursive: true });
    const originals = new Map(patches.map((p) => [p.file, `'use strict';\n// before\n${p.original}\n// after\n`]));
    const files = [...originals.keys()];
    const setUp = async (version: string, change?: (file: string, text: string) => string) => {
      await writeFile(join(dir, 'package.json'), JSON.stringify({ version }));
      for (const [file, text] of originals) await writeFile(join(dir, file), change ? change(file, text) : text);
    };
    const read = () => Promise.all(files.map((f) => readFile(join(dir, f), 'utf8')));

    await setUp('1.18.0');
    assert.equal(patch({ dir }).state, 'other-version');
    assert.deepEqual(await read(), [...originals.values()], 'another version is left as it is');

    // One file not as expected: nothing is written, not even the file that is.
    await setUp(PATCHED_SSH2_VERSION, (file, text) => (file === files[1] ? text.replace('dataLen', 'len') : text));
    assert.equal(patch({ dir }).state, 'unexpected-text');
    assert.equal((await read())[0], originals.get(files[0]!));

    await setUp(PATCHED_SSH2_VERSION);
    assert.equal(patch({ dir, check: true }).state, 'unpatched');
    assert.equal(patch({ dir }).state, 'applied');
    const patched = await read();
    assert.ok(patched[0]!.includes(MARKER) && patched[1]!.includes(DATA_MARKER));
    assert.ok(patched.every((text) => text.startsWith("'use strict';\n// before\n") && text.endsWith('\n// after\n')));
    assert.equal(patch({ dir }).state, 'patched', 'a second run changes nothing');
    assert.deepEqual(await read(), patched);

    // An install patched before the second change existed gets the missing one.
    await setUp(PATCHED_SSH2_VERSION, (file, text) => (file === files[0] ? patched[0]! : text));
    assert.equal(patch({ dir, check: true }).state, 'unpatched');
    assert.equal(patch({ dir }).state, 'applied');
    assert.deepEqual(await read(), patched);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

/**
 * The padding of the server's first binary packet (KEXINIT, sent before any key exists, so in the
 * clear): `uint32 length, byte padding length, payload, padding`.
 */
async function kexinitPadding(port: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let data = Buffer.alloc(0);
    socket.on('error', reject);
    socket.on('connect', () => socket.write('SSH-2.0-padding-probe\r\n'));
    socket.on('data', (chunk: Buffer) => {
      data = Buffer.concat([data, chunk]);
      const eol = data.indexOf('\r\n');
      if (eol < 0 || data.length < eol + 2 + 5) return;
      const packet = data.subarray(eol + 2);
      const length = packet.readUInt32BE(0);
      if (packet.length < 4 + length) return;
      const padLength = packet[4]!;
      socket.destroy();
      resolve(Buffer.from(packet.subarray(4 + length - padLength, 4 + length)));
    });
  });
}

test('packets sent by a real ssh2 server carry padding that differs every time', async () => {
  const server = new ssh2.Server({ hostKeys: [generateEd25519().private] }, (conn) => conn.on('error', () => undefined));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  try {
    const port = (server.address() as { port: number }).port;
    const paddings: string[] = [];
    for (let i = 0; i < 8; i++) paddings.push((await kexinitPadding(port)).toString('hex'));
    assert.ok(paddings.every((p) => p.length >= 8), 'at least 4 bytes of padding');
    assert.equal(new Set(paddings).size, paddings.length, 'no two packets share their padding');
    assert.ok(!paddings.some((p) => /^(00)+$/.test(p)), 'padding is not zeros');
  } finally {
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
});

test('DATA replies larger than a channel packet reach a real ssh2 client intact, in order', async () => {
  const file = Buffer.alloc(3 * 1024 * 1024 + 77);
  for (let i = 0; i + 4 <= file.length; i += 4) file.writeUInt32BE(i >>> 2, i);
  const server = new ssh2.Server({ hostKeys: [generateEd25519().private] }, (conn) => {
    conn.on('error', () => undefined);
    conn.on('authentication', (ctx) => ctx.accept());
    conn.on('ready', () => {
      conn.on('session', (accept) => {
        accept().on('sftp', (acceptSftp) => {
          const sftp = acceptSftp();
          const handle = Buffer.from('h');
          sftp.on('OPEN', (id) => sftp.handle(id, handle));
          sftp.on('READ', (id, _h, offset, length) => {
            if (offset >= file.length) return sftp.status(id, ssh2.utils.sftp.STATUS_CODE.EOF);
            // A view of the file: the patched path must send it as it is, not a stale copy.
            sftp.data(id, file.subarray(offset, Math.min(offset + length, file.length)));
          });
          sftp.on('FSTAT', (id) => sftp.attrs(id, { mode: 0o100644, uid: 0, gid: 0, size: file.length, atime: 0, mtime: 0 }));
          sftp.on('CLOSE', (id) => sftp.status(id, ssh2.utils.sftp.STATUS_CODE.OK));
        });
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const client = new ssh2.Client();
  try {
    const port = (server.address() as { port: number }).port;
    await new Promise<void>((resolve, reject) => {
      client.on('ready', () => resolve()).on('error', reject).connect({ host: '127.0.0.1', port, username: 'u', password: 'p' });
    });
    const sftp = await new Promise<ssh2.SFTPWrapper>((resolve, reject) => client.sftp((err, s) => (err ? reject(err) : resolve(s))));
    const sizes = [65536, 32768 - 13, 32768, 1000];
    for (const size of sizes) {
      const chunks: Buffer[] = [];
      await new Promise<void>((resolve, reject) => {
        sftp
          .createReadStream('f', { highWaterMark: size })
          .on('data', (c: Buffer) => chunks.push(c))
          .on('end', () => resolve())
          .on('error', reject);
      });
      assert.ok(Buffer.concat(chunks).equals(file), `read in pieces of ${size} bytes`);
    }
  } finally {
    client.end();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
});
