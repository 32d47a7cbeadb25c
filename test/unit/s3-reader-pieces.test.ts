/**
 * How a download's ranged GET bodies are kept and served (src/storage/s3/reader.ts): the body's own
 * buffers, READs answered with views where one piece holds them and with copies where they span
 * pieces; and S3Reader over a fake client whose bodies arrive in uneven pieces.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { randomBytes } from 'node:crypto';
import type { S3Client } from '@aws-sdk/client-s3';
import { Received, S3Reader } from '../../src/storage/s3/reader.ts';

/** `data` cut into pieces of the given sizes, cycling through them. */
function cut(data: Buffer, sizes: number[]): Buffer[] {
  const pieces: Buffer[] = [];
  for (let at = 0, i = 0; at < data.length; i++) {
    const n = Math.min(sizes[i % sizes.length]!, data.length - at);
    pieces.push(data.subarray(at, at + n));
    at += n;
  }
  return pieces;
}

test('Received: every range reads back the right bytes; one inside a piece is a view, not a copy', () => {
  const data = randomBytes(1000);
  const pieces = cut(data, [1, 300, 0, 57, 128]);
  const received = new Received(pieces);
  assert.equal(received.length, data.length);
  for (let from = 0; from < data.length; from += 37) {
    for (const length of [1, 2, 56, 57, 128, 400, data.length]) {
      const to = Math.min(from + length, data.length);
      assert.deepEqual(received.slice(from, to), data.subarray(from, to), `bytes ${from}-${to}`);
    }
  }
  const inside = received.slice(10, 200);
  assert.equal(inside.buffer, pieces[1]!.buffer, 'a range inside one piece shares its memory');
});

/** A client answering GetObject ranges of `object` with bodies in uneven pieces, and counting them. */
function fakeClient(object: Buffer, calls: string[]): S3Client {
  return {
    send: async (command: { input: { Range: string } }) => {
      calls.push(command.input.Range);
      const [, a, b] = /bytes=(\d+)-(\d+)/.exec(command.input.Range)!;
      const body = object.subarray(Number(a), Number(b) + 1);
      return { Body: Readable.from(cut(body, [65536, 1000, 30000])), ContentRange: `bytes ${a}-${b}/${object.length}` };
    },
  } as unknown as S3Client;
}

test('S3Reader: sequential and random READs over bodies in uneven pieces return the object', async () => {
  const object = randomBytes(3 * 256 * 1024 + 12345);
  const calls: string[] = [];
  const reader = new S3Reader({
    client: fakeClient(object, calls),
    bucket: 'b',
    key: 'k',
    path: '/k',
    size: object.length,
    mtime: new Date(0),
    download: { partSize: 256 * 1024, concurrency: 2, partMaxTimeMs: 0 },
  });
  const back: Buffer[] = [];
  for (let offset = 0; offset < object.length; offset += 32768) back.push(await reader.read(offset, 32768));
  assert.deepEqual(Buffer.concat(back), object);
  // The first READ is fetched alone (a reader that reads one block and closes starts no read-ahead).
  assert.equal(calls.length, 1 + 4, 'then one GET per 256 KiB chunk');
  assert.deepEqual(await reader.read(100_000, 300_000), object.subarray(100_000, 400_000), 'a random read spanning chunks');
  assert.deepEqual(await reader.read(object.length - 10, 100), object.subarray(object.length - 10));
  assert.equal((await reader.read(object.length, 10)).length, 0);
  await reader.close();
});

test('S3Reader: a body shorter than its range fails the read', async () => {
  const object = randomBytes(1000);
  const client = {
    send: async () => ({ Body: Readable.from([object.subarray(0, 10)]), ContentRange: `bytes 0-999/1000` }),
  } as unknown as S3Client;
  const reader = new S3Reader({
    client,
    bucket: 'b',
    key: 'k',
    path: '/k',
    size: object.length,
    mtime: new Date(0),
    download: { partSize: 1000, concurrency: 1, partMaxTimeMs: 0 },
  });
  await assert.rejects(reader.read(0, 100), /storage returned 10 bytes, expected 100$/);
  await reader.close();
});
