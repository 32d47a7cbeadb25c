/**
 * SFTP protocol behaviour, fast: the real SshServer and SftpSession over
 * MemoryStorage, driven by ssh2's client in this process
 * (test/support/in-process-server.ts). What a client sees: replies in request
 * order, the status code of every error class, each permission, resume,
 * setstat modes, READDIR paging and what S3 cannot do.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { BackendError } from '../../src/storage/errors.ts';
import { PERMISSIONS, type Permission } from '../../src/users/user.ts';
import { startInProcessServer, type InProcessServer } from '../support/in-process-server.ts';
import { FLAGS, SftpClient, statusOf } from '../support/sftp-client.ts';
import { listAll, readFile, writeFile } from '../support/storage-conformance.ts';

const EOF = 1;
const NO_SUCH_FILE = 2;
const PERMISSION_DENIED = 3;
const FAILURE = 4;
const BAD_MESSAGE = 5;
const OP_UNSUPPORTED = 8;

/** Reads at these offsets are held back, longest for the first, so storage answers arrive in reverse. */
const slowReads = new Map<number, number>();

let srv: InProcessServer;
let alice: SftpClient;

before(async () => {
  srv = await startInProcessServer({
    users: [{ username: 'alice' }],
    setstatMode: 2,
    storage: {
      pageSize: 7,
      writeWindowBytes: 1024 * 1024,
      beforeRead: async (path, offset) => {
        if (path === '/boom-backend') throw new BackendError('storage unavailable, try again later');
        if (path === '/boom-internal') throw new Error('SignatureDoesNotMatch: secret SDK text');
        const delay = slowReads.get(offset);
        if (delay !== undefined) await sleep(delay);
      },
    },
  });
  alice = new SftpClient(await srv.sftp('alice'));
});

after(() => srv.stop());

