#!/usr/bin/env node
/**
 * Install-time patch of ssh2 (run by npm's postinstall, so `npm ci` here, in CI and in the image
 * applies it). Pinned: it changes only the exact ssh2 version below, and only where the original text
 * is found word for word; another version is left alone with a warning, and the server then runs with
 * ssh2's own code (a little more CPU, nothing else).
 *
 * Why: ssh2 fills every outgoing packet's 4–19 padding bytes with its own crypto.randomFillSync call.
 * On a download that is one call per 32 KiB packet, and measured on a 2-core machine (256 MiB get with
 * OpenSSH sftp, server CPU from /proc, alternated with the unpatched tree) those calls cost 5–7% of
 * the server's CPU. The patch draws padding from a 64 KiB buffer refilled by randomFillSync: the bytes
 * still come from the CSPRNG, each byte is used once, and only the number of calls changes.
 *
 * Why at install and not at run time like src/ssh/ssh2-window.ts: ssh2 takes randomFillSync out of the
 * crypto module into a local binding when its file loads, so no object reachable at run time holds it.
 *
 * `node scripts/patch-ssh2.mjs --check` exits 1 when the pinned version is installed unpatched
 * (test/unit/ssh2-install-patch.test.ts runs it).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

export const PATCHED_SSH2_VERSION = '1.17.0';
export const MARKER = 's3sftp: pooled padding';

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

function ssh2Dir() {
  const require = createRequire(import.meta.url);
  return dirname(require.resolve('ssh2/package.json'));
}

/** 'patched' | 'applied' | 'other-version' | 'unexpected-text' */
export function patchSsh2({ check = false, dir = ssh2Dir() } = {}) {
  const version = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')).version;
  if (version !== PATCHED_SSH2_VERSION) return { state: 'other-version', version };
  const file = join(dir, 'lib/protocol/crypto.js');
  const text = readFileSync(file, 'utf8');
  if (text.includes(MARKER)) return { state: 'patched', version };
  if (!text.includes(ORIGINAL)) return { state: 'unexpected-text', version };
  if (check) return { state: 'unpatched', version };
  writeFileSync(file, text.replace(ORIGINAL, PATCHED));
  return { state: 'applied', version };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const check = process.argv.includes('--check');
  const { state, version } = patchSsh2({ check });
  const say = (msg) => process.stderr.write(`patch-ssh2: ${msg}\n`);
  if (state === 'other-version') say(`ssh2 ${version} is installed, the patch is for ${PATCHED_SSH2_VERSION}: not applied`);
  else if (state === 'unexpected-text') say(`ssh2 ${version}: lib/protocol/crypto.js is not the text the patch expects: not applied`);
  else if (state === 'unpatched') say(`ssh2 ${version} is installed without the padding patch (run: node scripts/patch-ssh2.mjs)`);
  process.exit(check && state !== 'patched' ? 1 : 0);
}
