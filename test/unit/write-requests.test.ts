/**
 * The WRITE framing in front of ssh2's SFTP parser: however the bytes are chunked, each WRITE is
 * emitted once with its id, handle, offset and data (as views, no copy), and every other byte
 * reaches ssh2 unchanged and in order.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import type { SFTPWrapper } from 'ssh2';
import { frameWriteRequests, type WriteData } from '../../src/sftp/write-requests.ts';
import { u32, u64, str, packet } from '../support/sftp-wire.ts';

const write = (id: number, handle: string, offset: number, data: Buffer) => packet(6, u32(id), str(handle), u64(offset), str(data));

/** A stand-in for ssh2's SFTP object: records what reaches its parser and the WRITEs emitted. */
function fakeSftp(version = 3) {
  const received: Buffer[] = [];
  const writes: { id: number; handle: string; offset: number; data: Buffer; pieces: number }[] = [];
  const statuses: [number, number][] = [];
  const sftp = Object.assign(new EventEmitter(), {
    _version: version,
    _maxInPktLen: 256 * 1024,
    push(data: Buffer | null) {
      if (data) received.push(Buffer.from(data));
    },
    status(id: number, code: number) {
      statuses.push([id, code]);
    },
  });
  frameWriteRequests(sftp as unknown as SFTPWrapper);
  sftp.on('WRITE', (id: number, handle: Buffer, offset: number, data: WriteData) => {
    const pieces = Array.isArray(data) ? data : [data];
    writes.push({ id, handle: handle.toString(), offset, data: Buffer.concat(pieces), pieces: pieces.length });
  });
  return { sftp, received: () => Buffer.concat(received), writes, statuses };
}

describe('WRITE framing', () => {
  const init = packet(1, u32(3));
  const w1 = write(7, 'h1', 0, Buffer.alloc(32 * 1024, 0xab));
  const open = packet(3, u32(8), str('/a'), u32(0x1a), u32(0));
  const w2 = write(9, 'handle-2', 2 ** 40 + 5, Buffer.from('tail'));
  const empty = write(10, 'h1', 12, Buffer.alloc(0));
  const badHandle = packet(6, u32(11), str(Buffer.alloc(300)), u64(0), str('x'));
  const trailing = Buffer.concat([write(12, 'h', 0, Buffer.from('ab')).subarray(4), Buffer.from('zz')]);
  const withTrailing = Buffer.concat([u32(trailing.length), trailing]);
  const stream = Buffer.concat([init, w1, open, w2, empty, badHandle, withTrailing]);
  const forwarded = Buffer.concat([init, open, badHandle, withTrailing]);

  for (const size of [1, 3, 5, 13, 64, 1000, 32 * 1024, stream.length]) {
    test(`chunks of ${size}: WRITEs emitted whole and in order, the rest forwarded byte for byte`, () => {
      const f = fakeSftp();
      for (let p = 0; p < stream.length; p += size) f.sftp.push(stream.subarray(p, p + size));
      assert.deepEqual(f.received(), forwarded);
      assert.deepEqual(
        f.writes.map(({ id, handle, offset, data }) => [id, handle, offset, data.length]),
        [
          [7, 'h1', 0, 32 * 1024],
          [9, 'handle-2', 2 ** 40 + 5, 4],
          [10, 'h1', 12, 0],
        ],
      );
      assert.ok(f.writes[0]!.data.every((b) => b === 0xab));
      assert.equal(f.writes[1]!.data.toString(), 'tail');
      if (size >= stream.length) assert.equal(f.writes[0]!.pieces, 1, 'a WRITE that arrived whole is one buffer');
    });
  }

  test('the data is a view of the incoming chunk, not a copy', () => {
    const f = fakeSftp();
    let seen: WriteData | undefined;
    f.sftp.on('WRITE', (_id: number, _h: Buffer, _o: number, data: WriteData) => (seen = data));
    const chunk = Buffer.concat([w2]);
    f.sftp.push(chunk);
    assert.ok(Buffer.isBuffer(seen));
    assert.equal((seen as Buffer).buffer, chunk.buffer);
  });

  test('before INIT, a WRITE is left to ssh2 (which refuses it)', () => {
    const f = fakeSftp(-1);
    f.sftp.push(w2);
    assert.deepEqual(f.received(), w2);
    assert.equal(f.writes.length, 0);
  });

  test('no WRITE listener: answered OP_UNSUPPORTED, as ssh2 does', () => {
    const sftp = Object.assign(new EventEmitter(), { _version: 3, _maxInPktLen: 1024, push(_data: Buffer | null) {}, statuses: [] as number[][] });
    (sftp as unknown as { status(id: number, code: number): void }).status = (id, code) => sftp.statuses.push([id, code]);
    frameWriteRequests(sftp as unknown as SFTPWrapper);
    sftp.push(w2);
    assert.deepEqual(sftp.statuses, [[9, 8]]);
  });

  test('a packet over the length limit: everything from it on goes to ssh2', () => {
    const f = fakeSftp();
    const huge = Buffer.concat([u32(1024 * 1024), Buffer.from([6]), Buffer.alloc(20)]);
    f.sftp.push(Buffer.concat([w2.subarray(0, 10)]));
    f.sftp.push(Buffer.concat([w2.subarray(10), huge.subarray(0, 3)]));
    f.sftp.push(Buffer.concat([huge.subarray(3), w2]));
    assert.deepEqual(f.received(), Buffer.concat([huge, w2]));
    assert.equal(f.writes.length, 1);
  });
});
