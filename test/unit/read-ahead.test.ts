/**
 * ReadAhead (storage/s3/read-ahead.ts) against a fake directory: what it fetches before the session
 * opens it, when it stops, and when a fetched file may no longer answer.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setImmediate as tick } from 'node:timers/promises';
import { ReadAhead, ReadAheadBudget, type ListedFile, type ReadAheadSource } from '../../src/storage/s3/read-ahead.ts';
import type { FirstChunk } from '../../src/storage/s3/reader.ts';

interface Fake {
  ahead: ReadAhead;
  /** The directory's key prefix: "d/", or "" for a user whose home is the bucket's root. */
  dir: string;
  /** Files that grew since they were listed: S3 now holds twice their listed size. */
  grown: Set<string>;
  fetched: string[];
  listings: string[];
  changed: Set<string>;
  clock: { now: number };
  budget: ReadAheadBudget;
}

function chunk(key: string, size: number): FirstChunk {
  return { size, etag: `"${key}"`, lastModified: new Date(0), metadata: { mtime: '1600000000' }, end: size, data: Promise.resolve({} as never) };
}

function fake(files: ListedFile[], options: { held?: boolean; maxFiles?: number; budgetBytes?: number; dir?: string } = {}): Fake {
  const dir = options.dir ?? 'd/';
  const grown = new Set<string>();
  const fetched: string[] = [];
  const listings: string[] = [];
  const changed = new Set<string>();
  const clock = { now: 0 };
  let seq = 0;
  const source: ReadAheadSource = {
    heldFiles: () => (options.held ? files : undefined),
    filesAfter: async (prefix, startAfter, max) => {
      listings.push(startAfter);
      return files.filter((f) => f.name > startAfter).slice(0, max);
    },
    firstChunk: async (key, _closer, maxBytes) => {
      fetched.push(key);
      const file = files.find((f) => `${dir}${f.name}` === key);
      if (!file) return undefined;
      if (!grown.has(file.name)) return chunk(key, file.size);
      return { ...chunk(key, file.size * 2), end: Math.min(file.size * 2, maxBytes) };
    },
    seq: () => seq++,
    changedAfter: (key) => changed.has(key),
    now: () => clock.now,
  };
  const budget = new ReadAheadBudget(options.budgetBytes ?? 1 << 20);
  const ahead = new ReadAhead(source, { maxFiles: options.maxFiles ?? 8, maxFileBytes: 64 * 1024, ttlMs: 5_000 }, budget);
  return { ahead, dir, grown, fetched, listings, changed, clock, budget };
}

const names = (n: number, size = 100): ListedFile[] => Array.from({ length: n }, (_, i) => ({ name: `f${String(i).padStart(2, '0')}`, size }));

/** Opens a file as S3Storage does: take what was fetched ahead, then report the open. */
async function open(f: Fake, name: string): Promise<boolean> {
  const got = await f.ahead.take(`${f.dir}${name}`);
  f.ahead.opened(`${f.dir}${name}`);
  await tick();
  return got !== undefined;
}

test('two files opened in name order: the next ones are fetched, from the held listing without a request', async () => {
  const f = fake(names(20), { held: true });
  assert.equal(await open(f, 'f00'), false);
  assert.deepEqual(f.fetched, [], 'one open says nothing about the next');
  assert.equal(await open(f, 'f01'), false);
  assert.deepEqual(f.fetched, ['d/f02', 'd/f03', 'd/f04', 'd/f05']);
  assert.deepEqual(f.listings, []);
  // Each hit widens the window up to maxFiles; a file fetched ahead answers the OPEN once.
  for (let i = 2; i < 12; i++) assert.equal(await open(f, `f${String(i).padStart(2, '0')}`), true, `f${i}`);
  assert.equal(new Set(f.fetched).size, f.fetched.length, 'no file fetched twice');
  assert.ok(f.fetched.length <= 12 + 8);
  assert.equal(await f.ahead.take('d/f05'), undefined, 'handed over once');
});

test("a home at the bucket's root reads ahead in its top directory as in any other", async () => {
  const f = fake(names(6), { held: true, dir: '' });
  await open(f, 'f00');
  await open(f, 'f01');
  assert.deepEqual(f.fetched, ['f02', 'f03', 'f04', 'f05']);
  assert.equal(await open(f, 'f02'), true);
});

test('a file that grew since it was listed is fetched only to its listed size, and its OPEN fetches it itself', async () => {
  const f = fake(names(6), { held: true });
  f.grown.add('f02');
  await open(f, 'f00');
  await open(f, 'f01');
  assert.equal(await f.ahead.peek('d/f02'), undefined, 'no size or time from a partial fetch');
  assert.equal(await open(f, 'f02'), false);
  assert.equal(await open(f, 'f03'), true);
});

test('without a held listing the next names come from one listing after the first opened', async () => {
  const f = fake(names(5));
  await open(f, 'f00');
  await open(f, 'f01');
  await tick();
  assert.deepEqual(f.listings, ['f00']);
  assert.deepEqual(f.fetched, ['d/f02', 'd/f03', 'd/f04']);
});