describe('files', () => {
  test('upload and download round-trip; stat reports size and type', async () => {
    const data = randomBytes(300_000);
    await alice.put('/up.bin', data);
    assert.deepEqual(await alice.get('/up.bin'), data);
    const stats = await alice.stat('/up.bin');
    assert.equal(stats.size, data.length);
    assert.ok(stats.isFile());
    assert.deepEqual(await readFile(srv.storageOf('alice'), '/up.bin'), data, 'stored under the user prefix');
    assert.deepEqual(srv.bucket.keys('alice/'), ['alice/up.bin']);
  });

  test('nothing is visible until CLOSE; stat and fstat show the bytes received meanwhile', async () => {
    const handle = await alice.open('/growing', FLAGS.WRITE | FLAGS.CREAT | FLAGS.TRUNC);
    await alice.write(handle, 0, Buffer.alloc(1000, 1));
    assert.equal((await alice.stat('/growing')).size, 1000);
    assert.equal((await alice.fstat(handle)).size, 1000);
    assert.equal(srv.bucket.get('alice/growing'), undefined);
    await alice.close(handle);
    assert.equal(srv.bucket.get('alice/growing')?.data.length, 1000);
  });

  test('realpath resolves relative paths and ".." inside the chroot', async () => {
    assert.equal(await alice.realpath('.'), '/');
    assert.equal(await alice.realpath('../../etc/./passwd'), '/etc/passwd');
    assert.equal(await alice.realpath('a//b/'), '/a/b');
  });

  test('exclusive create: refused on an existing file, allowed on a new one', async () => {
    await alice.put('/excl', Buffer.from('first'));
    const refused = await statusOf(alice.open('/excl', 'wx'));
    assert.equal(refused.code, FAILURE);
    assert.match(refused.message, /already exists/);
    await alice.put('/excl-new', Buffer.from('new'), FLAGS.WRITE | FLAGS.CREAT | FLAGS.EXCL);
    assert.deepEqual(await alice.get('/excl-new'), Buffer.from('new'));
    assert.deepEqual(await alice.get('/excl'), Buffer.from('first'));
  });

  test('an exclusive upload loses to a file created while it was open', async () => {
    const handle = await alice.open('/race', FLAGS.WRITE | FLAGS.CREAT | FLAGS.EXCL);
    await alice.write(handle, 0, Buffer.from('loser'));
    await writeFile(srv.storageOf('alice'), '/race', Buffer.from('winner'));
    const st = await statusOf(alice.close(handle));
    assert.equal(st.code, FAILURE);
    assert.deepEqual(await alice.get('/race'), Buffer.from('winner'));
  });

  test('out-of-order WRITEs within the window are assembled; beyond it BAD_MESSAGE', async () => {
    const data = randomBytes(200_000);
    const handle = await alice.open('/ooo', 'w');
    const offsets = [];
    for (let offset = 0; offset < data.length; offset += 10_000) offsets.push(offset);
    offsets.reverse();
    await Promise.all(offsets.map((offset) => alice.write(handle, offset, data.subarray(offset, offset + 10_000))));
    await alice.close(handle);
    assert.deepEqual(await alice.get('/ooo'), data);

    const far = await alice.open('/far', 'w');
    const st = await statusOf(alice.write(far, 64 * 1024 * 1024, Buffer.alloc(10)));
    assert.equal(st.code, BAD_MESSAGE);
    assert.match(st.message, /too far ahead/);
    // A refused WRITE must not be followed by a CLOSE that stores a damaged file.
    const closed = await statusOf(alice.close(far));
    assert.equal(closed.code, FAILURE);
    assert.match(closed.message, /discarded/);
    assert.equal((await statusOf(alice.stat('/far'))).code, NO_SUCH_FILE);
  });

  test('ending the connection with an upload open stores nothing and leaves no upload behind', async () => {
    const client = await srv.connect('alice');
    const sftp = new SftpClient(await new Promise((resolve, reject) => client.sftp((err, s) => (err ? reject(err) : resolve(s)))));
    const handle = await sftp.open('/cut', 'w');
    await sftp.write(handle, 0, Buffer.alloc(5000));
    assert.deepEqual(srv.storageOf('alice').leftoverUploads(), ['alice/cut']);
    client.end();
    for (let i = 0; i < 200 && srv.storageOf('alice').leftoverUploads().length > 0; i++) await sleep(10);
    assert.deepEqual(srv.storageOf('alice').leftoverUploads(), []);
    assert.equal((await statusOf(alice.stat('/cut'))).code, NO_SUCH_FILE);
  });
});

describe('ordering', () => {
  test('READs on one handle are answered in request order even when storage answers in reverse', async () => {
    const data = randomBytes(8 * 4096);
    await alice.put('/ordered.bin', data);
    const handle = await alice.open('/ordered.bin', 'r');
    for (let i = 0; i < 8; i++) slowReads.set(i * 4096, (8 - i) * 15);
    try {
      const order: number[] = [];
      const pieces = await Promise.all(
        Array.from({ length: 8 }, (_, i) =>
          alice.read(handle, i * 4096, 4096).then((piece) => {
            order.push(i);
            return piece;
          }),
        ),
      );
      assert.deepEqual(order, [0, 1, 2, 3, 4, 5, 6, 7]);
      assert.deepEqual(Buffer.concat(pieces), data);
    } finally {
      slowReads.clear();
    }
    await alice.close(handle);
  });

  test('a CLOSE sent right after pipelined WRITEs stores all of them', async () => {
    // 16 KiB: ssh2's client splits larger WRITEs and sends the rest only after the first reply.
    const piece = 16 * 1024;
    const data = randomBytes(20 * piece);
    const handle = await alice.open('/pipelined', 'w');
    const replies: string[] = [];
    const writes = Array.from({ length: 20 }, (_, i) =>
      alice.write(handle, i * piece, data.subarray(i * piece, (i + 1) * piece)).then(() => replies.push(`w${i}`)),
    );
    const closed = alice.close(handle).then(() => replies.push('close'));
    await Promise.all([...writes, closed]);
    assert.equal(replies.at(-1), 'close');
    assert.deepEqual(await alice.get('/pipelined'), data);
  });
});

