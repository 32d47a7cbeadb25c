/**
 * How far V8 lets the JavaScript heap grow past what the last full collection kept.
 *
 * The server's heap is small (~20 MB live) and churns fast: every SFTP request and reply, and every
 * S3 chunk, leaves short-lived objects. V8's default growth for such a heap leaves less room above
 * the live size than the young generation holds, so it starts a full mark-compact almost
 * continuously: ~45 per 256 MiB put and get, 0.2-1.2 s of server CPU each way
 * (docs/performance.md, "Server CPU per GiB"). Letting the heap grow to 4x what survived (300%
 * growth) cuts them to ~17; the part and chunk buffers, which are most of the memory, live outside
 * this heap and are bounded by the upload budget as before. A value given on the command line
 * (`node --heap-growing-percent=N`) or in NODE_OPTIONS wins.
 */
import { setFlagsFromString } from 'node:v8';

/** Heap growth after a full collection, in percent of what it kept. */
export const HEAP_GROWING_PERCENT = 300;

/** Sets the growth for this process unless the node command line or NODE_OPTIONS already did. */
export function setHeapGrowth(execArgv: readonly string[] = process.execArgv, nodeOptions = process.env.NODE_OPTIONS ?? ''): boolean {
  const given = /(^|\s)--heap[-_]growing[-_]percent\b/;
  if (execArgv.some((arg) => given.test(arg)) || given.test(nodeOptions)) return false;
  setFlagsFromString(`--heap-growing-percent=${HEAP_GROWING_PERCENT}`);
  return true;
}
