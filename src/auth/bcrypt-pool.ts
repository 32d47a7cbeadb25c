/**
 * bcrypt off the main thread. bcryptjs is pure JavaScript: a check costs ~0.1-0.3 s of CPU, and
 * run on the main thread during a password spray it stalls every handshake and transfer. A few
 * worker threads (as many as verifications may run at once, auth.verifyConcurrency) do the work
 * instead. Workers start on the first bcrypt request, so a server whose users have only argon2id
 * hashes runs none. A worker that dies answers its request as a failed check (compare) or an
 * error (hash), and a new one starts on the next request; the process is not affected.
 */
import { Worker } from 'node:worker_threads';
import type { BcryptRequest } from './bcrypt-worker.ts';

type Reply = { id: number; ok: true; value: boolean | string } | { id: number; ok: false; error: string };

interface Task {
  request: BcryptRequest;
  settle(reply: Reply): void;
}

interface Slot {
  worker: Worker;
  task: Task | undefined;
}

export interface BcryptPoolOptions {
  /** Worker threads at most. */
  size: number;
  /** The worker's module; tests pass one that misbehaves. */
  workerUrl?: URL;
}

/** The worker module beside this one: .ts when run from source, .js once built. */
function defaultWorkerUrl(): URL {
  return new URL(import.meta.url.endsWith('.ts') ? './bcrypt-worker.ts' : './bcrypt-worker.js', import.meta.url);
}

/** A small pool of bcrypt worker threads. */
export class BcryptPool {
  readonly #size: number;
  readonly #url: URL;
  readonly #slots = new Set<Slot>();
  readonly #queue: Task[] = [];
  #nextId = 1;
  #closed = false;
  #crashes = 0;

  constructor(options: BcryptPoolOptions) {
    this.#size = Math.max(1, options.size);
    this.#url = options.workerUrl ?? defaultWorkerUrl();
  }

  /** Workers running now (for tests). */
  get workers(): number {
    return this.#slots.size;
  }

  /** Workers that died with a request in hand or unexpectedly, since the start. */
  get crashes(): number {
    return this.#crashes;
  }

  /** True if `plain` matches the bcrypt `hash`; false on a mismatch, a malformed hash or a dead worker. */
  async compare(plain: string, hash: string): Promise<boolean> {
    const reply = await this.#run({ id: 0, op: 'compare', plain, hash });
    return reply.ok && reply.value === true;
  }

  /** A bcrypt hash of `plain` at `cost` (the dummy for unknown users). */
  async hash(plain: string, cost: number): Promise<string> {
    const reply = await this.#run({ id: 0, op: 'hash', plain, cost });
    if (!reply.ok) throw new Error(`bcrypt hash failed: ${reply.error}`);
    return reply.value as string;
  }

  /** Terminates the workers; requests still waiting fail (compare answers false). */
  async close(): Promise<void> {
    this.#closed = true;
    for (const task of this.#queue.splice(0)) task.settle({ id: task.request.id, ok: false, error: 'pool closed' });
    const slots = [...this.#slots];
    this.#slots.clear();
    await Promise.all(
      slots.map(async (slot) => {
        slot.task?.settle({ id: slot.task.request.id, ok: false, error: 'pool closed' });
        slot.task = undefined;
        await slot.worker.terminate();
      }),
    );
  }

  #run(request: BcryptRequest): Promise<Reply> {
    const id = this.#nextId++;
    if (this.#closed) return Promise.resolve({ id, ok: false, error: 'pool closed' });
    return new Promise<Reply>((resolve) => {
      this.#queue.push({ request: { ...request, id }, settle: resolve });
      this.#dispatch();
    });
  }

  #dispatch(): void {
    while (this.#queue.length > 0 && !this.#closed) {
      let slot = [...this.#slots].find((s) => s.task === undefined);
      if (!slot) {
        if (this.#slots.size >= this.#size) return;
        slot = this.#spawn();
      }
      const task = this.#queue.shift()!;
      slot.task = task;
      slot.worker.ref();
      slot.worker.postMessage(task.request);
    }
  }

  #spawn(): Slot {
    const worker = new Worker(this.#url);
    const slot: Slot = { worker, task: undefined };
    // An idle worker must not keep the process alive; one with a request in hand does.
    worker.unref();
    worker.on('message', (reply: Reply) => {
      const task = slot.task;
      if (!task || reply.id !== task.request.id) return;
      slot.task = undefined;
      worker.unref();
      task.settle(reply);
      this.#dispatch();
    });
    // 'error' (an uncaught exception in the worker) is followed by 'exit'.
    worker.on('error', () => {});
    worker.on('exit', () => {
      if (!this.#slots.delete(slot)) return; // closed on purpose
      this.#crashes++;
      const task = slot.task;
      slot.task = undefined;
      task?.settle({ id: task.request.id, ok: false, error: 'bcrypt worker exited' });
      this.#dispatch();
    });
    this.#slots.add(slot);
    return slot;
  }
}
