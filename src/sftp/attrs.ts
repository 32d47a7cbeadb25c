/** FileInfo → SFTP ATTRS and the `ls -l` style longname of READDIR replies. */
import type { Attributes, FileEntry } from 'ssh2';
import type { FileInfo } from '../storage/storage.ts';

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const DIR_MODE = S_IFDIR | 0o755;
const FILE_MODE = S_IFREG | 0o644;

export function toAttrs(info: FileInfo): Attributes {
  const seconds = Math.floor(info.mtime.getTime() / 1000);
  return {
    mode: info.isDirectory ? DIR_MODE : FILE_MODE,
    uid: 0,
    gid: 0,
    size: info.isDirectory ? 0 : info.size,
    atime: seconds,
    mtime: seconds,
  };
}

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
const SIX_MONTHS_MS = 182 * 24 * 3600 * 1000;

/** Formats like OpenSSH's sftp-server so clients that parse longnames (old WinSCP, lftp) cope. */
export function longname(info: FileInfo, owner: string, now: Date): string {
  const perms = info.isDirectory ? 'drwxr-xr-x' : '-rw-r--r--';
  const size = String(info.isDirectory ? 0 : info.size).padStart(8);
  const user = owner.padEnd(8);
  return `${perms}    1 ${user} ${user} ${size} ${lsDate(info.mtime, now)} ${info.name}`;
}

function lsDate(d: Date, now: Date): string {
  const month = MONTHS[d.getUTCMonth()];
  const day = String(d.getUTCDate()).padStart(2);
  const recent = Math.abs(now.getTime() - d.getTime()) < SIX_MONTHS_MS;
  const tail = recent
    ? `${String(d.getUTCHours()).padStart(2, '0')}:${String(d.getUTCMinutes()).padStart(2, '0')}`
    : String(d.getUTCFullYear()).padStart(5);
  return `${month} ${day} ${tail}`;
}

export function toEntry(info: FileInfo, owner: string, now: Date): FileEntry {
  return { filename: info.name, longname: longname(info, owner, now), attrs: toAttrs(info) as FileEntry['attrs'] };
}
