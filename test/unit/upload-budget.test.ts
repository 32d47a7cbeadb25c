/**
 * The server-wide part memory budget (src/storage/upload-budget.ts): reservations wait in turn,
 * come back on release and on landing, give up with their upload, and never deadlock.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { setImmediate as tick } from 'node:timers/promises';
import { UploadBudget } from '../../src/storage/upload-budget.ts';

/** Resolves to whether `p` has settled by the next macrotask. */
async function settled(p: Promise<unknown>): Promise<boolean> {
  let done = false;
  p.then(
    () => (done = true),
    () => (done = true),
  );
  await tick();
  return done;
}

describe('UploadBudget', () => {
  test('grants reservations that fit at once and counts held, peak and waiting', async () => {
    const budget = new UploadBudget(100);
    const a = {};
    const b = {};
    await budget.reserve(a, 60);
    await budget.reserve(b, 40);
    assert.equal(budget.held, 100);
    assert.equal(budget.peak, 100);
    assert.equal(budget.waiting, 0);
    budget.release(a, 60);
    assert.equal(budget.held, 40);
    assert.equal(budget.peak, 100);
  });

  test('a reservation that does not fit waits until a submitted part lands, then goes in order', async () => {
    const budget = new UploadBudget(100);
    const [a, b, c] = [{}, {}, {}];
    await budget.reserve(a, 80);
    budget.submitted(a, 80); // a's part is on its way to S3
    const second = budget.reserve(b, 50);
    const third = budget.reserve(c, 10); // fits, but must not overtake b
    assert.equal(await settled(second), false);
    assert.equal(await settled(third), false);
    assert.equal(budget.waiting, 2);
    budget.landed(80);
    await second;
    await third;
    assert.equal(budget.held, 60);
    assert.equal(budget.waiting, 0);
    assert.ok(budget.peak <= 100, `peak ${budget.peak}`);
  });

  test('a part kept as a spare stays reserved, and is dropped as soon as someone waits', async () => {
    const budget = new UploadBudget(100);
    const [a, b] = [{}, {}];
    await budget.reserve(a, 80);
    budget.submitted(a, 80);
    let dropped = 0;
    const unhold = budget.holdSpare(() => {
      dropped++;
      unhold();
      budget.release(a, 80);
    });
    budget.landed(80, a);
    assert.equal(budget.held, 80, 'the spare keeps its reservation');
    await budget.reserve(b, 50);
    assert.equal(dropped, 1);
    assert.equal(budget.held, 50);
  });

  test('an aborted wait takes nothing and lets the next waiter in', async () => {
    const budget = new UploadBudget(100);
    const [a, b, c] = [{}, {}, {}];
    await budget.reserve(a, 90);
    budget.submitted(a, 90);
    const ended = new AbortController();
    const cancelled = budget.reserve(b, 50, ended.signal);
    const next = budget.reserve(c, 5);
    assert.equal(await settled(next), false);
    ended.abort(new Error('upload aborted'));
    await assert.rejects(cancelled, /upload aborted/);
    await next;
    assert.equal(budget.held, 95);
    assert.equal(budget.waiting, 0);
    await assert.rejects(budget.reserve(b, 1, ended.signal), /upload aborted/);
  });

  test('a reservation larger than the whole budget is granted when nothing else is held', async () => {
    const budget = new UploadBudget(10);
    const a = {};
    await budget.reserve(a, 64);
    assert.equal(budget.held, 64);
    budget.submitted(a, 64);
    const again = budget.reserve(a, 64);
    assert.equal(await settled(again), false, 'waits while its previous part is on its way');
    budget.landed(64);
    await again;
    assert.equal(budget.held, 64);
  });

  test('no deadlock when every reserved byte belongs to writers that wait for more', async () => {
    // Two uploads each hold a partly filled first part and need the rest of it: nothing is on its
    // way to S3, so only letting one of them go on can free anything.
    const budget = new UploadBudget(100);
    const [a, b] = [{}, {}];
    await budget.reserve(a, 40);
    await budget.reserve(b, 40);
    const growA = budget.reserve(a, 60);
    const growB = budget.reserve(b, 60);
    await growA;
    assert.equal(await settled(growB), false, 'only the oldest waiter goes over the limit');
    budget.submitted(a, 100);
    budget.landed(100);
    await growB;
    assert.equal(budget.held, 100);
  });

  test('a waiter that gets nothing while nothing is in flight is let through after stallMs', async () => {
    let now = 0;
    const budget = new UploadBudget(100, { stallMs: 20, now: () => now });
    const [idle, writer] = [{}, {}];
    await budget.reserve(idle, 100); // held by an upload whose client went quiet
    const waiting = budget.reserve(writer, 50);
    assert.equal(await settled(waiting), false);
    now = 25;
    await waiting;
    assert.equal(budget.held, 150);
  });

  test('many writers in turn never hold more than the budget while parts are in flight', async () => {
    const budget = new UploadBudget(16);
    const writers = Array.from({ length: 8 }, () => ({}));
    const inFlight: number[] = [];
    const work = writers.map(async (w) => {
      for (let part = 0; part < 5; part++) {
        await budget.reserve(w, 5);
        budget.submitted(w, 5);
        inFlight.push(5);
      }
    });
    // S3 stores one part per tick.
    while (inFlight.length > 0 || budget.waiting > 0) {
      await tick();
      if (inFlight.length > 0) budget.landed(inFlight.shift()!);
    }
    await Promise.all(work);
    while (inFlight.length > 0) budget.landed(inFlight.shift()!);
    assert.equal(budget.held, 0);
    assert.ok(budget.peak <= 16, `peak ${budget.peak}`);
  });
});
