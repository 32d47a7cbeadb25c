/**
 * The storage conformance suite: what every Storage implementation must do,
 * expressed only through the Storage interface. A backend's integration test
 * calls storageConformance() with a factory; backend-specific checks
 * (multipart leftovers in S3, key prefixes...) live next to that call.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes, randomInt } from 'node:crypto';
import { describe, it } from 'node:test';
import {
  AlreadyExistsError,
  InvalidRequestError,
  NotEmptyError,
  PermissionDeniedError,
  NotFoundError,
  UnsupportedError,
  WrongTypeError,
} from '../../src/storage/errors.ts';
import type { FileInfo, FileWriter, OpenWriteOptions, Storage } from '../../src/storage/storage.ts';

const KiB = 1024;
const MiB = 1024 * KiB;

/** Which flavour of storage a test needs; backends map these onto their own settings. */
export interface ConformanceVariant {
  /** Non-empty directories can be renamed (S3: renameMode 1). */
  renamesDirectories?: boolean;
  /** Refuse renaming directories holding more than this many entries. */
  renameMaxObjects?: number;
}

/** A fresh, empty storage namespace and how to dispose of it. */
export interface ConformanceTarget {
  storage: Storage;
  cleanup(): Promise<void>;
  /** Uploads the backend still holds for this namespace (S3: incomplete multipart uploads). */
  leftoverUploads?(): Promise<string[]>;
  /**
   * Creates many entries the way the storage itself would lay them out, but
   * faster (one request each); for tests about listing, not creating. Paths
   * ending in "/" are directories, the others files holding their own name.
   */
  seed?(paths: string[]): Promise<void>;
}

