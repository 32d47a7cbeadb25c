/**
 * The drain's first phase (shutdownDelay): a wait that SIGINT or a second SIGTERM cuts short, so an
 * operator who insists on stopping now is not kept waiting for the load balancer.
 */

/** A wait that a second, shorter wait() (SIGINT, a second SIGTERM) cuts short. */
export class ShortenableDelay {
  #deadline = Infinity;
  #wake: (() => void) | undefined;
  #running: Promise<void> | undefined;

  wait(ms: number): Promise<void> {
    const deadline = Date.now() + ms;
    if (deadline < this.#deadline) {
      this.#deadline = deadline;
      this.#wake?.();
    }
    this.#running ??= this.#run();
    return this.#running;
  }

  async #run(): Promise<void> {
    while (Date.now() < this.#deadline) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, this.#deadline - Date.now());
        this.#wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    this.#wake = undefined;
  }
}
