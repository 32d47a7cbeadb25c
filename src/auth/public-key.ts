/**
 * Finds which of a user's authorized keys a client offered. The SSH layer then
 * verifies the client's signature with the returned key.
 */

import { timingSafeEqual } from 'node:crypto';
import ssh2 from 'ssh2';
import type { ParsedKey } from 'ssh2';
import type { User } from '../users/user.ts';

const { utils } = ssh2;

/** Parsing a key costs more than comparing it, and every login re-reads the list. */
const cache = new Map<string, ParsedKey | null>();
/** Bounds memory when keys churn (users edited over weeks); oldest entries go first. */
const CACHE_LIMIT = 10_000;

function parse(line: string): ParsedKey | undefined {
  const hit = cache.get(line);
  if (hit !== undefined) return hit ?? undefined;
  let result = utils.parseKey(line) as ParsedKey | ParsedKey[] | Error;
  if (Array.isArray(result)) result = result[0] ?? new Error('no key');
  // Users are validated on load, but never let a private key act as an authorized key.
  const key = result instanceof Error || result.isPrivateKey() ? null : result;
  if (cache.size >= CACHE_LIMIT) {
    const oldest = cache.keys().next();
    if (!oldest.done) cache.delete(oldest.value);
  }
  cache.set(line, key);
  return key ?? undefined;
}

/**
 * The user's key whose public SSH blob equals the offered one, or undefined.
 * `key` is ssh2's `ctx.key` from a publickey authentication attempt.
 */
export function matchPublicKey(user: User, key: { algo: string; data: Buffer }): ParsedKey | undefined {
  for (const line of user.publicKeys) {
    const parsed = parse(line);
    if (!parsed || parsed.type !== key.algo) continue;
    const blob = parsed.getPublicSSH();
    if (blob.length === key.data.length && timingSafeEqual(blob, key.data)) return parsed;
  }
  return undefined;
}