/** Runs the suite. `makeStorage` must return an empty namespace each time. */
export function storageConformance(
  name: string,
  makeStorage: (variant?: ConformanceVariant) => Promise<ConformanceTarget>,
): void {
  /** Runs `body` against a fresh namespace, cleaning up afterwards. */
  const withStorage = async (
    variant: ConformanceVariant | undefined,
    body: (target: ConformanceTarget) => Promise<void>,
  ): Promise<void> => {
    const target = await makeStorage(variant);
    try {
      await body(target);
    } finally {
      await target.cleanup();
    }
  };
  const test = (title: string, body: (target: ConformanceTarget) => Promise<void>, variant?: ConformanceVariant) =>
    it(title, () => withStorage(variant, body));

  describe(`storage conformance: ${name}`, () => {
    describe('directories', () => {
      test('the root is a directory', async ({ storage }) => {
        const root = await storage.stat('/');
        assert.equal(root.isDirectory, true);
        assert.equal(root.name, '/');
        assert.deepEqual(await listAll(storage, '/'), []);
      });

      test('mkdir, stat, list, rmdir', async ({ storage }) => {
        await storage.mkdir('/d');
        const info = await storage.stat('/d');
        assert.equal(info.isDirectory, true);
        assert.equal(info.name, 'd');
        assert.ok(info.mtime instanceof Date && !Number.isNaN(info.mtime.getTime()));
        await storage.mkdir('/d/sub');
        assert.deepEqual(summary(await listAll(storage, '/')), ['d/']);
        assert.deepEqual(summary(await listAll(storage, '/d')), ['sub/']);
        assert.deepEqual(await listAll(storage, '/d/sub'), []);
        await assert.rejects(storage.mkdir('/d'), AlreadyExistsError);
        await storage.rmdir('/d/sub');
        await storage.rmdir('/d');
        await assert.rejects(storage.stat('/d'), NotFoundError);
        await assert.rejects(storage.rmdir('/d'), NotFoundError);
        await assert.rejects(listAll(storage, '/d'), NotFoundError);
      });

      test('requireParent refuses a file in a missing directory and creates nothing', async ({ storage }) => {
        await assert.rejects(storage.openWrite('/missing/f', { requireParent: true }), NotFoundError);
        await assert.rejects(storage.stat('/missing'), NotFoundError);
        await storage.mkdir('/present');
        await writeFile(storage, '/present/f', Buffer.from('ok'), { requireParent: true });
        await writeFile(storage, '/top', Buffer.from('ok'), { requireParent: true });
        assert.deepEqual(summary(await listAll(storage, '/')), ['present/', 'top']);
      });

      test('mkdir in a missing directory is refused, as mkdir(2) refuses it, and makes nothing', async ({ storage }) => {
        await assert.rejects(storage.mkdir('/a/b/c'), NotFoundError);
        await assert.rejects(storage.stat('/a'), NotFoundError);
        await storage.mkdir('/a');
        await storage.mkdir('/a/b');
        await storage.mkdir('/a/b/c');
        assert.equal((await storage.stat('/a/b/c')).isDirectory, true);
      });

      test('rmdir of a non-empty directory fails and keeps it', async ({ storage }) => {
        await storage.mkdir('/full');
        await writeFile(storage, '/full/f', Buffer.from('x'));
        await assert.rejects(storage.rmdir('/full'), (err: Error) => {
          assert.ok(err instanceof NotEmptyError);
          assert.equal(err.message, 'directory not empty');
          return true;
        });
        await storage.mkdir('/full2');
        await storage.mkdir('/full2/child');
        await assert.rejects(storage.rmdir('/full2'), NotEmptyError);
        assert.equal((await storage.stat('/full/f')).size, 1);
      });

      test('removing the last file keeps its directory', async ({ storage }) => {
        await writeFile(storage, '/implicit/f', Buffer.from('x'));
        await storage.remove('/implicit/f');
        assert.equal((await storage.stat('/implicit')).isDirectory, true);
        await storage.rmdir('/implicit');
        await assert.rejects(storage.stat('/implicit'), NotFoundError);
      });

      test('files and directories are not interchangeable', async ({ storage }) => {
        await writeFile(storage, '/file', Buffer.from('data'));
        await storage.mkdir('/dir');
        await assert.rejects(listAll(storage, '/file'), WrongTypeError);
        await assert.rejects(storage.rmdir('/file'), WrongTypeError);
        await assert.rejects(storage.remove('/dir'), WrongTypeError);
        await assert.rejects(storage.mkdir('/file'), AlreadyExistsError);
        await assert.rejects(storage.mkdir('/file/sub'), WrongTypeError);
        await assert.rejects(storage.openWrite('/file/sub'), WrongTypeError);
        await assert.rejects(storage.openWrite('/file/sub', { requireParent: true }), WrongTypeError);
        await assert.rejects(storage.openWrite('/dir'), WrongTypeError);
        await assert.rejects(storage.openRead('/dir'), WrongTypeError);
        await assert.rejects(storage.openRead('/missing'), NotFoundError);
        await assert.rejects(storage.remove('/missing'), NotFoundError);
      });
    });

    describe('files', () => {
      test('write a small file and read it back', async ({ storage }) => {
        const data = Buffer.from('hello, world\n');
        await writeFile(storage, '/hello.txt', data);
        const info = await storage.stat('/hello.txt');
        assert.equal(info.isDirectory, false);
        assert.equal(info.size, data.length);
        assert.equal(info.name, 'hello.txt');
        assert.ok(!info.uploading);
        assert.deepEqual(await readFile(storage, '/hello.txt'), data);
        const reader = await storage.openRead('/hello.txt');
        assert.equal(reader.size, data.length);
        assert.deepEqual(await reader.read(7, 100), Buffer.from('world\n'));
        assert.equal((await reader.read(data.length, 10)).length, 0);
        assert.equal((await reader.read(data.length + 100, 10)).length, 0);
        await reader.close();
        await storage.remove('/hello.txt');
        await assert.rejects(storage.stat('/hello.txt'), NotFoundError);
      });

      test('an empty file', async ({ storage }) => {
        const writer = await storage.openWrite('/empty');
        await writer.commit();
        assert.equal((await storage.stat('/empty')).size, 0);
        assert.equal((await readFile(storage, '/empty')).length, 0);
      });

      test('a reader tells the size and mtime stat reports, for an empty file too', async ({ storage }) => {
        const mtime = new Date('2003-03-03T03:03:03.000Z');
        for (const [path, data] of [['/sized', Buffer.from('twelve bytes')], ['/zero', Buffer.alloc(0)]] as const) {
          const writer = await storage.openWrite(path);
          await writer.write(0, data);
          writer.setMtime(mtime);
          await writer.commit();
          const reader = await storage.openRead(path);
          assert.equal(reader.size, data.length, path);
          assert.equal(reader.mtime.getTime(), (await storage.stat(path)).mtime.getTime(), path);
          assert.equal(reader.mtime.getTime(), mtime.getTime(), path);
          assert.deepEqual(await reader.read(0, 100), data, path);
          await reader.close();
        }
        await storage.mkdir('/dir');
        await assert.rejects(storage.openRead('/dir'), WrongTypeError);
        await assert.rejects(storage.openRead('/none'), NotFoundError);
      });

      test('openWrite hands its check what the path holds; a check that throws refuses the open', async ({ storage }) => {
        const seen: (FileInfo | undefined)[] = [];
        const check = (found: FileInfo | undefined) => void seen.push(found);
        const fresh = await storage.openWrite('/checked', { check });
        await fresh.write(0, Buffer.from('12345'));
        await fresh.commit();
        assert.equal(seen.length, 1);
        assert.equal(seen[0], undefined);
        const again = await storage.openWrite('/checked', { check });
        await again.abort();
        const existing = seen[1];
        assert.equal(existing?.isDirectory, false);
        assert.equal(existing?.size, 5);
        const refusal = new Error('not allowed');
        await assert.rejects(storage.openWrite('/refused', { check: () => { throw refusal; } }), (err) => err === refusal);
        await assert.rejects(storage.stat('/refused'), NotFoundError);
        await storage.mkdir('/a-dir');
        await assert.rejects(storage.openWrite('/a-dir', { check }), WrongTypeError);
        assert.equal(seen.length, 2, 'a directory is refused before the check');
        // A name that only shares a prefix with others is looked at exactly.
        await writeFile(storage, '/a-dir.txt', Buffer.from('x'));
        await storage.mkdir('/a-dir/sub');
        const near = await storage.openWrite('/a-dir.tx', { check });
        await near.abort();
        assert.equal(seen[2], undefined);
        assert.equal(seen.length, 3);
      });

      test('rename hands its check what the target holds; a check that throws changes nothing', async ({ storage }) => {
        await writeFile(storage, '/src', Buffer.from('source'));
        await writeFile(storage, '/dst', Buffer.from('target!'));
        await storage.mkdir('/folder');
        const seen: (FileInfo | undefined)[] = [];
        const refusal = new Error('not allowed');
        const refuse = (found: FileInfo | undefined) => {
          seen.push(found);
          throw refusal;
        };
        await assert.rejects(storage.rename('/src', '/dst', { overwrite: true, check: refuse }), (err) => err === refusal);
        await assert.rejects(storage.rename('/src', '/folder', { overwrite: true, check: refuse }), (err) => err === refusal);
        assert.deepEqual(await readFile(storage, '/dst'), Buffer.from('target!'));
        assert.deepEqual(await readFile(storage, '/src'), Buffer.from('source'));
        assert.deepEqual(seen.map((f) => [f?.isDirectory, f?.size]), [[false, 7], [true, 0]]);
        const fresh: (FileInfo | undefined)[] = [];
        await storage.rename('/src', '/moved', { overwrite: true, check: (f) => void fresh.push(f) });
        assert.equal(fresh.length, 1);
        assert.equal(fresh[0], undefined);
        assert.deepEqual(await readFile(storage, '/moved'), Buffer.from('source'));
      });

      test('nothing is visible before commit; overwrite replaces', async ({ storage }) => {
        await writeFile(storage, '/f', Buffer.from('old'));
        const writer = await storage.openWrite('/f');
        await writer.write(0, Buffer.from('new content'));
        assert.deepEqual(await readFile(storage, '/f'), Buffer.from('old'));
        await writer.commit();
        assert.deepEqual(await readFile(storage, '/f'), Buffer.from('new content'));
      });

      test('a 40 MiB multipart file reads back intact, sequentially and at random', async ({ storage }) => {
        const data = randomBytes(40 * MiB);
        const writer = await storage.openWrite('/big.bin');
        for (let offset = 0; offset < data.length; offset += 256 * KiB) {
          await writer.write(offset, data.subarray(offset, offset + 256 * KiB));
        }
        assert.equal(writer.bytesReceived, data.length);
        await writer.commit();
        assert.equal((await storage.stat('/big.bin')).size, data.length);

        const reader = await storage.openRead('/big.bin');
        const hash = createHash('sha256');
        let offset = 0;
        for (;;) {
          const piece = await reader.read(offset, 32 * KiB);
          if (piece.length === 0) break;
          hash.update(piece);
          offset += piece.length;
        }
        assert.equal(offset, data.length);
        assert.equal(hash.digest('hex'), sha256(data));
        for (let i = 0; i < 20; i++) {
          const at = randomInt(0, data.length);
          const length = randomInt(1, 300 * KiB);
          const piece = await reader.read(at, length);
          assert.deepEqual(piece, data.subarray(at, at + length), `random read at ${at}+${length}`);
        }
        await reader.close();
      });

      test('pipelined reads (many outstanding requests) are all correct', async ({ storage }) => {
        const data = randomBytes(12 * MiB + 777);
        await writeFile(storage, '/pipelined.bin', data);
        const reader = await storage.openRead('/pipelined.bin');
        const pieces = await Promise.all(
          Array.from({ length: Math.ceil(data.length / (32 * KiB)) }, (_, i) => reader.read(i * 32 * KiB, 32 * KiB)),
        );
        assert.equal(sha256(Buffer.concat(pieces)), sha256(data));
        await reader.close();
        await assert.rejects(reader.read(0, 1));
      });

      test('out-of-order writes within the window are assembled', async ({ storage }) => {
        const data = randomBytes(7 * MiB);
        const writer = await storage.openWrite('/ooo.bin');
        const piece = 128 * KiB;
        const offsets: number[] = [];
        for (let offset = 0; offset < data.length; offset += piece) offsets.push(offset);
        // Swap neighbours pairwise, and send one block three places late.
        for (let i = 0; i + 1 < offsets.length; i += 2) [offsets[i], offsets[i + 1]] = [offsets[i + 1]!, offsets[i]!];
        offsets.splice(12, 0, ...offsets.splice(9, 1));
        for (const offset of offsets) await writer.write(offset, data.subarray(offset, offset + piece));
        assert.equal(writer.bytesReceived, data.length);
        await writer.commit();
        assert.equal(sha256(await readFile(storage, '/ooo.bin')), sha256(data));
      });

      test('a write far beyond the received data is refused', async ({ storage }) => {
        const writer = await storage.openWrite('/far');
        await writer.write(0, Buffer.alloc(10));
        await assert.rejects(writer.write(64 * MiB, Buffer.alloc(10)), (err: Error) => {
          assert.ok(err instanceof InvalidRequestError);
          assert.match(err.message, /too far ahead/);
          return true;
        });
        await writer.abort();
      });

      test('a write behind data already sent is refused', async ({ storage }) => {
        const writer = await storage.openWrite('/behind');
        await writer.write(0, Buffer.alloc(1000, 1));
        await assert.rejects(writer.write(500, Buffer.alloc(10, 2)), (err: Error) => {
          assert.ok(err instanceof InvalidRequestError);
          assert.match(err.message, /cannot rewrite data already sent \(offset 500 < 1000\)/);
          return true;
        });
        // The refused write does not poison the upload.
        await writer.write(1000, Buffer.alloc(24, 3));
        await writer.commit();
        assert.equal((await storage.stat('/behind')).size, 1024);
      });

      test('a gap left at commit fails the upload and leaves nothing', async ({ storage }) => {
        const writer = await storage.openWrite('/gap');
        await writer.write(0, Buffer.alloc(100));
        await writer.write(200, Buffer.alloc(100));
        await assert.rejects(writer.commit(), InvalidRequestError);
        await assert.rejects(storage.stat('/gap'), NotFoundError);
      });

      test('abort leaves no object and no partial upload', async (target) => {
        const { storage } = target;
        const writer = await storage.openWrite('/aborted.bin');
        const data = randomBytes(12 * MiB);
        for (let offset = 0; offset < data.length; offset += MiB) {
          await writer.write(offset, data.subarray(offset, offset + MiB));
        }
        await writer.abort();
        await writer.abort();
        await assert.rejects(writer.write(data.length, Buffer.alloc(1)));
        await assert.rejects(writer.commit());
        await assert.rejects(storage.stat('/aborted.bin'), NotFoundError);
        assert.deepEqual(await listAll(storage, '/'), []);
        if (target.leftoverUploads) assert.deepEqual(await target.leftoverUploads(), []);
      });

      test('stat during an upload shows the bytes received', async ({ storage }) => {
        const writer = await storage.openWrite('/growing.bin');
        await writer.write(0, Buffer.alloc(6 * MiB, 7));
        const during = await storage.stat('/growing.bin');
        assert.equal(during.uploading, true);
        assert.equal(during.size, 6 * MiB);
        assert.equal(during.isDirectory, false);
        await writer.write(6 * MiB, Buffer.alloc(1000, 7));
        assert.equal((await storage.stat('/growing.bin')).size, 6 * MiB + 1000);
        await writer.commit();
        const after = await storage.stat('/growing.bin');
        assert.ok(!after.uploading);
        assert.equal(after.size, 6 * MiB + 1000);
      });

      test('exclusive create fails on an existing file', async ({ storage }) => {
        await writeFile(storage, '/exists', Buffer.from('1'));
        await assert.rejects(storage.openWrite('/exists', { exclusive: true }), AlreadyExistsError);
        for (const data of [Buffer.from('2'), randomBytes(11 * MiB)]) {
          const path = `/fresh-${data.length}`;
          await writeFile(storage, path, data, { exclusive: true });
          assert.equal(sha256(await readFile(storage, path)), sha256(data));
          await assert.rejects(writeFile(storage, path, data, { exclusive: true }), AlreadyExistsError);
        }
      });

      test('exclusive create loses to a file created meanwhile', async ({ storage }) => {
        for (const size of [10, 11 * MiB]) {
          const path = `/race-${size}`;
          const exclusive = await storage.openWrite(path, { exclusive: true });
          await exclusive.write(0, Buffer.alloc(size, 1));
          await writeFile(storage, path, Buffer.from('winner'));
          await assert.rejects(exclusive.commit(), AlreadyExistsError);
          assert.deepEqual(await readFile(storage, path), Buffer.from('winner'));
        }
      });
    });

    describe('rename', () => {
      test('a file, with and without overwrite', async ({ storage }) => {
        await writeFile(storage, '/a', Buffer.from('A'));
        await writeFile(storage, '/b', Buffer.from('B'));
        await assert.rejects(storage.rename('/a', '/b'), AlreadyExistsError);
        assert.deepEqual(await readFile(storage, '/b'), Buffer.from('B'));
        await storage.rename('/a', '/b', { overwrite: true });
        assert.deepEqual(await readFile(storage, '/b'), Buffer.from('A'));
        await assert.rejects(storage.stat('/a'), NotFoundError);
        // As rename(2): into a missing directory is refused, and nothing moves.
        await assert.rejects(storage.rename('/b', '/sub/c'), NotFoundError);
        await assert.rejects(storage.stat('/sub'), NotFoundError);
        await storage.mkdir('/sub');
        await storage.rename('/b', '/sub/c');
        assert.deepEqual(await readFile(storage, '/sub/c'), Buffer.from('A'));
        await assert.rejects(storage.rename('/missing', '/x'), NotFoundError);
        await storage.mkdir('/dir');
        await assert.rejects(storage.rename('/sub/c', '/dir'));
        assert.deepEqual(await readFile(storage, '/sub/c'), Buffer.from('A'));
      });

      test('an empty directory', async ({ storage }) => {
        await storage.mkdir('/e');
        await storage.rename('/e', '/e2');
        await assert.rejects(storage.stat('/e'), NotFoundError);
        assert.equal((await storage.stat('/e2')).isDirectory, true);
        assert.deepEqual(await listAll(storage, '/e2'), []);
      });

      test('a non-empty directory when renaming directories is off', async ({ storage }) => {
        await writeFile(storage, '/t/f', Buffer.from('f'));
        await assert.rejects(storage.rename('/t', '/u'), UnsupportedError);
        assert.deepEqual(await readFile(storage, '/t/f'), Buffer.from('f'));
        await assert.rejects(storage.stat('/u'), NotFoundError);
      }, { renamesDirectories: false });

      test('a non-empty directory when renaming directories is on', async ({ storage }) => {
        const files = ['/t/a', '/t/sub/b', '/t/sub/deeper/c d', '/t/ü'];
        for (const path of files) await writeFile(storage, path, Buffer.from(path));
        await storage.mkdir('/t/emptydir');
        await writeFile(storage, '/t2/sibling', Buffer.from('untouched'));
        await assert.rejects(storage.rename('/t', '/t2'), AlreadyExistsError);
        await assert.rejects(storage.rename('/t', '/t/inside'));
        await storage.rename('/t', '/moved');
        await assert.rejects(storage.stat('/t'), NotFoundError);
        for (const path of files) {
          const moved = path.replace('/t/', '/moved/');
          assert.deepEqual(await readFile(storage, moved), Buffer.from(path));
        }
        assert.equal((await storage.stat('/moved/emptydir')).isDirectory, true);
        assert.deepEqual(await readFile(storage, '/t2/sibling'), Buffer.from('untouched'));
      }, { renamesDirectories: true, renameMaxObjects: 100 });

      test('a directory over the object limit is refused untouched', async ({ storage }) => {
        for (const path of ['/big/1', '/big/2', '/big/3']) await writeFile(storage, path, Buffer.from(path));
        await assert.rejects(storage.rename('/big', '/bigger'), (err: Error) => {
          assert.match(err.message, /more than 2/);
          return true;
        });
        await assert.rejects(storage.stat('/bigger'), NotFoundError);
        assert.deepEqual(summary(await listAll(storage, '/big')), ['1', '2', '3']);
      }, { renamesDirectories: true, renameMaxObjects: 2 });
    });

    describe('modification times', () => {
      test('setMtime then stat returns it', async ({ storage }) => {
        const data = Buffer.from('timed');
        await writeFile(storage, '/timed', data);
        const mtime = new Date('2001-02-03T04:05:06.789Z');
        await storage.setMtime('/timed', mtime);
        assert.equal((await storage.stat('/timed')).mtime.getTime(), mtime.getTime());
        assert.deepEqual(await readFile(storage, '/timed'), data, 'content survives');
        await assert.rejects(storage.setMtime('/nope', mtime), NotFoundError);
      });

      test("setMtime hands what it found to the caller's check: a directory or an upload in progress is left alone, a refusal changes nothing", async ({ storage }) => {
        const seen: { isDirectory: boolean; uploading?: boolean }[] = [];
        const leaveAlone = { check: (found: { isDirectory: boolean; uploading?: boolean }) => (seen.push(found), !found.isDirectory && !found.uploading) };
        const mtime = new Date('2002-02-02T02:02:02.000Z');
        await storage.mkdir('/d');
        await storage.setMtime('/d', mtime, leaveAlone);
        await assert.rejects(storage.setMtime('/d', mtime), UnsupportedError, 'without a check, as before');
        const upload = await storage.openWrite('/growing');
        await upload.write(0, Buffer.from('part'));
        await storage.setMtime('/growing', mtime, leaveAlone);
        await upload.abort();
        const data = Buffer.from('kept');
        await writeFile(storage, '/f', data);
        const before = (await storage.stat('/f')).mtime.getTime();
        const refuse = () => {
          throw new PermissionDeniedError('/f: no');
        };
        await assert.rejects(storage.setMtime('/f', mtime, { check: refuse }), PermissionDeniedError);
        assert.equal((await storage.stat('/f')).mtime.getTime(), before, 'refused: unchanged');
        await storage.setMtime('/f', mtime, leaveAlone);
        assert.equal((await storage.stat('/f')).mtime.getTime(), mtime.getTime());
        assert.deepEqual(seen, [{ isDirectory: true }, { isDirectory: false, uploading: true }, { isDirectory: false }]);
        await assert.rejects(storage.setMtime('/missing', mtime, leaveAlone), NotFoundError);
      });

      test('an mtime set on the writer is stored with the object', async ({ storage }) => {
        for (const size of [100, 11 * MiB]) {
          const path = `/with-mtime-${size}`;
          const mtime = new Date(Date.UTC(2010, 0, 1, 0, 0, size % 60));
          const writer = await storage.openWrite(path);
          await writer.write(0, Buffer.alloc(size, 5));
          writer.setMtime(mtime);
          await writer.commit();
          const info = await storage.stat(path);
          assert.equal(info.mtime.getTime(), mtime.getTime(), path);
          assert.equal(info.size, size);
        }
      });

      test('rename keeps the modification time', async ({ storage }) => {
        await writeFile(storage, '/m1', Buffer.from('m'));
        const mtime = new Date('1999-12-31T23:59:59.000Z');
        await storage.setMtime('/m1', mtime);
        await storage.rename('/m1', '/m2');
        assert.equal((await storage.stat('/m2')).mtime.getTime(), mtime.getTime());
      });

      test('a listing reports the same mtime as stat, set or not', async ({ storage }) => {
        await storage.mkdir('/t');
        for (const name of ['plain', 'timed', 'late']) await writeFile(storage, `/t/${name}`, Buffer.from(name));
        await storage.setMtime('/t/timed', new Date('2003-03-03T03:03:03.000Z'));
        const first = await listAll(storage, '/t');
        await storage.setMtime('/t/late', new Date('2004-04-04T04:04:04.000Z'));
        // Listed twice: a second listing must not serve a time from before the change.
        for (const listed of [first, await listAll(storage, '/t')]) {
          for (const info of listed) {
            if (listed === first && info.name === 'late') continue;
            const stat = await storage.stat(`/t/${info.name}`);
            assert.equal(info.mtime.getTime(), stat.mtime.getTime(), info.name);
          }
        }
        const again = await listAll(storage, '/t');
        assert.equal(again.find((i) => i.name === 'late')?.mtime.toISOString(), '2004-04-04T04:04:04.000Z');
      });
    });

    describe('checksums', () => {
      test('md5, sha1 and sha256 of small, empty and multipart files, kept by rename and setMtime', async ({ storage }) => {
        const files = { '/small': randomBytes(1000), '/empty': Buffer.alloc(0), '/big': randomBytes(12 * MiB + 5) };
        for (const [path, data] of Object.entries(files)) await writeFile(storage, path, data);
        await storage.rename('/big', '/big2');
        await storage.setMtime('/small', new Date('2011-01-01T00:00:00Z'));
        const expected = { '/small': files['/small'], '/empty': files['/empty'], '/big2': files['/big'] };
        for (const [path, data] of Object.entries(expected)) {
          for (const algorithm of ['md5', 'sha1', 'sha256'] as const) {
            assert.equal(await storage.checksum(path, algorithm), createHash(algorithm).update(data).digest('hex'), `${algorithm} ${path}`);
          }
        }
        await storage.mkdir('/d');
        await assert.rejects(storage.checksum('/d', 'md5'), WrongTypeError);
        await assert.rejects(storage.checksum('/', 'md5'), WrongTypeError);
        await assert.rejects(storage.checksum('/nope', 'sha1'), NotFoundError);
      });
    });

    describe('resume', () => {
      // Sizes around S3's 5 MiB minimum part: read back and re-sent below it, copied above.
      for (const [label, existingSize] of [
        ['a small file', 300 * KiB],
        ['a file of several parts', 12 * MiB + 77],
      ] as const) {
        test(`continuing ${label} keeps its bytes and appends the new ones`, async ({ storage, leftoverUploads }) => {
          const whole = randomBytes(existingSize + 6 * MiB + 11);
          const existing = whole.subarray(0, existingSize);
          await writeFile(storage, '/r', existing);
          const writer = await storage.openWrite('/r');
          // Resuming is optional: a store without it refuses every resume, which is checked elsewhere.
          if (!writer.continueExisting) return writer.abort();
          await writer.continueExisting(existingSize);
          for (let offset = existingSize; offset < whole.length; offset += MiB) {
            await writer.write(offset, whole.subarray(offset, Math.min(offset + MiB, whole.length)));
          }
          assert.deepEqual(await readFile(storage, '/r'), existing, 'the old file stays whole until commit');
          await writer.commit();
          assert.equal((await storage.stat('/r')).size, whole.length);
          assert.equal(sha256(await readFile(storage, '/r')), sha256(whole));
          for (const algorithm of ['md5', 'sha256'] as const) {
            assert.equal(await storage.checksum('/r', algorithm), createHash(algorithm).update(whole).digest('hex'));
          }
          assert.deepEqual((await leftoverUploads?.()) ?? [], []);
        });
      }

      test('resuming at another offset is refused; an aborted resume leaves the file as it was', async ({ storage, leftoverUploads }) => {
        const existing = randomBytes(7 * MiB);
        await writeFile(storage, '/keep', existing);
        const wrong = await storage.openWrite('/keep');
        if (!wrong.continueExisting) return wrong.abort();
        await assert.rejects(wrong.continueExisting(existing.length - 1), UnsupportedError);
        await wrong.abort();
        const aborted = await storage.openWrite('/keep');
        await aborted.continueExisting!(existing.length);
        await aborted.write(existing.length, randomBytes(MiB));
        await aborted.abort();
        assert.equal(sha256(await readFile(storage, '/keep')), sha256(existing));
        assert.deepEqual((await leftoverUploads?.()) ?? [], []);
      });
    });

    describe('names', () => {
      test('spaces, %, +, #, unicode and more round-trip', async ({ storage }) => {
        const names = [
          'with space',
          '100%',
          '%20literal',
          'a+b',
          '#hash',
          'q?x=1&y',
          'ünïcødé',
          '日本語',
          '😀 emoji',
          'tab\there',
          "quote'\"",
          '~tilde',
          '...',
          '-dash',
          'ctrl\u0001char',
          'plus + and space',
        ];
        await storage.mkdir('/dir with space');
        for (const name of names) await writeFile(storage, `/dir with space/${name}`, Buffer.from(name));
        const listed = await listAll(storage, '/dir with space');
        assert.deepEqual(listed.map((i) => i.name).sort(), [...names].sort());
        for (const name of names) {
          const info = await storage.stat(`/dir with space/${name}`);
          assert.equal(info.name, name);
          assert.deepEqual(await readFile(storage, `/dir with space/${name}`), Buffer.from(name));
        }
      });

      test('2,500 entries list in pages, each name once', async ({ storage, seed }) => {
        const names = Array.from({ length: 2500 }, (_, i) => `entry-${String(i).padStart(4, '0')}`);
        const paths = names.map((name, i) => `/many/${name}${i % 10 === 0 ? '/' : ''}`);
        if (seed) {
          await seed(paths);
        } else {
          await storage.mkdir('/many');
          await inParallel(paths, 32, (path) =>
            path.endsWith('/')
              ? storage.mkdir(path.slice(0, -1))
              : writeFile(storage, path, Buffer.from(path.slice('/many/'.length))),
          );
        }
        let pages = 0;
        const seen = new Set<string>();
        for await (const page of storage.list('/many')) {
          pages++;
          for (const info of page) {
            assert.ok(!seen.has(info.name), `${info.name} listed twice`);
            seen.add(info.name);
            assert.equal(info.isDirectory, names.indexOf(info.name) % 10 === 0, info.name);
          }
        }
        assert.equal(seen.size, names.length);
        assert.ok(pages > 1, 'listed in more than one page');
      });
    });
  });
}