describe('status codes', () => {
  before(async () => {
    await alice.put('/file', Buffer.from('content'));
    await alice.mkdir('/dir');
    await alice.put('/dir/inner', Buffer.from('x'));
    await alice.mkdir('/empty');
  });

  test('missing paths: NO_SUCH_FILE', async () => {
    assert.equal((await statusOf(alice.stat('/missing'))).code, NO_SUCH_FILE);
    assert.equal((await statusOf(alice.open('/missing', 'r'))).code, NO_SUCH_FILE);
    assert.equal((await statusOf(alice.remove('/missing'))).code, NO_SUCH_FILE);
    assert.equal((await statusOf(alice.rmdir('/missing'))).code, NO_SUCH_FILE);
    assert.equal((await statusOf(alice.rename('/missing', '/x'))).code, NO_SUCH_FILE);
    assert.equal((await statusOf(alice.opendir('/missing'))).code, NO_SUCH_FILE);
    assert.equal((await statusOf(alice.open('/missing', FLAGS.WRITE))).code, NO_SUCH_FILE, 'WRITE without CREAT');
  });

  test('files and directories in the wrong place, existing targets, non-empty directories: FAILURE', async () => {
    const cases: [string, () => Promise<unknown>, RegExp][] = [
      ['mkdir over a file', () => alice.mkdir('/file'), /already exists/],
      ['mkdir over a directory', () => alice.mkdir('/dir'), /already exists/],
      ['rmdir of a non-empty directory', () => alice.rmdir('/dir'), /not empty/],
      ['remove of a directory', () => alice.remove('/dir'), /is a directory/],
      ['opendir of a file', () => alice.opendir('/file'), /not a directory/],
      ['open a directory for reading', () => alice.open('/dir', 'r'), /is a directory/],
      ['open a directory for writing', () => alice.open('/dir', 'w'), /is a directory/],
      ['rename onto an existing file (plain RENAME)', () => alice.rename('/file', '/dir/inner'), /already exists/],
    ];
    for (const [what, request, message] of cases) {
      const st = await statusOf(request());
      assert.equal(st.code, FAILURE, what);
      assert.match(st.message, message, what);
    }
  });

  test('rmdir of a file: NO_SUCH_FILE naming the cause, as OpenSSH answers (ENOTDIR)', async () => {
    const st = await statusOf(alice.rmdir('/file'));
    assert.equal(st.code, NO_SUCH_FILE);
    assert.match(st.message, /not a directory/);
  });

  test('the root cannot be removed or renamed: PERMISSION_DENIED', async () => {
    assert.equal((await statusOf(alice.rmdir('/'))).code, PERMISSION_DENIED);
    assert.equal((await statusOf(alice.rename('/', '/elsewhere'))).code, PERMISSION_DENIED);
  });

  test('malformed requests: BAD_MESSAGE', async () => {
    const st = await statusOf(alice.rename('/empty', '/empty/inside'));
    assert.equal(st.code, BAD_MESSAGE);
    assert.match(st.message, /into itself/);
    assert.equal((await statusOf(alice.stat('/nul\0byte'))).code, BAD_MESSAGE);
    assert.equal((await statusOf(alice.open('/file', 0))).code, BAD_MESSAGE, 'neither READ nor WRITE');
  });

  test('an unknown handle: FAILURE "invalid handle"', async () => {
    const st = await statusOf(alice.read(Buffer.from('no-such-handle'), 0, 10));
    assert.equal(st.code, FAILURE);
    assert.match(st.message, /invalid handle/);
    // CLOSE answers BAD_MESSAGE today (InvalidRequestError), READ FAILURE; either way an error naming the handle.
    const close = await statusOf(alice.close(Buffer.from('nope')));
    assert.ok(close.code === FAILURE || close.code === BAD_MESSAGE, String(close.code));
    assert.match(close.message, /invalid handle/);
  });

  test('a storage failure says so; an internal error never shows its text', async () => {
    await alice.put('/boom-backend', Buffer.from('b'));
    await alice.put('/boom-internal', Buffer.from('i'));
    const backend = await alice.open('/boom-backend', 'r');
    const st = await statusOf(alice.read(backend, 0, 10));
    assert.equal(st.code, FAILURE);
    assert.match(st.message, /storage unavailable/);
    const internal = await alice.open('/boom-internal', 'r');
    const hidden = await statusOf(alice.read(internal, 0, 10));
    assert.equal(hidden.code, FAILURE);
    assert.equal(hidden.message, 'Internal server error');
    await alice.close(backend);
    await alice.close(internal);
  });

  test('what S3 cannot do: OP_UNSUPPORTED with a reason', async () => {
    const cases: [string, () => Promise<unknown>, RegExp][] = [
      ['symlink', () => alice.symlink('/file', '/link'), /symbolic links/],
      ['readlink', () => alice.readlink('/file'), /symbolic links/],
      ['read and write at once', () => alice.open('/file', 'r+'), /reading and writing/],
      ['truncate', () => alice.setstat('/file', { size: 1 }), /truncate/],
    ];
    for (const [what, request, message] of cases) {
      const st = await statusOf(request());
      assert.equal(st.code, OP_UNSUPPORTED, what);
      assert.match(st.message, message, what);
    }
    assert.deepEqual(await alice.get('/file'), Buffer.from('content'), 'nothing changed');
  });

  test('extensions the server did not advertise: OP_UNSUPPORTED naming them', async () => {
    // ssh2's client sends only what the server advertised; pretend it did, as other clients just try.
    const sftp = alice.sftp as unknown as { _extensions: Record<string, string> };
    sftp._extensions['hardlink@openssh.com'] = '1';
    sftp._extensions['statvfs@openssh.com'] = '2';
    const hardlink = await statusOf(new Promise<void>((resolve, reject) => alice.sftp.ext_openssh_hardlink('/file', '/hard', (err) => (err ? reject(err) : resolve()))));
    assert.equal(hardlink.code, OP_UNSUPPORTED);
    assert.match(hardlink.message, /"hardlink@openssh.com" is not supported/);
    const statvfs = await statusOf(new Promise<void>((resolve, reject) => alice.sftp.ext_openssh_statvfs('/', (err) => (err ? reject(err) : resolve()))));
    assert.equal(statvfs.code, OP_UNSUPPORTED);
  });

  test('a non-empty directory cannot be renamed with renameMode 0; an empty one can', async () => {
    const st = await statusOf(alice.rename('/dir', '/dir2'));
    assert.equal(st.code, OP_UNSUPPORTED);
    assert.match(st.message, /renameMode/);
    await alice.rename('/empty', '/empty2');
    assert.ok((await alice.stat('/empty2')).isDirectory());
  });
});

