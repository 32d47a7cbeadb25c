/**
 * User-visible path handling shared by every protocol layer. A client path is
 * untrusted: it may be relative, contain "." / ".." segments, repeated or
 * trailing slashes. normalizePath() turns it into the one absolute form the
 * Storage interface accepts, and that form can never name anything above "/",
 * which is what keeps a user inside their key prefix.
 */
import { InvalidRequestError } from './errors.ts';

/**
 * The absolute, normalised form of `raw`: relative paths resolve against `cwd`
 * (itself absolute), "." and ".." are resolved (".." stops at "/"), repeated
 * slashes collapse and a trailing slash is dropped. Throws InvalidRequestError
 * on a NUL byte, which no store can represent and C-based clients truncate at.
 */
export function normalizePath(raw: string, cwd = '/'): string {
  if (raw.includes('\0') || cwd.includes('\0')) {
    throw new InvalidRequestError('path contains a NUL byte');
  }
  const input = raw.startsWith('/') ? raw : `${cwd}/${raw}`;
  const out: string[] = [];
  for (const segment of input.split('/')) {
    if (segment === '' || segment === '.') continue;
    if (segment === '..') {
      out.pop();
      continue;
    }
    out.push(segment);
  }
  return `/${out.join('/')}`;
}

/** Last segment of a normalised path; "/" for the root. */
export function basename(path: string): string {
  if (path === '/') return '/';
  return path.slice(path.lastIndexOf('/') + 1);
}

/** Parent of a normalised path; the root is its own parent. */
export function dirname(path: string): string {
  const cut = path.lastIndexOf('/');
  return cut <= 0 ? '/' : path.slice(0, cut);
}

/** Appends one name to a normalised directory path. */
export function join(dir: string, name: string): string {
  return dir === '/' ? `/${name}` : `${dir}/${name}`;
}

/** True when `path` is `ancestor` itself or lies below it (both normalised). */
export function isWithin(path: string, ancestor: string): boolean {
  if (ancestor === '/') return true;
  return path === ancestor || path.startsWith(`${ancestor}/`);
}

/** Store keys are at most 1024 bytes of UTF-8; one byte is kept for a directory marker's "/". */
export const MAX_KEY_BYTES = 1023;

/**
 * The key of a user path under a key prefix. Every storage re-validates the path here, so a bug
 * upstream cannot name anything outside the prefix.
 */
export function keyUnder(prefix: string, path: string): string {
  if (typeof path !== 'string' || !path.startsWith('/') || normalizePath(path) !== path) {
    throw new InvalidRequestError('invalid path');
  }
  const key = prefix + path.slice(1);
  if (Buffer.byteLength(key) > MAX_KEY_BYTES) throw new InvalidRequestError(`${path}: path too long`);
  return key;
}
