/** FileInfo → SFTP ATTRS and the `ls -l` style longname of READDIR replies. */
import type { Attributes, FileEntry } from 'ssh2';
import type { FileInfo } from '../storage/storage.ts';

/** S3 keeps no owner: every entry reports uid and gid 0, in ATTRS and in long names alike. */
const OWNER_ID = 0;
const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const DIR_MODE = S_IFDIR | 0o755;
const FILE_MODE = S_IFREG | 0o644;

export function toAttrs(info: FileInfo): Attributes {
  const seconds = Math.floor(info.mtime.getTime() / 1000);
  return {
    mode: info.isDirectory ? DIR_MODE : FILE_MODE,
    uid: OWNER_ID,
    gid: OWNER_ID,
    size: info.isDirectory ? 0 : info.size,
    atime: seconds,
    mtime: seconds,
  };
}

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
/** OpenSSH's ls_file(): half a year of 365 days. */
const SIX_MONTHS_MS = (365 * 24 * 3600 * 1000) / 2;

/**
 * Formats like OpenSSH's sftp-server (ls_file in sftp-common.c) so clients
 * that parse longnames (old WinSCP, lftp) cope and OpenSSH's `ls -l` shows the
 * lines it shows against a disk. The owner is the numeric id, as OpenSSH shows
 * an id without a passwd entry, so `ls -l` and `ls -ln` agree.
 */
export function longname(info: FileInfo, now: Date): string {
  const perms = info.isDirectory ? 'drwxr-xr-x' : '-rw-r--r--';
  const size = String(info.isDirectory ? 0 : info.size).padStart(8);
  const owner = String(OWNER_ID).padEnd(8);
  return `${perms}    1 ${owner} ${owner} ${size} ${lsDate(info.mtime, now)} ${info.name}`;
}

function lsDate(d: Date, now: Date): string {
  const month = MONTHS[d.getUTCMonth()];
  const day = String(d.getUTCDate()).padStart(2);
  // OpenSSH's rule, in whole seconds: times in the future show the year too.
  const t = Math.floor(d.getTime() / 1000);
  const n = Math.floor(now.getTime() / 1000);
  const recent = n - SIX_MONTHS_MS / 1000 < t && t <= n;
  const tail = recent
    ? `${String(d.getUTCHours()).padStart(2, '0')}:${String(d.getUTCMinutes()).padStart(2, '0')}`
    : String(d.getUTCFullYear()).padStart(5);
  return `${month} ${day} ${tail}`;
}

export function toEntry(info: FileInfo, now: Date): FileEntry {
  return { filename: info.name, longname: longname(info, now), attrs: toAttrs(info) as FileEntry['attrs'] };
}
