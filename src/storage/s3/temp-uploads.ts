/**
 * Uploads through a temporary name (docs/adr/0017-uploads-through-a-temporary-name.md). WinSCP and
 * many scripts upload to `name.filepart` and rename it once complete; on S3 that rename is a full
 * server-side copy. An upload to a configured suffix is therefore written towards the final key,
 * and after CLOSE it waits here, parked and not yet visible, for the RENAME that names its final
 * key: then it is completed there, with no copy. If no rename comes within the window (or one to
 * another name, a read, a server shutdown), it is completed at the temporary name instead.
 * Shared by all sessions, like the UploadRegistry.
 */
import type { Logger } from 'pino';

/** Where a parked upload is finally stored. */
export type ParkedTarget = 'final' | 'temporary';

/** A closed upload waiting for its rename. */
export interface ParkedUpload {
  /** The key it will have when renamed as expected. */
  readonly finalKey: string;
  /** Stores it under the final or the temporary key; at most once. */
  finish(target: ParkedTarget): Promise<void>;
  /** Drops it (the client removed the temporary name). */
  abort(): Promise<void>;
  /** A SETSTAT of the temporary name while parked. */
  setMtime(mtime: Date): void;
}

export interface TempUploadsOptions {
  /** The suffixes that mark a temporary name, e.g. [".filepart"]. */
  suffixes: readonly string[];
  /** How long a closed upload waits for its rename (milliseconds). */
  windowMs: number;
  log: Logger;
}

/** Parked uploads by bucket and temporary key. */
export class TempUploads {
  #o: TempUploadsOptions;
  #parked = new Map<string, { upload: ParkedUpload; timer: NodeJS.Timeout }>();
  #finishing = new Set<Promise<void>>();
  /** Uploads being stored at their temporary name in the background (the window passed), by id. */
  #storing = new Map<string, Promise<void>>();

  constructor(options: TempUploadsOptions) {
    this.#o = options;
  }

  /** The final name of a temporary one ("a/x.filepart" → "a/x"), or undefined if it is not one. */
  finalName(path: string): string | undefined {
    const base = path.slice(path.lastIndexOf('/') + 1);
    for (const suffix of this.#o.suffixes) {
      if (suffix !== '' && base.endsWith(suffix) && base.length > suffix.length) return path.slice(0, -suffix.length);
    }
    return undefined;
  }

  /** Parks a closed upload; it is stored at its temporary name when the window passes without a rename. */
  park(bucket: string, tempKey: string, upload: ParkedUpload): void {
    const id = `${bucket}/${tempKey}`;
    // A second upload to the same temporary name replaces the first, as on a disk, where its TRUNC
    // drops the first file's bytes: the first is dropped, never stored (storing it would race with
    // this one for the same final key).
    const earlier = this.take(bucket, tempKey);
    if (earlier) this.#settle(earlier.abort(), tempKey);
    const timer = setTimeout(() => {
      if (this.#parked.get(id)?.upload !== upload) return;
      this.#parked.delete(id);
      this.#settle(upload.finish('temporary'), tempKey, id);
    }, this.#o.windowMs);
    this.#parked.set(id, { upload, timer });
  }

  /** The parked upload of this temporary key, if any, removed from the table. */
  take(bucket: string, tempKey: string): ParkedUpload | undefined {
    const id = `${bucket}/${tempKey}`;
    const entry = this.#parked.get(id);
    if (!entry) return undefined;
    clearTimeout(entry.timer);
    this.#parked.delete(id);
    return entry.upload;
  }

  /**
   * A background store of this temporary key that is running (the window passed): it resolves
   * once the object is at the temporary name. Undefined when none is running.
   */
  storing(bucket: string, tempKey: string): Promise<void> | undefined {
    return this.#storing.get(`${bucket}/${tempKey}`);
  }

  /** The parked upload of this temporary key, left in place. */
  peek(bucket: string, tempKey: string): ParkedUpload | undefined {
    return this.#parked.get(`${bucket}/${tempKey}`)?.upload;
  }

  get size(): number {
    return this.#parked.size;
  }

  /** At shutdown: every parked upload is stored at its temporary name now. */
  async flush(): Promise<void> {
    for (const [id, { upload, timer }] of this.#parked) {
      clearTimeout(timer);
      this.#parked.delete(id);
      this.#settle(upload.finish('temporary'), id, id);
    }
    await Promise.allSettled([...this.#finishing]);
  }

  /** Tracks a background finish; `id`: a store at the temporary name that requests on that name wait for. */
  #settle(done: Promise<void>, key: string, id?: string): void {
    const tracked = done.catch((err: unknown) =>
      // The client was told CLOSE succeeded; this is the one place the failure can still be seen.
      this.#o.log.error({ err, key }, 'could not store a closed upload at its temporary name'),
    );
    this.#finishing.add(tracked);
    if (id !== undefined) this.#storing.set(id, tracked);
    void tracked.finally(() => {
      this.#finishing.delete(tracked);
      if (id !== undefined && this.#storing.get(id) === tracked) this.#storing.delete(id);
    });
  }
}
