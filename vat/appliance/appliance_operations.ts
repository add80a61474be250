/**
 * The long operations running for each appliance (publish, hoard, trace replay,
 * prefetch), as progress meters that the status's `operations` shows.
 *
 * @module
 */

import { type OperationProgress, type ProgressListener, ProgressMeter } from "../progress.ts";

/** Progress meters by appliance name. */
export class ApplianceOperations {
  readonly #meters = new Map<string, Set<ProgressMeter>>();
  readonly #changed: () => void;

  /** `changed` is called whenever a meter comes or goes. */
  constructor(changed: () => void) {
    this.#changed = changed;
  }

  /** Shows `meter` in `name`'s operations until `untrack`. */
  track(name: string, meter: ProgressMeter): void {
    let set = this.#meters.get(name);
    if (!set) this.#meters.set(name, set = new Set());
    set.add(meter);
    this.#changed();
  }

  untrack(name: string, meter: ProgressMeter): void {
    this.#meters.get(name)?.delete(meter);
    this.#changed();
  }

  /**
   * Runs `work` as one of `name`'s operations: shown from the moment it tells its total
   * (`onStart`) until it ends, with change events at most twice a second as it moves.
   */
  async run<T>(
    name: string,
    kind: OperationProgress["kind"],
    work: (onProgress: ProgressListener, onStart: (totalBytes: number) => void) => Promise<T>,
  ): Promise<T> {
    const meter = new ProgressMeter(kind, 0);
    let lastEvent = Date.now();
    const onProgress: ProgressListener = (p) => {
      meter.moveTo(p.doneBytes);
      if (Date.now() - lastEvent > 500) {
        lastEvent = Date.now();
        this.#changed();
      }
    };
    try {
      return await work(onProgress, (total) => {
        meter.totalBytes = total;
        this.track(name, meter);
      });
    } finally {
      this.untrack(name, meter);
    }
  }

  /** What `name`'s operations have done so far. */
  of(name: string): OperationProgress[] {
    return [...this.#meters.get(name) ?? []].map((m) => m.progress());
  }
}