/** Writes a whole file through the interface. */
export async function writeFile(
  storage: Storage,
  path: string,
  data: Buffer,
  options: OpenWriteOptions = {},
): Promise<void> {
  const writer: FileWriter = await storage.openWrite(path, options);
  try {
    for (let offset = 0; offset < data.length; offset += MiB) {
      await writer.write(offset, data.subarray(offset, offset + MiB));
    }
    await writer.commit();
  } catch (err) {
    await writer.abort();
    throw err;
  }
}

/** Reads a whole file through the interface. */
export async function readFile(storage: Storage, path: string): Promise<Buffer> {
  const reader = await storage.openRead(path);
  try {
    const pieces: Buffer[] = [];
    for (let offset = 0; ; ) {
      const piece = await reader.read(offset, 256 * KiB);
      if (piece.length === 0) return Buffer.concat(pieces);
      pieces.push(piece);
      offset += piece.length;
    }
  } finally {
    await reader.close();
  }
}

/** Every entry of a directory. */
export async function listAll(storage: Storage, path: string): Promise<FileInfo[]> {
  const all: FileInfo[] = [];
  for await (const page of storage.list(path)) all.push(...page);
  return all;
}

/** Names sorted, directories marked with a trailing "/". */
export function summary(infos: FileInfo[]): string[] {
  return infos.map((i) => (i.isDirectory ? `${i.name}/` : i.name)).sort();
}

export function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Runs `task` over items with at most `limit` at once. */
export async function inParallel<T>(
  items: T[],
  limit: number,
  task: (item: T, index: number) => Promise<unknown>,
): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const index = next++;
      await task(items[index]!, index);
    }
  };
  await Promise.all(Array.from({ length: limit }, worker));
}