describe('permissions', () => {
  /** A user holding every permission but `missing`, with the files the operations need. */
  const without = async (missing: Permission): Promise<SftpClient> => {
    const username = `no-${missing.replace('_', '-')}`;
    srv.addUser({ username, permissions: PERMISSIONS.filter((p) => p !== missing) });
    const storage = srv.storageOf(username);
    await writeFile(storage, '/existing', Buffer.from('existing'));
    await writeFile(storage, '/other', Buffer.from('other'));
    await storage.mkdir('/emptydir');
    return new SftpClient(await srv.sftp(username));
  };

  const denied = async (request: Promise<unknown>, permission: Permission, what: string) => {
    const st = await statusOf(request);
    assert.equal(st.code, PERMISSION_DENIED, what);
    assert.match(st.message, new RegExp(`"${permission}"`), what);
  };

  test('list: OPENDIR refused; STAT still answers', async () => {
    const c = await without('list');
    await denied(c.opendir('/'), 'list', 'opendir');
    assert.equal((await c.stat('/existing')).size, 8);
  });

  test('download: open for reading refused', async () => {
    const c = await without('download');
    await denied(c.open('/existing', 'r'), 'download', 'open r');
    await c.put('/new', Buffer.from('upload still works'));
  });

  test('upload: open for writing refused, new or existing', async () => {
    const c = await without('upload');
    await denied(c.open('/new', 'w'), 'upload', 'new file');
    await denied(c.open('/existing', 'w'), 'upload', 'existing file');
    assert.deepEqual(await c.get('/existing'), Buffer.from('existing'));
  });

  test('overwrite: replacing a file, setting its mtime or posix-renaming onto it refused; new files fine', async () => {
    const c = await without('overwrite');
    await denied(c.open('/existing', 'w'), 'overwrite', 'open w existing');
    await denied(c.setstat('/existing', { mtime: 1_000_000_000, atime: 1_000_000_000 }), 'overwrite', 'setstat mtime');
    await denied(c.posixRename('/other', '/existing'), 'overwrite', 'posix-rename onto a file');
    await c.put('/fresh', Buffer.from('fresh'));
    await c.posixRename('/fresh', '/fresh2');
    assert.deepEqual(await c.get('/existing'), Buffer.from('existing'));
  });

  test('delete: remove and rmdir refused', async () => {
    const c = await without('delete');
    await denied(c.remove('/existing'), 'delete', 'remove');
    await denied(c.rmdir('/emptydir'), 'delete', 'rmdir');
    assert.ok((await c.stat('/existing')).isFile());
  });

  test('rename: rename and posix-rename refused', async () => {
    const c = await without('rename');
    await denied(c.rename('/existing', '/moved'), 'rename', 'rename');
    await denied(c.posixRename('/existing', '/moved'), 'rename', 'posix-rename');
    assert.equal((await statusOf(c.stat('/moved'))).code, NO_SUCH_FILE);
  });

  test('create_dirs: mkdir refused', async () => {
    const c = await without('create_dirs');
    await denied(c.mkdir('/newdir'), 'create_dirs', 'mkdir');
    assert.equal((await statusOf(c.stat('/newdir'))).code, NO_SUCH_FILE);
  });

  test('users are chrooted to their own prefix', async () => {
    srv.addUser({ username: 'bob' });
    const bob = new SftpClient(await srv.sftp('bob'));
    await bob.put('/bobs', Buffer.from('b'));
    assert.equal((await statusOf(bob.stat('/../alice/up.bin'))).code, NO_SUCH_FILE);
    assert.deepEqual((await bob.list('/')).map((e) => e.filename), ['bobs']);
  });
});

