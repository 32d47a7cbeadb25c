/**
 * LeaderOnly (src/leader-only.ts): a task per leadership term, never two at once; and the
 * shortenable drain delay (src/shortenable-delay.ts).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LeaderOnly, type LeaderTask } from '../../src/leader-only.ts';
import { ShortenableDelay } from '../../src/shortenable-delay.ts';

function tasks() {
  const log: string[] = [];
  let n = 0;
  const make = (): LeaderTask => {
    const id = ++n;
    return { start: () => void log.push(`start ${id}`), stop: async () => void log.push(`stop ${id}`) };
  };
  return { log, make };
}

const settle = () => new Promise((r) => setImmediate(r));

test('a fresh task starts with each term and stops when it ends; close stops the current one', async () => {
  const { log, make } = tasks();
  const gate = new LeaderOnly({ name: 'janitor', make, log: { info: () => {} } });
  gate.setLeading(true);
  gate.setLeading(true);
  await settle();
  assert.equal(gate.running, true);
  gate.setLeading(false);
  gate.setLeading(true);
  await settle();
  await gate.close();
  assert.deepEqual(log, ['start 1', 'stop 1', 'start 2', 'stop 2']);
  gate.setLeading(true);
  assert.equal(gate.running, false, 'closed for good');
});

test('leadership lost before the task started: it never starts', async () => {
  const { log, make } = tasks();
  const gate = new LeaderOnly({ name: 'janitor', make, log: { info: () => {} } });
  gate.setLeading(true);
  gate.setLeading(false);
  await settle();
  await gate.close();
  assert.deepEqual(log, ['stop 1']);
});

test('a shorter second wait cuts the first one short', async () => {
  const delay = new ShortenableDelay();
  const long = delay.wait(3_600_000);
  await delay.wait(0);
  await long;
});
