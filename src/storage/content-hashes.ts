/**
 * MD5, SHA-1 and SHA-256 of a byte stream, computed as it passes through
 * (node:crypto's native hashes, fed the caller's buffers: no copies), so an
 * upload's checksums cost no extra read of the stored object.
 */
import { createHash, type Hash } from 'node:crypto';
import type { HashAlgorithm } from './storage.ts';

/** Every algorithm the checksum commands offer, in a stable order. */
export const HASH_ALGORITHMS: readonly HashAlgorithm[] = ['md5', 'sha1', 'sha256'];

/** Hex digest lengths, to tell a stored digest from garbage. */
const HEX_LENGTH: Record<HashAlgorithm, number> = { md5: 32, sha1: 40, sha256: 64 };

/** Incremental hashes of one stream, in every HASH_ALGORITHMS algorithm. */
export class ContentHashes {
  #hashes = new Map<HashAlgorithm, Hash>(HASH_ALGORITHMS.map((a) => [a, createHash(a)]));

  update(data: Buffer): void {
    for (const hash of this.#hashes.values()) hash.update(data);
  }

  /** Final hex digests; the object cannot be updated afterwards. */
  digests(): Record<HashAlgorithm, string> {
    const out = {} as Record<HashAlgorithm, string>;
    for (const [algorithm, hash] of this.#hashes) out[algorithm] = hash.digest('hex');
    return out;
  }
}

/** True for a lower-case hex digest of the algorithm's length. */
export function isHexDigest(algorithm: HashAlgorithm, value: string | undefined): value is string {
  return value !== undefined && value.length === HEX_LENGTH[algorithm] && /^[0-9a-f]+$/.test(value);
}