test('two files opened in name order with names between them: nothing is fetched ahead', async () => {
  const listed = fake(names(10));
  await open(listed, 'f00');
  await open(listed, 'f02');
  await tick();
  assert.deepEqual(listed.fetched, [], 'the listing shows f01 between them');
  const held = fake(names(10), { held: true });
  await open(held, 'f03');
  await open(held, 'f07');
  for (let i = 8; i < 10; i++) await open(held, `f0${i}`);
  assert.deepEqual(held.fetched, [], 'the held listing shows names between them');
});

test('files opened against name order, or in another directory each time, fetch nothing ahead', async () => {
  const f = fake(names(20), { held: true });
  for (const name of ['f09', 'f07', 'f05', 'f02', 'f01']) await open(f, name);
  for (const key of ['e/f04', 'd/f05', 'e/f06', 'd/f07']) {
    await f.ahead.take(key);
    f.ahead.opened(key);
  }
  await tick();
  assert.deepEqual(f.fetched, []);
});

test('empty files and files above the size limit are left to their OPEN', async () => {
  const files = [...names(3), { name: 'g-big', size: 1 << 20 }, { name: 'h-empty', size: 0 }, { name: 'i', size: 10 }];
  const f = fake(files, { held: true });
  await open(f, 'f00');
  await open(f, 'f01');
  assert.deepEqual(f.fetched, ['d/f02', 'd/i']);
});

test('a file changed through the server, or fetched more than ttl ago, does not answer', async () => {
  const f = fake(names(10), { held: true });
  await open(f, 'f00');
  await open(f, 'f01');
  f.changed.add('d/f02');
  assert.equal(await f.ahead.peek('d/f02'), undefined);
  assert.equal(await open(f, 'f02'), false);
  f.clock.now += 5_001;
  assert.equal(await f.ahead.peek('d/f03'), undefined);
  assert.equal(await open(f, 'f03'), false);
});

test('STAT may look at a fetched file without taking it from the OPEN', async () => {
  const f = fake(names(10), { held: true });
  await open(f, 'f00');
  await open(f, 'f01');
  assert.equal((await f.ahead.peek('d/f02'))?.size, 100);
  assert.equal(await open(f, 'f02'), true);
});

test('skipping fetched files shrinks the window, to nothing once more were skipped than used; the budget caps what is held', async () => {
  const f = fake(names(40), { held: true });
  await open(f, 'f00');
  await open(f, 'f01');
  for (let i = 2; i < 10; i++) assert.equal(await open(f, `f0${i}`), true);
  const before = f.fetched.length;
  await open(f, 'f20'); // skips the 8 fetched after f09: as many skipped as used
  // Window halved from 8 to 4 files ahead of f20.
  assert.deepEqual(f.fetched.slice(before), ['d/f21', 'd/f22', 'd/f23', 'd/f24']);
  const again = f.fetched.length;
  await open(f, 'f30'); // skips those too: more skipped than used, the client reads some other way
  await open(f, 'f31');
  assert.deepEqual(f.fetched.slice(again), []);

  const tight = fake(names(20, 100), { held: true, budgetBytes: 250 });
  await open(tight, 'f00');
  await open(tight, 'f01');
  assert.deepEqual(tight.fetched, ['d/f02', 'd/f03']);
  assert.equal(tight.budget.usedBytes, 200);
  await open(tight, 'f02');
  assert.equal(tight.budget.usedBytes, 200, 'a taken file gives its bytes back, the next takes them');
  tight.ahead.clear();
  assert.equal(tight.budget.usedBytes, 0);
});

test('one of several connections reading a directory between them (rclone) stops after one window it did not use', async () => {
  const f = fake(names(40), { held: true });
  // Two neighbours by chance, then every fourth name: the other connections open the rest.
  for (const i of [0, 1, ...Array.from({ length: 9 }, (_, k) => 5 + 4 * k)]) await open(f, `f${String(i).padStart(2, '0')}`);
  assert.deepEqual(f.fetched, ['d/f02', 'd/f03', 'd/f04', 'd/f05']);
});

test('maxFiles 0 turns it off', async () => {
  const f = fake(names(10), { held: true, maxFiles: 0 });
  for (let i = 0; i < 5; i++) await open(f, `f0${i}`);
  assert.deepEqual(f.fetched, []);
});

test('a large directory of large files is listed once per 100 names the client passes, not ahead of it', async () => {
  const f = fake(names(300, 1 << 20).map((file, i) => ({ ...file, name: `f${String(i).padStart(3, '0')}` })));
  for (let i = 0; i < 50; i++) await open(f, `f${String(i).padStart(3, '0')}`);
  await tick();
  assert.deepEqual(f.fetched, []);
  assert.equal(f.listings.length, 1);
  for (let i = 50; i < 102; i++) await open(f, `f${String(i).padStart(3, '0')}`);
  await tick();
  assert.equal(f.listings.length, 2);
});
