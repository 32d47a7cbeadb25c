/**
 * Uploads in progress through this server, shared by all sessions. S3 shows
 * nothing until an upload completes, but clients (and their users) expect a
 * file being written to exist with a growing size; stat() asks here after a 404.
 */

/** What the registry needs to know about a live upload. */
export interface LiveUpload {
  /** Bytes received so far (contiguous from 0). */
  readonly bytesReceived: number;
  /** When the upload was opened, in epoch milliseconds. */
  readonly startedAtMs: number;
}

/** Live uploads by bucket and key. */
export class UploadRegistry {
  // Two sessions may write the same key at once; the last commit wins in S3,
  // so both are tracked and the most recently opened one is reported.
  #uploads = new Map<string, LiveUpload[]>();

  /** Registers an upload; the returned function deregisters it (idempotent). */
  add(bucket: string, key: string, upload: LiveUpload): () => void {
    const id = registryKey(bucket, key);
    const list = this.#uploads.get(id) ?? [];
    list.push(upload);
    this.#uploads.set(id, list);
    let removed = false;
    return () => {
      if (removed) return;
      removed = true;
      const current = this.#uploads.get(id);
      if (!current) return;
      const rest = current.filter((u) => u !== upload);
      if (rest.length === 0) this.#uploads.delete(id);
      else this.#uploads.set(id, rest);
    };
  }

  /** The most recently opened live upload of this key, if any. */
  get(bucket: string, key: string): LiveUpload | undefined {
    return this.#uploads.get(registryKey(bucket, key))?.at(-1);
  }

  /** Live uploads whose key starts with `prefix`, most recent per key (for listings). */
  *under(bucket: string, prefix: string): Generator<[key: string, upload: LiveUpload]> {
    const start = registryKey(bucket, prefix);
    for (const [id, list] of this.#uploads) {
      const upload = list.at(-1);
      if (id.startsWith(start) && upload) yield [id.slice(bucket.length + 1), upload];
    }
  }

  /** Number of live uploads, for metrics and shutdown. */
  get size(): number {
    let n = 0;
    for (const list of this.#uploads.values()) n += list.length;
    return n;
  }
}

// Bucket names cannot contain "/", so this pairs them unambiguously.
function registryKey(bucket: string, key: string): string {
  return `${bucket}/${key}`;
}
