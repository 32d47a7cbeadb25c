/**
 * The sink side of SCP (`scp -t TARGET`): the client sends files and we store
 * them.
 *
 * Records: "C<mode> <size> <name>" then <size> bytes and the client's status
 * byte; "D<mode> 0 <name>" opens a directory (with -r) and "E" closes it;
 * "T<mtime> <usec> <atime> <usec>" (with -p) carries the times of the next
 * entry. We answer every record with "\0", or "\1msg\n" to refuse that one
 * entry (the client then skips its data or contents), or "\2msg\n" when the
 * session cannot go on.
 *
 * A file streams into storage.openWrite() in order, one write at a time (no
 * more channel data is read while a write is pending), and is committed only
 * after all its bytes and the client's "\0" have arrived. Anything else —
 * a failed write, a client error, a disconnect — aborts the writer, so
 * nothing partial is ever stored. Modes in C/D records are ignored: S3
 * objects have none.
 */
import { AlreadyExistsError, InvalidRequestError, WrongTypeError, NotFoundError } from '../storage/errors.ts';
import type { FileWriter } from '../storage/storage.ts';
import { join } from '../storage/paths.ts';
import { reportTransfer } from '../session/core.ts';
import type { ScpContext } from './context.ts';
import { ClientAbortedError, ScpProtocolError } from './errors.ts';

/** Largest piece handed to one writer.write(). */
const MAX_WRITE_BYTES = 1024 * 1024;
/** Directory nesting accepted from a client; S3's 1 KiB keys end real trees well before. */
const MAX_DEPTH = 256;

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Receives what the client sends into the command's target path. */
export async function runSink(ctx: ScpContext): Promise<void> {
  const target = ctx.path(ctx.command.paths[0] as string);
  const info = await ctx.statOrUndefined(target);
  if (ctx.command.targetIsDirectory && !info?.isDirectory) {
    throw info ? new WrongTypeError(`${target}: not a directory`) : new NotFoundError(`${target}: no such directory`);
  }
  await ctx.io.ok();
  await receive(ctx, target, info?.isDirectory === true, 0);
}

interface EntryRecord {
  kind: 'C' | 'D';
  size: number;
  /** The name's raw bytes: checked here, decoded by the caller. */
  name: Buffer;
}

/**
 * Reads records until the end of input (top level) or an "E" (inside a
 * directory). Entries land in `target` itself when it is not a directory
 * (`scp file host:newname`), else in `target/<name>`.
 */
async function receive(ctx: ScpContext, target: string, targetIsDirectory: boolean, depth: number): Promise<void> {
  let mtime: Date | undefined;
  for (;;) {
    const record = await ctx.io.readRecord();
    if (record === undefined) {
      if (depth > 0) throw new ScpProtocolError('input ended inside a directory');
      return;
    }
    const type = String.fromCharCode(record[0] as number);
    if (type === '\x01' || type === '\x02') {
      // The client could not read one of its own files; a "\2" means it gave up.
      const message = record.subarray(1).toString('utf8');
      ctx.log.info({ message, fatal: type === '\x02' }, 'scp client reported an error');
      if (type === '\x02') throw new ClientAbortedError(message);
      ctx.countError();
      continue;
    }
    if (type === 'E') {
      if (record.length !== 1) throw new ScpProtocolError('malformed E record');
      if (depth === 0) throw new ScpProtocolError('E record outside a directory');
      await ctx.io.ok();
      return;
    }
    if (type === 'T') {
      mtime = parseTimes(record);
      await ctx.io.ok();
      continue;
    }
    if (type !== 'C' && type !== 'D') throw new ScpProtocolError('expected a control record (C, D, E or T)');
    const entry = parseEntry(record);
    let name: string;
    try {
      name = utf8.decode(entry.name);
    } catch {
      await ctx.warn(new InvalidRequestError('file name is not valid UTF-8; S3 keys must be'), target);
      mtime = undefined;
      continue;
    }
    const path = targetIsDirectory ? join(target, name) : target;
    if (entry.kind === 'D') {
      if (!ctx.command.recursive) throw new ScpProtocolError('received a directory without -r');
      if (depth + 1 > MAX_DEPTH) throw new ScpProtocolError('directories nested too deeply');
      if (await enterDirectory(ctx, path)) await receive(ctx, path, true, depth + 1);
    } else {
      await receiveFile(ctx, path, entry.size, mtime);
    }
    mtime = undefined;
  }
}

/** Makes sure `path` is a directory (creating it if needed) and acknowledges the D record; false when refused. */
async function enterDirectory(ctx: ScpContext, path: string): Promise<boolean> {
  try {
    const existing = await ctx.statOrUndefined(path);
    if (existing && !existing.isDirectory) throw new WrongTypeError(`${path}: not a directory`);
    if (!existing) {
      ctx.require('create_dirs', path);
      try {
        await ctx.storage.mkdir(path);
        ctx.events.operation?.({ user: ctx.user.username, op: 'mkdir', path, ok: true });
      } catch (err) {
        // Created meanwhile (another session, or an implicit S3 prefix): what we wanted.
        if (!(err instanceof AlreadyExistsError)) {
          ctx.events.operation?.({ user: ctx.user.username, op: 'mkdir', path, ok: false });
          throw err;
        }
      }
    }
  } catch (err) {
    await ctx.warn(err, path);
    return false;
  }
  await ctx.io.ok();
  return true;
}

