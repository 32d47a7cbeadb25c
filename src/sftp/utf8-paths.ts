/**
 * Refuses SFTP requests whose file names are not valid UTF-8.
 *
 * ssh2 decodes every path as UTF-8 with replacement, so `caf\xe9.txt` and
 * `caf\xeb.txt` both arrive as `caf\uFFFD.txt` and would name the same S3
 * key: the second upload would silently replace the first. S3 keys are UTF-8,
 * so such a name cannot be stored as sent; the request is answered with
 * SSH_FX_FAILURE and a message saying why, as SCP already does. Names are
 * otherwise kept exactly as sent (no Unicode normalisation).
 *
 * This sits in front of ssh2's SFTP parser (`push`, private API, ssh2
 * 1.17.0): it frames the incoming stream into packets, checks the strings of
 * the requests that carry names, and forwards everything else untouched.
 * Requests without names (READ, WRITE, ...) are forwarded as they stream in,
 * never buffered; a request with names is held until complete (at most
 * ssh2's 256 KiB packet limit), then forwarded or refused.
 */
import { isUtf8 } from 'node:buffer';
import type { SFTPWrapper } from 'ssh2';

const STATUS_FAILURE = 4;
/** ssh2's (and OpenSSH's) largest SFTP packet; a longer one is left for ssh2 to refuse. */
const MAX_PACKET = 256 * 1024;

/** Request types and how many name strings follow the request id. */
const NAMES_AFTER_ID: Record<number, number> = {
  3: 1, // OPEN
  7: 1, // LSTAT
  9: 1, // SETSTAT
  11: 1, // OPENDIR
  13: 1, // REMOVE
  14: 1, // MKDIR
  15: 1, // RMDIR
  16: 1, // REALPATH
  17: 1, // STAT
  18: 2, // RENAME
  19: 1, // READLINK
  20: 2, // SYMLINK
};
const EXTENDED = 200;
/** Extended requests whose data is names, and how many. */
const EXTENSION_NAMES: Record<string, number> = {
  'posix-rename@openssh.com': 2,
  'hardlink@openssh.com': 2,
  'statvfs@openssh.com': 1,
};

/** The message a client sees. */
export const NON_UTF8_MESSAGE = 'file name is not valid UTF-8; names are stored as UTF-8 S3 keys, rename the file to UTF-8 first';

/** Installs the check on one SFTP channel. `onRefused` is told of each refusal (for the log). */
export function refuseNonUtf8Paths(sftp: SFTPWrapper, onRefused?: (requestId: number) => void): void {
  const target = sftp as unknown as { push(data: Buffer | null): void };
  if (typeof target.push !== 'function') return;
  const forward = target.push.bind(sftp);
  let header = Buffer.alloc(0); // the current packet's first 5 bytes while incomplete
  let remaining = 0; // bytes of the current packet still to come after the header
  let held: Buffer[] | undefined; // a packet with names, being collected
  let passThrough = false; // ssh2 will refuse this stream anyway: stop looking

  const finishHeld = () => {
    const packet = Buffer.concat(held ?? []);
    held = undefined;
    const id = nonUtf8Request(packet);
    if (id === undefined) return forward(packet);
    onRefused?.(id);
    sftp.status(id, STATUS_FAILURE, NON_UTF8_MESSAGE);
  };

  target.push = (data: Buffer | null) => {
    if (data === null || passThrough) return forward(data);
    let p = 0;
    while (p < data.length) {
      if (remaining === 0) {
        const need = 5 - header.length;
        header = Buffer.concat([header, data.subarray(p, p + need)]);
        p += Math.min(need, data.length - p);
        if (header.length < 5) return;
        const length = header.readUInt32BE(0);
        const type = header[4] ?? 0;
        if (length < 1 || length > MAX_PACKET) {
          passThrough = true;
          return forward(Buffer.concat([header, data.subarray(p)]));
        }
        remaining = length - 1;
        const hasNames = type === EXTENDED || NAMES_AFTER_ID[type] !== undefined;
        if (hasNames) held = [header];
        else forward(header);
        header = Buffer.alloc(0);
        if (remaining === 0) {
          if (held) finishHeld();
          continue;
        }
      }
      const chunk = data.subarray(p, p + remaining);
      p += chunk.length;
      remaining -= chunk.length;
      if (held) {
        held.push(Buffer.from(chunk)); // a copy: ssh2 may reuse the incoming buffer
        if (remaining === 0) finishHeld();
      } else forward(chunk);
    }
  };
}

/** The request id when one of the packet's names is not valid UTF-8; undefined to let it through. */
export function nonUtf8Request(packet: Buffer): number | undefined {
  if (packet.length < 9) return undefined;
  const type = packet[4] ?? 0;
  const id = packet.readUInt32BE(5);
  let at = 9;
  const next = (): Buffer | undefined => {
    if (at + 4 > packet.length) return undefined;
    const n = packet.readUInt32BE(at);
    if (at + 4 + n > packet.length) return undefined;
    const s = packet.subarray(at + 4, at + 4 + n);
    at += 4 + n;
    return s;
  };
  let count = NAMES_AFTER_ID[type];
  if (type === EXTENDED) {
    const name = next();
    if (!name) return undefined;
    count = EXTENSION_NAMES[name.toString('latin1')];
  }
  for (let i = 0; i < (count ?? 0); i++) {
    const s = next();
    // A malformed packet is ssh2's to refuse.
    if (!s) return undefined;
    if (!isUtf8(s)) return id;
  }
  return undefined;
}
