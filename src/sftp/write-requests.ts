/**
 * Hands SFTP WRITE requests to the session without reassembling them.
 *
 * ssh2's SFTP parser (`push`, private API, ssh2 1.17.0) copies every request that arrives in more
 * than one piece into a new buffer of its own. OpenSSH's sftp writes 32 KiB at a time and its
 * channel packets are 32 KiB too, so every WRITE straddles two CHANNEL_DATA messages and every
 * uploaded byte was copied (and a 32 KiB buffer allocated) before the upload copied it once more
 * into its part. This sits in front of that parser: it frames the incoming stream into packets,
 * parses WRITE requests itself (as ssh2 does: request id, handle of at most 256 bytes, uint64
 * offset, data) and emits `WRITE` with the data as views of the incoming chunks: one Buffer when
 * it arrived in one piece, else an array of them, in order. Every other packet, and a WRITE that
 * is not exactly what ssh2 would accept, is forwarded to ssh2 byte for byte.
 *
 * The views stay valid: ssh2 decrypts each SSH packet into memory of its own and never reuses it,
 * and it already hands out views of that memory for requests that arrive whole.
 */
import type { SFTPWrapper } from 'ssh2';

const WRITE = 6;
const STATUS_OP_UNSUPPORTED = 8;
/** ssh2's limit on a WRITE's handle. */
const MAX_HANDLE = 256;
/** length, type, id, handle length, handle, offset, data length. */
const MAX_HEAD = 4 + 1 + 4 + 4 + MAX_HANDLE + 8 + 4;

/** WRITE data as the session receives it: whole, or in the pieces it arrived in. */
export type WriteData = Buffer | Buffer[];

interface Internals {
  push?(data: Buffer | null): unknown;
  /** -1 until INIT; ssh2 refuses anything else first. */
  _version?: number;
  _maxInPktLen?: number;
}

/** Installs the WRITE framing on one SFTP channel (before any data arrives). */
export function frameWriteRequests(sftp: SFTPWrapper): void {
  const target = sftp as unknown as Internals;
  if (typeof target.push !== 'function' || typeof target._maxInPktLen !== 'number') return;
  const forward = target.push.bind(sftp);
  const maxPacket = target._maxInPktLen;
  /** The current packet's first bytes (up to its data), copied while they arrive. */
  const head = Buffer.allocUnsafe(MAX_HEAD);
  let headLen = 0;
  /** WRITE head bytes needed so far: 5 to learn the type, 13 for the handle length, then all. */
  let headNeed = 5;
  /** Bytes of the current packet still to come after what has been looked at. */
  let remaining = 0;
  /** The current packet is forwarded as it streams in (not a WRITE, or not one we take). */
  let forwarding = false;
  let pieces: Buffer[] = [];
  let id = 0;
  let handle: Buffer | undefined;
  let offset = 0;
  let passThrough = false; // ssh2 will refuse this stream anyway: stop looking

  const emitWrite = (): void => {
    const data = pieces.length === 1 ? pieces[0]! : pieces;
    pieces = [];
    if (!sftp.emit('WRITE', id, handle, offset, data)) sftp.status(id, STATUS_OP_UNSUPPORTED);
  };

  target.push = (data: Buffer | null) => {
    if (data === null || passThrough) return forward(data);
    let p = 0;
    /** Start of the bytes of this chunk still to forward unchanged (up to p, or to a head's start). */
    let run = 0;
    /** Head bytes that arrived in earlier chunks: they exist only in `head`. */
    let headFromEarlier = headLen;
    /** The packet is ssh2's: what came of it so far goes out, the rest streams after it. */
    const forwardHead = (): void => {
      if (headFromEarlier > 0) forward(Buffer.from(head.subarray(0, headFromEarlier)));
      headFromEarlier = 0;
      remaining -= headLen - 5;
      headLen = 0;
      headNeed = 5;
      forwarding = remaining > 0;
    };
    while (p < data.length) {
      if (forwarding) {
        const take = Math.min(remaining, data.length - p);
        p += take;
        remaining -= take;
        if (remaining === 0) forwarding = false;
        continue;
      }
      if (remaining > 0 && headLen === 0) {
        // WRITE data: a view of this chunk.
        const take = Math.min(remaining, data.length - p);
        pieces.push(data.subarray(p, p + take));
        p += take;
        remaining -= take;
        run = p;
        if (remaining === 0) emitWrite();
        continue;
      }
      if (headLen === 0) {
        // A packet starts here: what is before it goes out first.
        if (p > run) forward(data.subarray(run, p));
        run = p;
      }
      const take = Math.min(headNeed - headLen, data.length - p);
      data.copy(head, headLen, p, p + take);
      headLen += take;
      p += take;
      if (headLen < headNeed) continue;
      if (headNeed === 5) {
        const length = head.readUInt32BE(0);
        if (length === 0 || length > maxPacket) {
          // ssh2 closes the channel over it: give it everything from here on.
          passThrough = true;
          if (headFromEarlier > 0) forward(Buffer.from(head.subarray(0, headFromEarlier)));
          return forward(data.subarray(run));
        }
        remaining = length - 1;
        if (head[4] !== WRITE || target._version === -1 || length < 1 + 4 + 4 + 8 + 4) {
          forwardHead();
          continue;
        }
        headNeed = 13;
      } else if (headNeed === 13) {
        const handleLen = head.readUInt32BE(9);
        if (handleLen > MAX_HANDLE || 4 + 4 + handleLen + 8 + 4 > remaining) {
          forwardHead();
          continue;
        }
        headNeed = 13 + handleLen + 12;
      } else {
        const handleLen = head.readUInt32BE(9);
        const dataLen = head.readUInt32BE(13 + handleLen + 8);
        // Trailing bytes after the data are legal for ssh2 (ignored) but not worth a path of ours.
        if (dataLen !== remaining - (headLen - 5)) {
          forwardHead();
          continue;
        }
        id = head.readUInt32BE(5);
        handle = Buffer.from(head.subarray(13, 13 + handleLen));
        // As ssh2 reads a uint64 without its bigint option.
        offset = head.readUInt32BE(13 + handleLen) * 4294967296 + head.readUInt32BE(17 + handleLen);
        remaining = dataLen;
        headLen = 0;
        headFromEarlier = 0;
        headNeed = 5;
        run = p;
        if (dataLen === 0) {
          pieces = [Buffer.alloc(0)];
          emitWrite();
        }
      }
    }
    // A head still incomplete stays here (copied in `head`) until its type is known.
    if (headLen === 0 && p > run) forward(data.subarray(run, p));
    return undefined;
  };
}