describe('resume (an existing file opened for writing without TRUNC)', () => {
  test('a first WRITE at the size of the file continues it (reput, lftp put -c)', async () => {
    await alice.put('/continued', Buffer.from('original'));
    const handle = await alice.open('/continued', FLAGS.WRITE);
    await alice.write(handle, 8, Buffer.from(' and more'));
    await alice.close(handle);
    assert.deepEqual(await alice.get('/continued'), Buffer.from('original and more'));
  });

  test('FSTAT before the first WRITE reports the stored file, as a disk does (psftp reput reads where to continue this way)', async () => {
    await alice.put('/fstat-resume', Buffer.from('original'));
    const handle = await alice.open('/fstat-resume', FLAGS.WRITE);
    assert.equal((await alice.fstat(handle)).size, 8);
    await alice.write(handle, 8, Buffer.from('+'));
    assert.equal((await alice.fstat(handle)).size, 9);
    await alice.close(handle);
    assert.deepEqual(await alice.get('/fstat-resume'), Buffer.from('original+'));
    // Opened with TRUNC, the file is empty from the open on.
    const truncated = await alice.open('/fstat-resume', FLAGS.WRITE | FLAGS.TRUNC);
    assert.equal((await alice.fstat(truncated)).size, 0);
    await alice.close(truncated);
  });

  test('rewriting the start of a file without TRUNC: fewer bytes than it holds is refused at CLOSE and the file kept; as many or more replace it', async () => {
    await alice.put('/no-trunc', Buffer.from('0123456789'));
    const shorter = await alice.open('/no-trunc', FLAGS.WRITE);
    await alice.write(shorter, 0, Buffer.from('abc'));
    const st = await statusOf(alice.close(shorter));
    assert.equal(st.code, OP_UNSUPPORTED);
    assert.match(st.message, /without truncating/);
    assert.deepEqual(await alice.get('/no-trunc'), Buffer.from('0123456789'));
    const whole = await alice.open('/no-trunc', FLAGS.WRITE);
    await alice.write(whole, 0, Buffer.from('abcdefghijkl'));
    await alice.close(whole);
    assert.deepEqual(await alice.get('/no-trunc'), Buffer.from('abcdefghijkl'));
  });

  test('APPEND on an existing file writes at its end, whatever the offsets', async () => {
    await alice.put('/log', Buffer.from('line 1\n'));
    const handle = await alice.open('/log', FLAGS.WRITE | FLAGS.APPEND);
    await alice.write(handle, 0, Buffer.from('line 2\n'));
    await alice.close(handle);
    assert.deepEqual(await alice.get('/log'), Buffer.from('line 1\nline 2\n'));
  });

  test('a first WRITE at another offset is refused as unsupported and the file is left as it was', async () => {
    await alice.put('/resume', Buffer.from('original'));
    const handle = await alice.open('/resume', FLAGS.WRITE);
    const st = await statusOf(alice.write(handle, 3, Buffer.from('more')));
    assert.equal(st.code, OP_UNSUPPORTED);
    assert.match(st.message, /resuming an upload/);
    assert.equal((await statusOf(alice.close(handle))).code, FAILURE);
    assert.deepEqual(await alice.get('/resume'), Buffer.from('original'));
  });

  test('opened and closed without writing: the file is unchanged (POSIX)', async () => {
    await alice.put('/untouched', Buffer.from('keep me'));
    await alice.close(await alice.open('/untouched', FLAGS.WRITE));
    assert.deepEqual(await alice.get('/untouched'), Buffer.from('keep me'));
  });
});

