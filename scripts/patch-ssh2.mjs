#!/usr/bin/env node
/**
 * Install-time patch of ssh2 (run by npm's postinstall, so `npm ci` here, in CI and in the image
 * applies it). Pinned: it changes only the exact ssh2 version below, and only where the original text
 * is found word for word; another version is left alone with a warning, and the server then runs with
 * ssh2's own code (a little more CPU, nothing else).
 *
 * Two changes, both for the server's CPU on big transfers (docs/performance.md, "Server CPU per GiB"):
 *
 * 1. Pooled padding (lib/protocol/crypto.js). ssh2 fills every outgoing packet's 4–19 padding bytes
 *    with its own crypto.randomFillSync call. On a download that is one call per 32 KiB packet, and
 *    measured on a 2-core machine (256 MiB get with OpenSSH sftp, server CPU from /proc, alternated
 *    with the unpatched tree) those calls cost 5–7% of the server's CPU. The patch draws padding from
 *    a 64 KiB buffer refilled by randomFillSync: the bytes still come from the CSPRNG, each byte is
 *    used once, and only the number of calls changes.
 *
 * 2. DATA replies without a copy (lib/protocol/SFTP.js). A server's SFTP DATA reply is built by
 *    copying the data behind a 13-byte header into a new buffer, which the channel then copies again
 *    into an SSH packet. OpenSSH reads 32 KiB at a time and accepts channel packets of 32 KiB, so the
 *    13 extra bytes split every reply into two packets anyway. The patch sends the header and the
 *    caller's buffer as two channel writes when the reply would not fit one packet: the same bytes
 *    and the same number of packets, one copy and one 32 KiB allocation fewer per READ. Replies that
 *    fit one packet are built as before. The caller must not change the buffer after data() returns
 *    (it may wait in ssh2's queue while the client's window is closed); s3sftp never does.
 *
 * Why at install and not at run time like src/ssh/ssh2-window.ts: ssh2 takes randomFillSync out of the
 * crypto module into a local binding when its file loads, so no object reachable at run time holds it;
 * and the reply path goes through module-private functions (sendOrBuffer).
 *
 * `node scripts/patch-ssh2.mjs --check` exits 1 when the pinned version is installed without every
 * change (test/unit/ssh2-install-patch.test.ts runs it).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

export const PATCHED_SSH2_VERSION = '1.17.0';
export const MARKER = 's3sftp: pooled padding';
export const DATA_MARKER = 's3sftp: DATA without a copy';

const ORIGINAL = `const {
  createCipheriv, createDecipheriv, createHmac, randomFillSync, timingSafeEqual
} = require('crypto');`;

const PATCHED = `const {
  createCipheriv, createDecipheriv, createHmac, timingSafeEqual
} = require('crypto');
// ${MARKER} (scripts/patch-ssh2.mjs in s3sftp): one CSPRNG call per 64 KiB of padding, not per packet.
const cryptoRandomFill = require('crypto').randomFillSync;
const PADDING_POOL = Buffer.allocUnsafe(64 * 1024);
let paddingUsed = PADDING_POOL.length;
function randomFillSync(buf, offset, size) {
  if (size > 255) return cryptoRandomFill(buf, offset, size);
  if (paddingUsed + size > PADDING_POOL.length) {
    cryptoRandomFill(PADDING_POOL);
    paddingUsed = 0;
  }
  PADDING_POOL.copy(buf, offset, paddingUsed, paddingUsed + size);
  paddingUsed += size;
  return buf;
}`;

const DATA_ORIGINAL = `    const dataLen = (
      isBuffer
      ? data.length
      : Buffer.byteLength(data, encoding)
    );
    let p = 9;
    const buf = Buffer.allocUnsafe(4 + 1 + 4 + 4 + dataLen);

    writeUInt32BE(buf, buf.length - 4, 0);
    buf[4] = RESPONSE.DATA;`;

const DATA_PATCHED = `    const dataLen = (
      isBuffer
      ? data.length
      : Buffer.byteLength(data, encoding)
    );
    // ${DATA_MARKER} (scripts/patch-ssh2.mjs in s3sftp): a reply that needs two
    // channel packets anyway goes out as its header and the caller's buffer, not as a copy of both.
    if (isBuffer && dataLen > 0 && 13 + dataLen > this.outgoing.packetSize) {
      const header = Buffer.allocUnsafe(13);
      writeUInt32BE(header, 9 + dataLen, 0);
      header[4] = RESPONSE.DATA;
      writeUInt32BE(header, reqid, 5);
      writeUInt32BE(header, dataLen, 9);
      const headerSent = sendOrBuffer(this, header);
      const isBuffered = !sendOrBuffer(this, data) || !headerSent;
      this._debug && this._debug(
        \`SFTP: Outbound: \${isBuffered ? 'Buffered' : 'Sending'} DATA\`
      );
      return;
    }
    let p = 9;
    const buf = Buffer.allocUnsafe(4 + 1 + 4 + 4 + dataLen);

    writeUInt32BE(buf, buf.length - 4, 0);
    buf[4] = RESPONSE.DATA;`;

/** Each change: the file, the text it replaces, its replacement, and the marker that shows it is in. */
export const PATCHES = [
  { file: 'lib/protocol/crypto.js', original: ORIGINAL, patched: PATCHED, marker: MARKER },
  { file: 'lib/protocol/SFTP.js', original: DATA_ORIGINAL, patched: DATA_PATCHED, marker: DATA_MARKER },
];

function ssh2Dir() {
  const require = createRequire(import.meta.url);
  return dirname(require.resolve('ssh2/package.json'));
}

/**
 * 'patched' (every change in) | 'applied' | 'unpatched' (check only) | 'other-version' |
 * 'unexpected-text' (a file lacks both its marker and the original text: nothing is written).
 */
export function patchSsh2({ check = false, dir = ssh2Dir() } = {}) {
  const version = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')).version;
  if (version !== PATCHED_SSH2_VERSION) return { state: 'other-version', version };
  const pending = [];
  for (const patch of PATCHES) {
    const file = join(dir, patch.file);
    const text = readFileSync(file, 'utf8');
    if (text.includes(patch.marker)) continue;
    if (!text.includes(patch.original)) return { state: 'unexpected-text', version, file: patch.file };
    pending.push({ file, text: text.replace(patch.original, patch.patched) });
  }
  if (pending.length === 0) return { state: 'patched', version };
  if (check) return { state: 'unpatched', version };
  for (const { file, text } of pending) writeFileSync(file, text);
  return { state: 'applied', version };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const check = process.argv.includes('--check');
  const { state, version, file } = patchSsh2({ check });
  const say = (msg) => process.stderr.write(`patch-ssh2: ${msg}\n`);
  if (state === 'other-version') say(`ssh2 ${version} is installed, the patch is for ${PATCHED_SSH2_VERSION}: not applied`);
  else if (state === 'unexpected-text') say(`ssh2 ${version}: ${file} is not the text the patch expects: not applied`);
  else if (state === 'unpatched') say(`ssh2 ${version} is installed without s3sftp's patch (run: node scripts/patch-ssh2.mjs)`);
  process.exit(check && state !== 'patched' ? 1 : 0);
}
