/**
 * Writes issued in one tick go out together (src/ssh/coalesce-writes.ts): the socket is corked from
 * the first write of a tick to the next tick, and every byte still arrives in order.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, createServer, type Socket } from 'node:net';
import { once } from 'node:events';
import { coalesceWrites } from '../../src/ssh/coalesce-writes.ts';

test('writes of one tick are corked together, uncorked on the next tick, and arrive in order', async () => {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  const client = connect(port, '127.0.0.1');
  const [accepted] = (await once(server, 'connection')) as [Socket];
  try {
    coalesceWrites(accepted);
    let writevCalls = 0;
    const original = (accepted as unknown as { _writev: (...a: unknown[]) => unknown })._writev;
    (accepted as unknown as { _writev: (...a: unknown[]) => unknown })._writev = function (this: Socket, ...args: unknown[]) {
      writevCalls++;
      return original.apply(this, args);
    };
    const received: Buffer[] = [];
    client.on('data', (chunk: Buffer) => received.push(chunk));
    const parts = Array.from({ length: 20 }, (_, i) => Buffer.alloc(1000 + i, i));
    for (const part of parts) accepted.write(part);
    assert.equal(accepted.writableCorked, 1, 'held until the tick ends');
    await new Promise((resolve) => process.nextTick(resolve));
    assert.equal(accepted.writableCorked, 0);
    assert.equal(writevCalls, 1, 'one writev for the whole burst');
    const total = parts.reduce((n, p) => n + p.length, 0);
    while (received.reduce((n, c) => n + c.length, 0) < total) await once(client, 'data');
    assert.deepEqual(Buffer.concat(received), Buffer.concat(parts));
    accepted.write('after');
    assert.equal(accepted.writableCorked, 1, 'the next tick corks again');
  } finally {
    client.destroy();
    accepted.destroy();
    server.close();
  }
});
