/**
 * Multipart part sizes. S3 allows at most 10,000 parts of at most 5 GiB each
 * and objects of at most 5 TiB. An SFTP upload does not announce its size, so
 * a fixed part size either wastes memory on small files or caps large ones
 * (10,000 × 5 MiB is only 48.8 GiB). Sizes therefore start at the configured
 * base and double every PARTS_PER_STEP parts: with a 5 MiB base the 10,000th
 * part is reached only after more than 5 TiB.
 */

/** S3's largest part (and largest single CopyObject / PutObject). */
export const MAX_PART_SIZE = 5 * 1024 ** 3;
/** S3's smallest part other than the last one. */
export const MIN_PART_SIZE = 5 * 1024 ** 2;
/** S3's part number limit. */
export const MAX_PARTS = 10_000;
/** S3's largest object. */
export const MAX_OBJECT_SIZE = 5 * 1024 ** 4;

const PARTS_PER_STEP = 500;

/** Size of part `partNumber` (1-based) for a configured base part size. */
export function partSizeFor(partNumber: number, base: number): number {
  const step = Math.floor((partNumber - 1) / PARTS_PER_STEP);
  // Clamp the exponent: 2 ** 1000 is finite but pointless, Infinity is not an integer.
  const size = base * 2 ** Math.min(step, 30);
  return Math.min(Math.max(size, 1), MAX_PART_SIZE);
}
