import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ChangeLog, DirectoryMemory, DirectoryPeers, type KnownName } from '../../src/storage/s3/directory-memory.ts';

const file = (size: number): KnownName => ({ file: { size, lastModified: undefined }, directory: false });

function memory(log = new ChangeLog()): { memory: DirectoryMemory; clock: { now: number } } {
  const clock = { now: 1_000_000 };
  return { memory: new DirectoryMemory({ now: () => clock.now, ttlMs: 5_000, bucket: 'b', log }), clock };
}

test('a held listing answers for its names and says the others do not exist, until 5 s after it was requested', () => {
  const { memory: m, clock } = memory();
  m.remember('home/d/', clock.now - 1_000, m.seq, new Map([['a', file(3)], ['sub', { directory: true }]]));
  assert.deepEqual(m.name('home/d/', 'a')?.state, file(3));
  assert.deepEqual(m.name('home/d/', 'sub')?.state, { directory: true });
  assert.equal(m.name('home/d/', 'none')?.state, 'absent');
  assert.equal(m.name('home/other/', 'a'), undefined);
  clock.now += 3_999;
  assert.equal(m.name('home/d/', 'none')?.state, 'absent');
  clock.now += 1;
  assert.equal(m.name('home/d/', 'none'), undefined, 'expired');
  assert.equal(m.stale('home/d/'), true, 'expired lately: worth listing again');
  clock.now += 60_000;
  assert.equal(m.stale('home/d/'), false);
});

test('a big directory is held as such for a minute: no names, no relisting', () => {
  const { memory: m, clock } = memory();
  m.remember('big/', clock.now, m.seq, undefined);
  assert.equal(m.directory('big/'), 'big');
  assert.equal(m.name('big/', 'x'), undefined);
  clock.now += 5_000;
  assert.equal(m.stale('big/'), false);
  assert.equal(m.directory('big/'), 'big', 'still big after a listing\'s 5 s');
  clock.now += 55_000;
  assert.equal(m.directory('big/'), undefined, 'looked at again after a minute');
});

test('a big directory that changes itself (removed, renamed) is forgotten at once', () => {
  const log = new ChangeLog();
  const { memory: m, clock } = memory(log);
  m.remember('home/big/', clock.now, m.seq, undefined);
  log.note('b', 'home/big');
  assert.equal(m.directory('home/big/'), undefined);
});

test("the session's changes: the name is asked about again, listings at or under it are dropped", () => {
  const { memory: m, clock } = memory();
  m.remember('d/', clock.now, m.seq, new Map([['a', file(1)], ['b', file(2)], ['sub', { directory: true }]]));
  m.remember('d/sub/deeper/', clock.now, m.seq, new Map([['x', file(1)]]));
  m.changed('d/a');
  assert.equal(m.name('d/', 'a'), undefined);
  assert.equal(m.holdsOtherThan('d/', 'b'), true, 'sub is still known');
  m.changed('d/sub');
  assert.equal(m.directory('d/sub/deeper/'), undefined);
  assert.equal(m.holdsOtherThan('d/', 'b'), false, 'a and sub changed');
});

test('a listing requested before a change does not bring the old state back; one requested after is taken whole', () => {
  const { memory: m, clock } = memory();
  const before = m.seq;
  m.changed('d/a'); // an upload stored while the listing was on its way
  m.changed('d/gone'); // a directory removed meanwhile
  m.remember('d/', clock.now, before, new Map([['b', file(2)]]));
  assert.equal(m.name('d/', 'a'), undefined, 'not "absent"');
  assert.deepEqual(m.name('d/', 'b')?.state, file(2));
  m.remember('d/gone/', clock.now, before, new Map([['x', file(1)]]));
  assert.equal(m.directory('d/gone/'), undefined);
  m.remember('d/', clock.now, m.seq, new Map([['b', file(2)]]));
  assert.equal(m.name('d/', 'a')?.state, 'absent');
  m.remember('d/gone/', clock.now, m.seq, new Map());
  assert.equal(m.name('d/gone/', 'x')?.state, 'absent');
});

test("another session's change through the same server is seen at once", () => {
  const log = new ChangeLog();
  const { memory: mine, clock } = memory(log);
  const { memory: theirs } = memory(log);
  mine.remember('d/', clock.now, mine.seq, new Map([['a', file(1)]]));
  theirs.changed('d/a');
  theirs.changed('d/new');
  assert.equal(mine.name('d/', 'a'), undefined);
  assert.equal(mine.name('d/', 'new'), undefined);
  theirs.changed('d');
  assert.equal(mine.directory('d/'), undefined);
  // Another bucket's key of the same name is another object.
  const other = new DirectoryMemory({ now: () => clock.now, ttlMs: 5_000, bucket: 'other', log });
  mine.remember('e/', clock.now, mine.seq, new Map([['a', file(1)]]));
  other.changed('e/a');
  assert.deepEqual(mine.name('e/', 'a')?.state, file(1));
});

