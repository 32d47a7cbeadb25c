/**
 * The non-UTF-8 name filter in front of ssh2's SFTP parser: it frames the stream into packets
 * however the bytes are chunked, refuses requests whose names are not UTF-8, and forwards every
 * other byte unchanged and in order.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { SFTPWrapper } from 'ssh2';
import { nonUtf8Request, refuseNonUtf8Paths, NON_UTF8_MESSAGE } from '../../src/sftp/utf8-paths.ts';
import { PATCHED_SSH2_VERSION, installedSsh2Version, userauthPatchApplies } from '../../src/ssh/ssh2-userauth.ts';
import { u32, str, packet } from '../support/sftp-wire.ts';

const BAD = Buffer.from('caf\xe9', 'latin1');

/** A stand-in for ssh2's SFTP object: records what reaches the parser and the statuses sent. */
function fakeSftp() {
  const received: Buffer[] = [];
  const statuses: [number, number, string][] = [];
  const sftp = {
    push(data: Buffer | null) {
      if (data) received.push(Buffer.from(data));
    },
    status(id: number, code: number, message: string) {
      statuses.push([id, code, message]);
    },
  };
  refuseNonUtf8Paths(sftp as unknown as SFTPWrapper);
  return { sftp, received: () => Buffer.concat(received), statuses };
}

describe('non-UTF-8 names', () => {
  test('nonUtf8Request finds the bad name in each kind of request, and only there', () => {
    assert.equal(nonUtf8Request(packet(3, u32(7), str(BAD), u32(1), u32(0)).subarray(0)), 7, 'OPEN');
    assert.equal(nonUtf8Request(packet(3, u32(7), str('café'), u32(1), u32(0))), undefined, 'OPEN, UTF-8');
    assert.equal(nonUtf8Request(packet(18, u32(8), str('a'), str(BAD))), 8, 'RENAME target');
    assert.equal(nonUtf8Request(packet(200, u32(9), str('posix-rename@openssh.com'), str('a'), str(BAD))), 9, 'posix-rename');
    assert.equal(nonUtf8Request(packet(200, u32(9), str('limits@openssh.com'))), undefined, 'another extension');
    assert.equal(nonUtf8Request(packet(17, u32(10), u32(99))), undefined, 'malformed: left to ssh2');
    assert.equal(nonUtf8Request(packet(6, u32(11), str('handle'), Buffer.alloc(8), str(BAD))), undefined, 'WRITE data is not a name');
  });

  test('any chunking: good packets reach the parser byte for byte, bad ones are answered and dropped', () => {
    const good1 = packet(1, u32(3));
    const bad = packet(3, u32(5), str(BAD), u32(0x1a), u32(0));
    const write = packet(6, u32(6), str('h1'), Buffer.alloc(8), str(Buffer.alloc(3000, 0xff)));
    const good2 = packet(17, u32(7), str('/ok'));
    const stream = Buffer.concat([good1, bad, write, good2]);
    for (const size of [1, 3, 7, 64, stream.length]) {
      const f = fakeSftp();
      for (let p = 0; p < stream.length; p += size) f.sftp.push(stream.subarray(p, p + size));
      assert.deepEqual(f.received(), Buffer.concat([good1, write, good2]), `chunks of ${size}`);
      assert.deepEqual(f.statuses, [[5, 4, NON_UTF8_MESSAGE]]);
    }
  });
});

describe('ssh2 userauth patch', () => {
  test('is pinned to the installed ssh2 (an upgrade must re-check lib/server.js SERVICE_REQUEST)', () => {
    assert.equal(installedSsh2Version, PATCHED_SSH2_VERSION);
    assert.equal(userauthPatchApplies, true);
  });
});
