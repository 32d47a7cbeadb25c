/**
 * The source side of SCP (`scp -f PATH...`): we send files and the client
 * stores them.
 *
 * For each file: with -p a "T<mtime> 0 <atime> 0" record, then
 * "C0644 <size> <name>", the bytes and "\0"; the client answers each step with
 * "\0" or an error line. With -r a directory becomes "D0755 0 <name>", its
 * entries (listed page by page) and "E". Data is read from storage in chunks
 * and written only as fast as the channel drains.
 *
 * Paths are taken literally: there is no shell here, so wildcards are not
 * expanded (a missing "*.txt" says so).
 */
import { WrongTypeError } from '../storage/errors.ts';
import type { FileInfo, FileReader } from '../storage/storage.ts';
import { basename, join } from '../storage/paths.ts';
import { reportTransfer } from '../session/core.ts';
import type { ScpContext } from './context.ts';
import { ChannelClosedError, ClientAbortedError, ScpProtocolError } from './errors.ts';
import type { Response } from './channel-io.ts';

/** Bytes read from storage and written to the channel at a time. */
const CHUNK_BYTES = 256 * 1024;
/** S3 objects have no modes; these are what SFTP shows too. */
const FILE_MODE = '0644';
const DIR_MODE = '0755';

/** Sends every path of the command, after the client's initial "\0". */
export async function runSource(ctx: ScpContext): Promise<void> {
  const ready = await ctx.io.readResponse();
  if (!ready.ok) return clientRefused(ctx, ready);
  for (const raw of ctx.command.paths) {
    let path: string;
    try {
      path = ctx.path(raw);
    } catch (err) {
      await ctx.warn(err, raw);
      continue;
    }
    let info: FileInfo;
    try {
      info = await ctx.storage.stat(path);
    } catch (err) {
      await ctx.warn(err, path);
      continue;
    }
    await sendEntry(ctx, path, info, false);
  }
}

/** `listed`: `info` comes from a directory listing, whose times are S3's, not a stored mtime. */
async function sendEntry(ctx: ScpContext, path: string, info: FileInfo, listed: boolean): Promise<void> {
  if (info.isDirectory) {
    if (!ctx.command.recursive) return ctx.warn(new WrongTypeError(`${path}: not a regular file (use -r to copy a directory)`), path);
    return sendDirectory(ctx, path, info);
  }
  return sendFile(ctx, path, info, listed);
}

/** A client "\1" counts as an error; a "\2" ends the session. */
function clientRefused(ctx: ScpContext, response: Response & { ok: false }): void {
  ctx.log.info({ message: response.message, fatal: response.fatal }, 'scp client reported an error');
  if (response.fatal) throw new ClientAbortedError(response.message);
  ctx.countError();
}

/** Sends one record and reads the answer; false (already counted) when the client refused it. */
async function exchange(ctx: ScpContext, record: string): Promise<boolean> {
  await ctx.io.write(Buffer.from(record));
  const response = await ctx.io.readResponse();
  if (response.ok) return true;
  clientRefused(ctx, response);
  return false;
}

/** Refuses names the record format cannot carry; S3 keys may contain line breaks, records may not. */
function sendableName(path: string): string {
  const name = basename(path);
  if (path === '/') throw new WrongTypeError('/: the root directory cannot be sent as a whole; copy the entries in it');
  if (name.includes('\n') || name.includes('\r')) throw new WrongTypeError(`${JSON.stringify(path)}: the name contains a line break, which SCP cannot send`);
  return name;
}

function timesRecord(info: FileInfo): string {
  const seconds = Math.max(0, Math.floor(info.mtime.getTime() / 1000));
  return `T${seconds} 0 ${seconds} 0\n`;
}

async function sendFile(ctx: ScpContext, path: string, listedInfo: FileInfo, listed: boolean): Promise<void> {
  let reader: FileReader;
  let name: string;
  let info = listedInfo;
  try {
    ctx.require('download', path);
    name = sendableName(path);
    // Listings carry S3's LastModified; a stored mtime (setstatMode 2) needs the object's own metadata.
    if (listed && ctx.command.preserveTimes) info = await ctx.storage.stat(path);
    reader = await ctx.storage.openRead(path);
  } catch (err) {
    return ctx.warn(err, path);
  }
  const started = ctx.clock();
  let sent = 0;
  let ok = false;
  try {
    if (ctx.command.preserveTimes && !(await exchange(ctx, timesRecord(info)))) return;
    const size = reader.size;
    if (!(await exchange(ctx, `C${FILE_MODE} ${size} ${name}\n`))) return;
    let failure: unknown;
    while (sent < size) {
      const want = Math.min(CHUNK_BYTES, size - sent);
      let data: Buffer;
      if (failure === undefined) {
        try {
          data = await reader.read(sent, want);
          if (data.length === 0) throw new WrongTypeError(`${path}: the file became shorter while it was being sent`);
        } catch (err) {
          failure = err;
          data = Buffer.alloc(want);
        }
      } else {
        // The size is promised in the C record: after a read failure, zeros keep the protocol in step
        // and the "\1" line below tells the client the copy is bad (as OpenSSH does).
        data = Buffer.alloc(want);
      }
      await ctx.io.write(data);
      sent += data.length;
    }
    if (failure !== undefined) {
      await ctx.warn(failure, path);
      const response = await ctx.io.readResponse();
      if (!response.ok) clientRefused(ctx, response);
      return;
    }
    ok = await exchange(ctx, '\0');
  } finally {
    reportTransfer(ctx.events, ctx.user, ctx.clock, { direction: 'download', path, bytes: sent, started, ok });
    await reader.close().catch(() => undefined);
  }
}

async function sendDirectory(ctx: ScpContext, path: string, info: FileInfo): Promise<void> {
  let name: string;
  try {
    ctx.require('list', path);
    name = sendableName(path);
  } catch (err) {
    return ctx.warn(err, path);
  }
  if (ctx.command.preserveTimes && !(await exchange(ctx, timesRecord(info)))) return;
  if (!(await exchange(ctx, `D${DIR_MODE} 0 ${name}\n`))) return;
  try {
    for await (const page of ctx.storage.list(path)) {
      for (const entry of page) {
        if (entry.uploading || entry.name === '.' || entry.name === '..' || entry.name.includes('/')) continue;
        await sendEntry(ctx, join(path, entry.name), entry, true);
      }
    }
  } catch (err) {
    // A listing that fails part-way: the client is told, and the directory is closed all the same.
    if (isSessionEnding(err)) throw err;
    await ctx.warn(err, path);
  }
  await exchange(ctx, 'E\n');
}

/** Errors after which nothing more can be sent. */
function isSessionEnding(err: unknown): boolean {
  return err instanceof ClientAbortedError || err instanceof ChannelClosedError || err instanceof ScpProtocolError;
}
