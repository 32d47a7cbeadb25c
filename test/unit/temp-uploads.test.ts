/** The pure parts of uploads through a temporary name: which names are temporary, what a listing can add. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import { TempUploads } from '../../src/storage/s3/temp-uploads.ts';
import { UploadRegistry } from '../../src/storage/s3/upload-registry.ts';

test('a temporary name maps to its final name; a bare suffix or another name does not', () => {
  const temp = new TempUploads({ suffixes: ['.filepart', '.part'], windowMs: 1000, log: pino({ level: 'silent' }) });
  assert.equal(temp.finalName('/in/report.csv.filepart'), '/in/report.csv');
  assert.equal(temp.finalName('/a.part'), '/a');
  assert.equal(temp.finalName('/in/.filepart'), undefined);
  assert.equal(temp.finalName('/in/report.csv'), undefined);
  assert.equal(temp.finalName('/dir.filepart/x'), undefined);
});

test('take and peek find a parked upload once; a second park of the same name drops the first, never stores it', async () => {
  const temp = new TempUploads({ suffixes: ['.filepart'], windowMs: 60_000, log: pino({ level: 'silent' }) });
  const finished: string[] = [];
  const upload = (id: string) => ({
    finalKey: 'k',
    finish: async (target: string) => void finished.push(`${id}:${target}`),
    abort: async () => void finished.push(`${id}:aborted`),
    setMtime: () => {},
  });
  const first = upload('first');
  temp.park('b', 'k.filepart', first);
  assert.equal(temp.peek('b', 'k.filepart'), first);
  temp.park('b', 'k.filepart', upload('second'));
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(finished, ['first:aborted']);
  assert.ok(temp.take('b', 'k.filepart'));
  assert.equal(temp.take('b', 'k.filepart'), undefined);
  assert.equal(temp.size, 0);
  await temp.flush();
});

test('the registry lists live uploads under a prefix', () => {
  const registry = new UploadRegistry();
  registry.add('b', 'u/a.filepart', { bytesReceived: 5, startedAtMs: 0 });
  registry.add('b', 'u/sub/c', { bytesReceived: 1, startedAtMs: 0 });
  registry.add('other', 'u/x', { bytesReceived: 1, startedAtMs: 0 });
  assert.deepEqual([...registry.under('b', 'u/')].map(([key, u]) => [key, u.bytesReceived]), [['u/a.filepart', 5], ['u/sub/c', 1]]);
});