describe('setstat modes', () => {
  const when = new Date('2001-02-03T04:05:06Z');
  const seconds = when.getTime() / 1000;

  const serverWithMode = async (mode: 0 | 1 | 2) => {
    const server = await startInProcessServer({ users: [{ username: 'u' }], setstatMode: mode });
    const client = new SftpClient(await server.sftp('u'));
    await client.put('/f', Buffer.from('data'));
    return { server, client, stored: () => server.bucket.get('u/f')! };
  };

  test('mode 0 refuses mode and owner changes, and a request mixing them with times whole, with OP_UNSUPPORTED', async () => {
    const { server, client, stored } = await serverWithMode(0);
    try {
      for (const attrs of [{ mode: 0o600 }, { uid: 1000, gid: 1000 }, { mode: 0o600, atime: seconds, mtime: seconds }]) {
        const st = await statusOf(client.setstat('/f', attrs));
        assert.equal(st.code, OP_UNSUPPORTED, JSON.stringify(attrs));
        assert.match(st.message, /setstatMode 0/);
      }
      assert.equal(stored().mtime, undefined, 'the mixed request changed nothing');
      // A time alone is something S3 can keep: stored, as in the default mode.
      await client.setstat('/f', { atime: seconds, mtime: seconds });
      assert.equal((await client.stat('/f')).mtime, seconds);
      const handle = await client.open('/f', 'r');
      assert.equal((await statusOf(client.fsetstat(handle, { mode: 0o600 }))).code, OP_UNSUPPORTED);
      await client.close(handle);
      // Setting the size it already has is not a change.
      await client.setstat('/f', { size: 4 });
    } finally {
      await server.stop();
    }
  });

  test('mode 1 accepts and ignores every change but a truncate', async () => {
    const { server, client, stored } = await serverWithMode(1);
    try {
      await client.setstat('/f', { mode: 0o600 });
      await client.setstat('/f', { atime: seconds, mtime: seconds });
      assert.equal(stored().mtime, undefined);
      assert.notEqual((await client.stat('/f')).mtime, seconds);
      await client.put('/g', Buffer.from('g'), FLAGS.WRITE | FLAGS.CREAT | FLAGS.TRUNC);
      assert.equal((await statusOf(client.setstat('/f', { size: 0 }))).code, OP_UNSUPPORTED);
    } finally {
      await server.stop();
    }
  });

  test('mode 2 keeps modification times: SETSTAT, FSETSTAT on an upload and OPEN attributes', async () => {
    const { server, client, stored } = await serverWithMode(2);
    try {
      await client.setstat('/f', { mode: 0o600, atime: seconds, mtime: seconds });
      assert.equal(stored().mtime?.getTime(), when.getTime());
      assert.equal((await client.stat('/f')).mtime, seconds);

      const handle = await client.open('/g', 'w');
      await client.write(handle, 0, Buffer.from('g'));
      await client.fsetstat(handle, { atime: seconds + 1, mtime: seconds + 1 });
      await client.close(handle);
      assert.equal((await client.stat('/g')).mtime, seconds + 1);

      await client.close(await client.open('/h', 'w', { mtime: seconds + 2, atime: seconds + 2 }));
      assert.equal((await client.stat('/h')).mtime, seconds + 2);

      const dir = await statusOf(client.setstat('/', { size: 1 }));
      assert.equal(dir.code, OP_UNSUPPORTED);
    } finally {
      await server.stop();
    }
  });
});

