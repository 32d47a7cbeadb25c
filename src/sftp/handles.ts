/**
 * The per-session handle table. Handles are opaque 4-byte ids; every handle
 * owns a promise chain so that READ and WRITE replies on one handle go out in
 * request order (OpenSSH's scp in SFTP mode silently truncates files otherwise).
 */
import type { FileInfo, FileReader, FileWriter } from '../storage/storage.ts';
import { InvalidRequestError } from '../storage/errors.ts';

export interface ReadHandle {
  kind: 'read';
  path: string;
  info: FileInfo;
  reader: FileReader;
  /** Bytes sent to the client in DATA replies. */
  sent: number;
  /** A READ failed: the download did not go as the client wanted. */
  failed: boolean;
  opened: Date;
}

export interface WriteHandle {
  kind: 'write';
  path: string;
  writer: FileWriter;
  /**
   * The stored file, when the target existed and was opened without TRUNC: a first write past 0
   * would be a resume, and until a WRITE the file is still this one (what FSTAT reports).
   */
  stored: FileInfo | undefined;
  /** Opened READ|WRITE (rsync, sshfs): READ is answered where it can be truthful. */
  readable: boolean;
  /** At least one WRITE was accepted. */
  written: boolean;
  /** A WRITE was refused or failed: CLOSE must not store the file. */
  failed: boolean;
  opened: Date;
}

export interface DirHandle {
  kind: 'dir';
  path: string;
  pages: AsyncIterator<FileInfo[]>;
  /** Entries fetched but not yet sent (a page may exceed one NAME reply). */
  pending: FileInfo[];
  done: boolean;
}

export type Handle = ReadHandle | WriteHandle | DirHandle;

interface Slot {
  handle: Handle;
  queue: Promise<void>;
}

export class HandleTable {
  #slots = new Map<number, Slot>();
  #next = 1;
  readonly #max: number;

  constructor(maxOpen = 256) {
    this.#max = maxOpen;
  }

  get size(): number {
    return this.#slots.size;
  }

  /** OPENs and OPENDIRs being answered: they count against the limit before their S3 requests. */
  #opening = 0;

  /**
   * Runs an OPEN or OPENDIR with a place in the table held for it, so a burst of pipelined OPENs
   * is refused before it sends any S3 request rather than after (each OPEN starts with a HEAD).
   */
  async opening<T>(work: () => Promise<T>): Promise<T> {
    if (this.#slots.size + this.#opening >= this.#max) {
      throw new InvalidRequestError(`too many open handles (limit ${this.#max}); close some first`);
    }
    this.#opening++;
    try {
      return await work();
    } finally {
      this.#opening--;
    }
  }

  add(handle: Handle): Buffer {
    if (this.#slots.size >= this.#max) {
      throw new InvalidRequestError(`too many open handles (limit ${this.#max})`);
    }
    const id = this.#next;
    this.#next = this.#next >= 0xffffffff ? 1 : this.#next + 1;
    this.#slots.set(id, { handle, queue: Promise.resolve() });
    return encode(id);
  }

  get(raw: Buffer): Handle | undefined {
    const id = decode(raw);
    return id === undefined ? undefined : this.#slots.get(id)?.handle;
  }

  /** The newest open upload of `path` in this session, if any. */
  uploadOf(path: string): WriteHandle | undefined {
    let found: WriteHandle | undefined;
    for (const { handle } of this.#slots.values()) if (handle.kind === 'write' && handle.path === path) found = handle;
    return found;
  }

  /**
   * Runs `work` after everything queued earlier on this handle has finished.
   * The handle is bound now: a CLOSE that arrives later removes it from the
   * table but still lets the requests sent before it complete.
   */
  enqueue(raw: Buffer, work: (handle: Handle) => Promise<void>): boolean {
    const id = decode(raw);
    const slot = id === undefined ? undefined : this.#slots.get(id);
    if (!slot) return false;
    const run = () => work(slot.handle);
    slot.queue = slot.queue.then(run, run);
    return true;
  }

  /** Removes a handle once its queued work is done; resolves with it. */
  async remove(raw: Buffer): Promise<Handle | undefined> {
    const id = decode(raw);
    const slot = id === undefined ? undefined : this.#slots.get(id);
    if (!slot || id === undefined) return undefined;
    this.#slots.delete(id);
    await slot.queue.catch(() => undefined);
    return slot.handle;
  }

  /** Empties the table (connection closed) and returns what was open. */
  drain(): Handle[] {
    const handles = [...this.#slots.values()].map((s) => s.handle);
    this.#slots.clear();
    return handles;
  }
}

function encode(id: number): Buffer {
  const buf = Buffer.alloc(4);
  buf.writeUInt32BE(id);
  return buf;
}

function decode(raw: Buffer): number | undefined {
  // ssh2 passes undefined when a packet's handle field runs past its end.
  return Buffer.isBuffer(raw) && raw.length === 4 ? raw.readUInt32BE() : undefined;
}