/** Opens the upload the way SFTP's OPEN for writing does: same permission checks. */
async function openUpload(ctx: ScpContext, path: string): Promise<FileWriter> {
  ctx.require('upload', path);
  if (path === '/') throw new WrongTypeError('/: is a directory');
  const existing = await ctx.statOrUndefined(path);
  if (existing?.isDirectory) throw new WrongTypeError(`${path}: is a directory`);
  if (existing) ctx.require('overwrite', path);
  return ctx.storage.openWrite(path);
}

async function receiveFile(ctx: ScpContext, path: string, size: number, mtime: Date | undefined): Promise<void> {
  let writer: FileWriter;
  try {
    writer = await openUpload(ctx, path);
  } catch (err) {
    // Refused before the data: the client does not send it and goes on with the next file.
    await ctx.warn(err, path);
    return;
  }
  ctx.setOpenWriter(writer);
  const started = ctx.clock();
  let reported = false;
  const report = (ok: boolean) => {
    if (reported) return;
    reported = true;
    reportTransfer(ctx.events, ctx.user, ctx.clock, { direction: 'upload', path, bytes: writer.bytesReceived, started, ok });
  };
  // Times are kept unless setstatMode 1 ignores every attribute; a T record carries no permissions.
  if (mtime && ctx.setstatMode !== 1) writer.setMtime(mtime);
  let failure: unknown;
  try {
    await ctx.io.ok();
    let offset = 0;
    while (offset < size) {
      const data = await ctx.io.readData(Math.min(size - offset, MAX_WRITE_BYTES));
      if (failure === undefined) {
        try {
          await writer.write(offset, data);
        } catch (err) {
          // Keep reading (and dropping) the rest of the file so the protocol stays in step.
          failure = err;
          void writer.abort().catch(() => undefined);
        }
      }
      offset += data.length;
    }
    const status = await ctx.io.readResponse();
    if (!status.ok) {
      await writer.abort();
      report(false);
      ctx.log.info({ path, message: status.message, fatal: status.fatal }, 'scp client reported an error after sending a file');
      if (status.fatal) throw new ClientAbortedError(status.message);
      ctx.countError();
      await ctx.io.warning(`scp: ${path}: the client reported an error while sending; nothing was stored`);
      return;
    }
    if (failure !== undefined) {
      await writer.abort();
      report(false);
      await ctx.warn(failure, path);
      return;
    }
    try {
      await writer.commit();
    } catch (err) {
      await writer.abort().catch(() => undefined);
      report(false);
      await ctx.warn(err, path);
      return;
    }
    report(true);
    await ctx.io.ok();
  } catch (err) {
    // The channel closed, the client gave up or broke the protocol: nothing is stored.
    await writer.abort().catch(() => undefined);
    report(false);
    throw err;
  } finally {
    ctx.setOpenWriter(undefined);
  }
}

/** "T<mtime> <usec> <atime> <usec>"; undefined (times ignored) when out of range, as OpenSSH does. */
function parseTimes(record: Buffer): Date | undefined {
  const m = /^T(\d{1,20}) (\d{1,6}) (\d{1,20}) (\d{1,6})$/.exec(record.toString('latin1'));
  if (!m) throw new ScpProtocolError('malformed T record');
  const seconds = Number(m[1]);
  const micros = Number(m[2]);
  const when = new Date(seconds * 1000 + Math.floor(micros / 1000));
  return Number.isNaN(when.getTime()) ? undefined : when;
}

/** "C0644 1234 name" / "D0755 0 name", checked as strictly as OpenSSH's sink does. */
function parseEntry(record: Buffer): EntryRecord {
  const kind = record[0] === 0x43 ? 'C' : 'D';
  for (let i = 1; i <= 4; i++) {
    const c = record[i];
    if (c === undefined || c < 0x30 || c > 0x37) throw new ScpProtocolError('bad mode');
  }
  if (record[5] !== 0x20) throw new ScpProtocolError('mode not delimited');
  let p = 6;
  while (p < record.length && (record[p] as number) >= 0x30 && (record[p] as number) <= 0x39) p++;
  if (p === 6) throw new ScpProtocolError('size not present');
  if (record[p] !== 0x20) throw new ScpProtocolError('size not delimited');
  const size = Number(record.toString('latin1', 6, p));
  if (!Number.isSafeInteger(size)) throw new ScpProtocolError('size out of range');
  const name = record.subarray(p + 1);
  checkName(name);
  return { kind, size, name };
}

/**
 * A record names one entry of the target directory: a "/" or a "." / ".."
 * name would reach elsewhere (CVE-2019-6111 is the client-side twin), so the
 * session ends instead.
 */
function checkName(name: Buffer): void {
  const text = name.toString('utf8');
  const shown = JSON.stringify(text.length > 100 ? `${text.slice(0, 100)}...` : text);
  if (name.length === 0) throw new ScpProtocolError('empty file name');
  if (name.includes(0x2f) || name.includes(0)) throw new ScpProtocolError(`refused file name ${shown}: a name must not contain "/"`);
  if (text === '.' || text === '..') throw new ScpProtocolError(`refused file name ${shown}`);
}