describe('directories', () => {
  /** Every READDIR reply's size and name until EOF. */
  const readdirAll = async (c: SftpClient, path: string) => {
    const handle = await c.opendir(path);
    const sizes: number[] = [];
    const entries = [];
    for (let i = 0; i < 100; i++) {
      let batch;
      try {
        batch = await c.readdir(handle);
      } catch (err) {
        assert.equal((err as { code: number }).code, EOF);
        break;
      }
      sizes.push(batch.length);
      entries.push(...batch);
    }
    await c.close(handle);
    return { sizes, entries };
  };

  test('READDIR pages: at most 100 names per reply, every name once, then EOF', async () => {
    const server = await startInProcessServer({ users: [{ username: 'lister' }] });
    after(() => server.stop());
    const storage = server.storageOf('lister');
    const names = Array.from({ length: 250 }, (_, i) => `n-${String(i).padStart(3, '0')}`);
    for (const [i, name] of names.entries()) {
      if (i % 10 === 0) await storage.mkdir(`/${name}`);
      else await writeFile(storage, `/${name}`, Buffer.from(name));
    }
    const { sizes, entries } = await readdirAll(new SftpClient(await server.sftp('lister')), '/');
    assert.deepEqual(sizes, [100, 100, 50]);
    assert.deepEqual(entries.map((e) => e.filename), names);
    for (const entry of entries) {
      assert.equal(entry.attrs.isDirectory(), names.indexOf(entry.filename) % 10 === 0, entry.filename);
      assert.match(entry.longname, new RegExp(`${entry.filename}$`));
    }
    assert.equal((await listAll(storage, '/')).length, 250);
  });

  test('READDIR across small storage pages: each name once, in order', async () => {
    srv.addUser({ username: 'pager' });
    const storage = srv.storageOf('pager');
    const names = Array.from({ length: 40 }, (_, i) => `p-${String(i).padStart(2, '0')}`);
    for (const name of names) await writeFile(storage, `/${name}`, Buffer.from(name));
    const { sizes, entries } = await readdirAll(new SftpClient(await srv.sftp('pager')), '/');
    assert.ok(sizes.length > 1 && sizes.every((n) => n > 0 && n <= 100), String(sizes));
    assert.deepEqual(entries.map((e) => e.filename), names);
  });

  test('mkdir, rmdir and a removed last file keeping its directory', async () => {
    await alice.mkdir('/d');
    await alice.put('/d/f', Buffer.from('f'));
    await alice.remove('/d/f');
    assert.ok((await alice.stat('/d')).isDirectory());
    await alice.rmdir('/d');
    assert.equal((await statusOf(alice.stat('/d'))).code, NO_SUCH_FILE);
  });

  test('a name that is both a file and a directory in the store is shown once, as the file', async () => {
    srv.bucket.put('alice/both', Buffer.from('file'));
    srv.bucket.put('alice/both/child', Buffer.from('child'));
    const names = (await alice.list('/')).map((e) => e.filename).filter((n) => n === 'both');
    assert.deepEqual(names, ['both']);
    assert.ok((await alice.stat('/both')).isFile());
  });
});
