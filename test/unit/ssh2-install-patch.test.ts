/**
 * The install-time ssh2 patch (scripts/patch-ssh2.mjs): padding drawn from a pooled CSPRNG buffer.
 * Fails if `npm ci` stopped applying it, if it touches anything but the pinned version's exact text,
 * or if the padding a real ssh2 server sends stops looking random.
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
import { patchSsh2, PATCHED_SSH2_VERSION, MARKER } from '../../scripts/patch-ssh2.mjs';

type PatchResult = { state: string; version: string };
const patch = patchSsh2 as (o?: { check?: boolean; dir?: string }) => PatchResult;

test('the installed ssh2 carries the padding patch (npm ci runs scripts/patch-ssh2.mjs)', () => {
  const { state, version } = patch({ check: true });
  assert.equal(version, PATCHED_SSH2_VERSION, 'ssh2 was upgraded: re-check scripts/patch-ssh2.mjs against the new lib/protocol/crypto.js');
  assert.equal(state, 'patched');
});

test('the patch changes only the pinned version, only where the expected text is', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'ssh2-patch-'));
  try {
    await mkdir(join(dir, 'lib/protocol'), { recursive: true });
    const original = [
      "'use strict';",
      '',
      'const {',
      '  createCipheriv, createDecipheriv, createHmac, randomFillSync, timingSafeEqual',
      "} = require('crypto');",
      'module.exports = { fill: (b) => randomFillSync(b, 0, b.length) };',
      '',
    ].join('\n');
    const file = join(dir, 'lib/protocol/crypto.js');
    const setUp = async (version: string, text: string) => {
      await writeFile(join(dir, 'package.json'), JSON.stringify({ version }));
      await writeFile(file, text);
    };

    await setUp('1.18.0', original);
    assert.equal(patch({ dir }).state, 'other-version');
    assert.equal(await readFile(file, 'utf8'), original, 'another version is left as it is');

    await setUp(PATCHED_SSH2_VERSION, original.replace('timingSafeEqual', 'timingSafeEqual, getRandomValues'));
    assert.equal(patch({ dir }).state, 'unexpected-text');

    await setUp(PATCHED_SSH2_VERSION, original);
    assert.equal(patch({ dir, check: true }).state, 'unpatched');
    assert.equal(patch({ dir }).state, 'applied');
    const patched = await readFile(file, 'utf8');
    assert.ok(patched.includes(MARKER));
    assert.equal(patch({ dir }).state, 'patched', 'a second run changes nothing');
    assert.equal(await readFile(file, 'utf8'), patched);
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
