/**
 * The long operations running for each appliance (publish, hoard, trace replay,
 * prefetch), as progress meters that the status's `operations` shows.
 *
 * @module
 */

import type { OperationProgress, ProgressMeter } from "../progress.ts";

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

  /** What `name`'s operations have done so far. */
  of(name: string): OperationProgress[] {
    return [...this.#meters.get(name) ?? []].map((m) => m.progress());
  }
}
