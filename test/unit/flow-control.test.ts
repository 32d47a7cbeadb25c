/**
 * Flow control keeps request order: with more READs pipelined than may be in flight (64), the
 * ones that wait, and every request behind them (a CLOSE), still run in arrival order, so no
 * READ finds its handle closed. The real server over MemoryStorage (test/support/in-process-server.ts,
 * which runs with flow control as the real server does).
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Duplex } from 'node:stream';
import { startInProcessServer, type InProcessServer } from '../support/in-process-server.ts';
import { FX, FXF, handleOf, RawSftp } from '../support/sftp-raw.ts';
import { MAX_READS_IN_FLIGHT } from '../../src/sftp/flow-control.ts';

let srv: InProcessServer;

before(async () => {
  srv = await startInProcessServer({ users: [{ username: 'alice' }] });
});

after(() => srv.stop());

test(`${MAX_READS_IN_FLIGHT * 4} pipelined READs then CLOSE: every READ answered with data, in order, then CLOSE OK`, async () => {
  const file = Buffer.alloc(1024 * 1024);
  for (let i = 0; i < file.length; i += 4) file.writeUInt32BE(i, i);
  const writer = await srv.storageOf('alice').openWrite('/f.bin');
  await writer.write(0, file);
  await writer.commit();
  const client = await srv.connect('alice');
  const channel = await new Promise<Duplex>((resolve, reject) => client.subsys('sftp', (err, s) => (err ? reject(err) : resolve(s as unknown as Duplex))));
  const sftp = RawSftp.over(channel);
  await sftp.init();
  const handle = handleOf(await sftp.open('/f.bin', FXF.READ));
  const order: number[] = [];
  const n = MAX_READS_IN_FLIGHT * 4;
  const len = file.length / n;
  const reads = Array.from({ length: n }, (_, i) =>
    sftp.read(handle, i * len, len).then((r) => {
      order.push(i);
      return r;
    }),
  );
  const close = sftp.close(handle).then((r) => {
    order.push(-1);
    return r;
  });
  const replies = await Promise.all(reads);
  for (const [i, r] of replies.entries()) {
    assert.equal(r.type, 'data', `READ ${i}: ${JSON.stringify(r)}`);
    assert.ok(r.type === 'data' && r.data.equals(file.subarray(i * len, (i + 1) * len)), `READ ${i} returned other bytes`);
  }
  assert.equal(((await close) as { code: number }).code, FX.OK);
  assert.deepEqual(order, [...Array.from({ length: n }, (_, i) => i), -1]);
  client.end();
});
