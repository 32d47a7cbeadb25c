/**
 * Work that one replica should do, not every one: the abandoned-upload janitor (N replicas would
 * list every user's uploads N times) and Kubernetes Events. With users.kubernetes, the replica
 * holding the status-writer Lease leads; without Kubernetes there is no Lease and the single
 * process leads from the start, as before.
 */

/** Something started when leadership is gained and stopped when it is lost. */
export interface LeaderTask {
  start(): void;
  stop(): Promise<void>;
}

/** The pino methods used here. */
interface TaskLogger {
  info(obj: object, msg: string): void;
}

/**
 * Runs a task while this replica leads. A fresh task is made for every term, since a stopped
 * task (an aborted janitor) cannot be restarted.
 */
export class LeaderOnly {
  readonly #make: () => LeaderTask;
  readonly #name: string;
  readonly #log: TaskLogger;
  #current: LeaderTask | undefined;
  #stopping: Promise<void> = Promise.resolve();
  #closed = false;

  constructor(opts: { name: string; make: () => LeaderTask; log: TaskLogger }) {
    this.#make = opts.make;
    this.#name = opts.name;
    this.#log = opts.log;
  }

  /** True while the task runs here. */
  get running(): boolean {
    return this.#current !== undefined;
  }

  setLeading(leading: boolean): void {
    if (this.#closed || leading === (this.#current !== undefined)) return;
    if (leading) {
      const task = this.#make();
      this.#current = task;
      // A task of the previous term may still be finishing a request; start after it.
      void this.#stopping.then(() => {
        if (this.#current === task) task.start();
      });
      this.#log.info({ task: this.#name }, `${this.#name}: running on this replica (it leads)`);
      return;
    }
    const task = this.#current;
    this.#current = undefined;
    this.#stopping = this.#stopping.then(() => task?.stop()).catch(() => undefined);
    this.#log.info({ task: this.#name }, `${this.#name}: stopped on this replica (another one leads)`);
  }

  async close(): Promise<void> {
    this.#closed = true;
    const task = this.#current;
    this.#current = undefined;
    await this.#stopping;
    await task?.stop();
  }
}
