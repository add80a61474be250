/**
 * The coalescing layer of the fetch path (docs/CACHE.md, "The fetch path"): concurrent
 * fetches of one chunk become one request. Only a fetch that is running can be joined:
 * the chunk source registers a fetch here when the scheduler lets it start, never
 * while it waits its turn, so a demand read never waits behind a queued prefetch of
 * the same chunk (the priority inversion this order avoids).
 *
 * @module
 */

/** Running tasks by key; a task's joiners get its result or its failure. */
export class Coalescer<T> {
  readonly #running = new Map<string, Promise<T>>();

  /** The task running for `key`, if one is. */
  running(key: string): Promise<T> | undefined {
    return this.#running.get(key);
  }

  /** Joins the task running for `key`, or starts `task` as it; forgotten once it settles. */
  run(key: string, task: () => Promise<T>): Promise<T> {
    let pending = this.#running.get(key);
    if (!pending) {
      pending = task().finally(() => this.#running.delete(key));
      this.#running.set(key, pending);
    }
    return pending;
  }

  /** Tasks running now. */
  get size(): number {
    return this.#running.size;
  }
}
