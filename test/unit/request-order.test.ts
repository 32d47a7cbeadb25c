import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { RequestOrder, conflicts, type OrderKey } from '../../src/sftp/request-order.ts';

/** A piece of work that finishes when the test says so, recording when it started. */
function gate(log: string[], name: string) {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  return {
    work: async () => {
      log.push(`start ${name}`);
      await opened;
      log.push(`end ${name}`);
    },
    open,
  };
}

/** Lets every queued microtask and promise continuation run. */
const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

const at = (...paths: string[]): OrderKey => ({ paths });
const tree = (...paths: string[]): OrderKey => ({ paths, tree: true });

describe('conflicts', () => {
  test('the same path conflicts; a sibling or a child does not, for plain requests', () => {
    assert.equal(conflicts(at('/a'), at('/a')), true);
    assert.equal(conflicts(at('/a'), at('/b')), false);
    assert.equal(conflicts(at('/a'), at('/a/b')), false);
    assert.equal(conflicts(at('/ab'), at('/a')), false);
  });

  test('rename, remove, rmdir and mkdir conflict with their parents and children', () => {
    assert.equal(conflicts(tree('/d'), at('/d/f')), true);
    assert.equal(conflicts(at('/d/f'), tree('/d')), true);
    assert.equal(conflicts(tree('/d/f'), at('/d')), true);
    assert.equal(conflicts(tree('/d'), at('/dx')), false);
    assert.equal(conflicts(tree('/a', '/b'), at('/b/c')), true);
    assert.equal(conflicts(tree('/a', '/b'), at('/c')), false);
  });

  test('a request without paths conflicts with nothing', () => {
    assert.equal(conflicts(at(), tree('/')), false);
  });
});

describe('RequestOrder', () => {
  test('a request waits for an earlier one on the same path and runs after it', async () => {
    const order = new RequestOrder();
    const log: string[] = [];
    const open = gate(log, 'open /a');
    const lstat = gate(log, 'lstat /a');
    const p1 = order.run(at('/a'), open.work);
    const p2 = order.run(at('/a'), lstat.work);
    lstat.open();
    await settle();
    assert.deepEqual(log, ['start open /a']);
    open.open();
    await Promise.all([p1, p2]);
    assert.deepEqual(log, ['start open /a', 'end open /a', 'start lstat /a', 'end lstat /a']);
    assert.equal(order.size, 0);
  });

  test('requests on unrelated paths run in parallel', async () => {
    const order = new RequestOrder();
    const log: string[] = [];
    const a = gate(log, 'write /a');
    const b = gate(log, 'write /b');
    const pa = order.run(at('/a'), a.work);
    const pb = order.run(at('/b'), b.work);
    await settle();
    assert.deepEqual(log, ['start write /a', 'start write /b']);
    b.open();
    await pb;
    assert.deepEqual(log, ['start write /a', 'start write /b', 'end write /b']);
    a.open();
    await pa;
  });

  test('a stat inside a directory being renamed waits for the rename', async () => {
    const order = new RequestOrder();
    const log: string[] = [];
    const rename = gate(log, 'rename');
    const stat = gate(log, 'stat');
    const other = gate(log, 'other');
    const p1 = order.run(tree('/d', '/e'), rename.work);
    const p2 = order.run(at('/e/f'), stat.work);
    const p3 = order.run(at('/x'), other.work);
    stat.open();
    other.open();
    await settle();
    assert.deepEqual(log, ['start rename', 'start other', 'end other']);
    rename.open();
    await Promise.all([p1, p2, p3]);
    assert.deepEqual(log.slice(3), ['end rename', 'start stat', 'end stat']);
  });

  test('a failed request still releases the ones behind it, and its caller sees the error', async () => {
    const order = new RequestOrder();
    const failed = order.run(at('/a'), async () => {
      throw new Error('boom');
    });
    const next = order.run(at('/a'), async () => 'ran');
    await assert.rejects(failed, /boom/);
    assert.equal(await next, 'ran');
  });

  test('a later request does not overtake an earlier conflicting one through a third', async () => {
    const order = new RequestOrder();
    const log: string[] = [];
    const first = gate(log, 'remove /d');
    const p1 = order.run(tree('/d'), first.work);
    const p2 = order.run(at('/d/a'), async () => void log.push('stat /d/a'));
    const p3 = order.run(at('/d/b'), async () => void log.push('stat /d/b'));
    await settle();
    assert.deepEqual(log, ['start remove /d']);
    first.open();
    await Promise.all([p1, p2, p3]);
    assert.deepEqual(log, ['start remove /d', 'end remove /d', 'stat /d/a', 'stat /d/b']);
  });
});