test('a log that forgot changes newer than a listing invalidates it', () => {
  const log = new ChangeLog();
  const { memory: m, clock } = memory(log);
  m.remember('d/', clock.now, m.seq, new Map([['a', file(1)]]));
  for (let i = 0; i < 10_001; i++) log.note('b', `elsewhere/${i}`);
  assert.equal(m.name('d/', 'a'), undefined);
});

test('the root prefix "" works like any other', () => {
  const { memory: m, clock } = memory();
  m.remember('', clock.now, m.seq, new Map([['top', file(1)]]));
  assert.deepEqual(m.name('', 'top')?.state, file(1));
  m.changed('top');
  assert.equal(m.name('', 'top'), undefined);
});

test('a directory seen counts for 5 s, until it or one above it changes through the server, by any session', () => {
  const log = new ChangeLog();
  const { memory: mine, clock } = memory(log);
  const { memory: theirs } = memory(log);
  mine.sawDirectory('home/a/b', mine.seq);
  mine.sawDirectory('home/c', mine.seq);
  mine.sawDirectory('home/d', mine.seq);
  assert.equal(mine.seenDirectory('home/a/b'), true);
  assert.equal(mine.seenDirectory('home/a'), false, 'only what was seen');
  // A file written inside it does not make it doubtful; removing a directory above it does.
  theirs.changed('home/a/b/file');
  assert.equal(mine.seenDirectory('home/a/b'), true);
  theirs.changed('home/a');
  assert.equal(mine.seenDirectory('home/a/b'), false);
  mine.changed('home/c');
  assert.equal(mine.seenDirectory('home/c'), false);
  clock.now += 5_000;
  assert.equal(mine.seenDirectory('home/d'), false, 'expired');
});

test("a directory seen by a request that another session's change overtook is not taken as seen", () => {
  const log = new ChangeLog();
  const { memory: mine } = memory(log);
  const { memory: theirs } = memory(log);
  // The STAT is sent, the other session removes the directory, then S3's (older) answer arrives.
  const asked = mine.seq;
  theirs.changed('home/gone');
  mine.sawDirectory('home/gone', asked);
  assert.equal(mine.seenDirectory('home/gone'), false);
  mine.sawDirectory('home/here', mine.seq);
  assert.equal(mine.seenDirectory('home/here'), true);
});

test("a directory's STAT answer (its marker's time) is kept while it is seen", () => {
  const { memory: mine, clock } = memory();
  const marked = new Date('2020-01-01T00:00:00Z');
  mine.sawDirectory('home/up', mine.seq, { mtime: marked });
  mine.sawDirectory('home/implicit', mine.seq, { mtime: undefined });
  mine.sawDirectory('home/listed', mine.seq);
  assert.deepEqual(mine.seenDirectoryMarker('home/up'), { mtime: marked });
  assert.deepEqual(mine.seenDirectoryMarker('home/implicit'), { mtime: undefined });
  assert.equal(mine.seenDirectoryMarker('home/listed'), undefined, 'seen by a listing: its time is not known');
  // A file written into it changes nothing; the directory itself removed or renamed does.
  mine.changed('home/up/file');
  assert.deepEqual(mine.seenDirectoryMarker('home/up'), { mtime: marked });
  mine.changed('home/up');
  assert.equal(mine.seenDirectoryMarker('home/up'), undefined);
  clock.now += 5_001;
  assert.equal(mine.seenDirectoryMarker('home/implicit'), undefined, 'after the 5 s, S3 is asked again');
});

test("one user's sessions through one store answer from each other's listings; other users' do not", () => {
  const log = new ChangeLog();
  const peers = new DirectoryPeers();
  const clock = { now: 1_000_000 };
  const session = (group: string) => new DirectoryMemory({ now: () => clock.now, ttlMs: 5_000, bucket: 'b', log, peers: peers.group(group) });
  const lister = session('alice');
  const remover = session('alice');
  const stranger = session('bob');
  lister.remember('home/d/', clock.now, lister.seq, new Map([['a', file(1)], ['b', file(2)]]));
  assert.deepEqual(remover.name('home/d/', 'a')?.state, file(1), "the lister's listing answers the remover");
  assert.equal(remover.name('home/d/', 'zz')?.state, 'absent');
  assert.equal(stranger.name('home/d/', 'a'), undefined, 'another user keeps to their own');
  // A change through any session counts against the shared listing at once.
  remover.changed('home/d/a');
  assert.equal(lister.name('home/d/', 'a'), undefined);
  assert.equal(remover.holdsOtherThan('home/d/', 'b'), false, 'a is gone, only b is left');
  assert.equal(remover.holdsOtherThan('home/d/', 'a'), true);
  clock.now += 5_001;
  assert.equal(remover.name('home/d/', 'b'), undefined, 'and expires with it');
});
