/**
 * Directory listing over ListObjectsV2 with Delimiter "/", one page at a time.
 *
 * S3 has no directories, so one name can be both a file ("x") and a directory
 * (keys under "x/"). SFTP clients break on duplicate names, so the file is
 * shown and the directory hidden. The two are not adjacent in key order
 * ("x", "x-1", "x.txt", "x/"), and a directory may hold millions of names, so
 * instead of a set of every name seen, a ShadowChain keeps only the file names
 * that are prefixes of the current key.
 */
import { ListObjectsV2Command, type _Object, type CommonPrefix, type S3Client } from '@aws-sdk/client-s3';
import { toStorageError } from './errors.ts';
import { isReservedKey } from './reserved-keys.ts';
import { keepResponseDate } from './response-date.ts';

/** One name in a directory, before it becomes a FileInfo. */
export interface ListedEntry {
  name: string;
  isDirectory: boolean;
  size: number;
  lastModified: Date | undefined;
  /** The object's key and ETag (files only): what a metadata lookup needs. */
  key?: string;
  etag?: string;
}

/** Where and how to list. */
export interface ListRequest {
  client: S3Client;
  bucket: string;
  /** The directory's key prefix, ending in "/" (or "" for a bucket root). */
  prefix: string;
  /** Client-safe description for errors ("list /a"). */
  context: string;
  /** Page size; S3 caps it at 1000. */
  maxKeys?: number;
  /** Only keys after this one (a whole key). */
  startAfter?: string;
  signal?: AbortSignal;
  /**
   * Ask for the next page as soon as one arrives, so S3 answers it while the reader works on this
   * one. Only for readers that read to the end: one that stops early has paid for a page unread.
   */
  prefetch?: boolean;
}

/** A raw page: whether S3 returned anything at all (the marker included), and the visible entries. */
export interface ListedPage {
  /** Anything exists under the prefix, including the directory's own marker. */
  sawAnything: boolean;
  entries: ListedEntry[];
  /** S3 said there is nothing after this page. */
  last: boolean;
  /** The response's `Date` header: S3's clock when it answered (whole seconds). */
  date?: Date;
}

/** Yields the directory's entries page by page, each name at most once. */
export async function* listPages(request: ListRequest): AsyncGenerator<ListedPage> {
  const chain = new ShadowChain();
  // A page asked for ahead is abandoned when the reader stops before it.
  const stopped = new AbortController();
  const signal = request.signal ? AbortSignal.any([request.signal, stopped.signal]) : stopped.signal;
  let ahead: Promise<FetchedPage> | undefined;
  try {
    let fetched = await fetchPage(request, undefined, signal);
    for (;;) {
      const token = fetched.token;
      if (token !== undefined && request.prefetch) {
        ahead = fetchPage(request, token, signal);
        // Awaited below; until then (or if the reader stops) its failure is not an unhandled one.
        ahead.catch(() => {});
      }
      yield visiblePage(fetched, request.prefix, chain);
      if (token === undefined) return;
      fetched = await (ahead ?? fetchPage(request, token, signal));
      ahead = undefined;
    }
  } finally {
    if (ahead) stopped.abort();
  }
}

/** One ListObjectsV2 response, as S3 gave it. */
interface FetchedPage {
  contents: _Object[];
  commonPrefixes: CommonPrefix[];
  /** The continuation token when S3 has more. */
  token: string | undefined;
  date: Date | undefined;
}

async function fetchPage(request: ListRequest, token: string | undefined, signal: AbortSignal): Promise<FetchedPage> {
  try {
    const command = new ListObjectsV2Command({
      Bucket: request.bucket,
      Prefix: request.prefix,
      Delimiter: '/',
      // Without it, one key holding a character XML cannot carry (U+0001, U+FFFF)
      // breaks the listing of its whole range (Swift answers 500).
      EncodingType: 'url',
      MaxKeys: request.maxKeys ?? 1000,
      ContinuationToken: token,
      ...(token === undefined && request.startAfter !== undefined ? { StartAfter: request.startAfter } : {}),
    });
    // The listing index (listing-index.ts) dates what a listing saw by S3's clock, not ours.
    const responseDate = keepResponseDate(command);
    const page = await request.client.send(command, { abortSignal: signal });
    return {
      contents: page.Contents ?? [],
      commonPrefixes: page.CommonPrefixes ?? [],
      token: page.IsTruncated ? page.NextContinuationToken : undefined,
      date: responseDate(),
    };
  } catch (err) {
    throw toStorageError(err, request.context);
  }
}

/** The names of one page a client may see, in key order. */
function visiblePage(page: FetchedPage, prefix: string, chain: ShadowChain): ListedPage {
  const raw: { key: string; entry: ListedEntry | undefined }[] = [];
  for (const object of page.contents) {
    if (object.Key === undefined) continue;
    const key = decodeKey(object.Key);
    const name = key.slice(prefix.length);
    raw.push({
      key,
      entry: visibleName(name) && !isReservedKey(key)
        ? {
            name,
            isDirectory: false,
            size: object.Size ?? 0,
            lastModified: object.LastModified,
            key,
            ...(object.ETag ? { etag: object.ETag } : {}),
          }
        : undefined,
    });
  }
  for (const common of page.commonPrefixes) {
    if (common.Prefix === undefined) continue;
    const key = decodeKey(common.Prefix);
    const name = key.slice(prefix.length, -1);
    raw.push({
      key,
      entry: visibleName(name) && !isReservedKey(key) ? { name, isDirectory: true, size: 0, lastModified: undefined } : undefined,
    });
  }
  // Contents and CommonPrefixes are each sorted; the chain needs them merged.
  raw.sort((a, b) => compareKeys(a.key, b.key));
  const entries: ListedEntry[] = [];
  for (const { entry } of raw) {
    if (entry && chain.admit(entry.name, entry.isDirectory)) entries.push(entry);
  }
  return { sawAnything: raw.length > 0, entries, last: page.token === undefined, ...(page.date ? { date: page.date } : {}) };
}

/**
 * Decides, in key order, whether a name is shown. Files are remembered while
 * they are prefixes of the current name: in sorted order, once a name is not
 * a prefix of the current one it is not a prefix of any later one either, so
 * the chain never holds more than one path's worth of names.
 */
export class ShadowChain {
  #files: string[] = [];

  /** True when the entry should be listed. Entries must arrive in key order. */
  admit(name: string, isDirectory: boolean): boolean {
    while (this.#files.length > 0 && !name.startsWith(this.#files.at(-1)!)) this.#files.pop();
    if (isDirectory) return !this.#files.includes(name);
    this.#files.push(name);
    return true;
  }
}

/**
 * Undoes EncodingType=url. AWS writes a space as "+" (and "+" as "%2B"); Swift
 * writes "%20"; both decode correctly this way. The SDK does not decode.
 */
export function decodeKey(encoded: string): string {
  return decodeURIComponent(encoded.replace(/\+/g, ' '));
}

/** "" (from "a//b"), "." and ".." cannot be SFTP names; such keys are unreachable and hidden. */
function visibleName(name: string): boolean {
  return name !== '' && name !== '.' && name !== '..';
}

/** S3 orders keys by their UTF-8 bytes, which differs from UTF-16 order above U+FFFF. */
export function compareKeys(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}
