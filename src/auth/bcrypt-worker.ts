/**
 * One bcrypt worker thread (see bcrypt-pool.ts): bcryptjs is pure JavaScript and takes ~0.1-0.3 s
 * of CPU per check, which on the main thread would stall every connection. Handles one request
 * at a time; answers { id, ok, value } or { id, ok: false, error }.
 */
import { parentPort } from 'node:worker_threads';
import bcrypt from 'bcryptjs';

/** A request from the pool. */
export type BcryptRequest = { id: number; op: 'compare'; plain: string; hash: string } | { id: number; op: 'hash'; plain: string; cost: number };

parentPort?.on('message', (req: BcryptRequest) => {
  try {
    const value = req.op === 'compare' ? bcrypt.compareSync(req.plain, req.hash) : bcrypt.hashSync(req.plain, req.cost);
    parentPort!.postMessage({ id: req.id, ok: true, value });
  } catch (err) {
    parentPort!.postMessage({ id: req.id, ok: false, error: err instanceof Error ? err.message : String(err) });
  }
});
