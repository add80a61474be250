/**
 * Records a boot trace: attached to each disk of a booting version (`ChunkedDisk`'s
 * read observer), it keeps the chunks in the order of their first read and how often
 * each was read, until it is stopped (docs/FORMAT.md, "Boot traces").
 *
 * @module
 */

import type { ChunkedDisk } from "../disk/chunked_disk.ts";
import type { TraceRecording } from "../repo/boot_trace.ts";

/** Collects one boot's chunk reads across its disks. */
export class TraceRecorder {
  readonly #order: [string, number][] = [];
  readonly #reads = new Map<string, Map<number, number>>();
  readonly #unobserve: (() => void)[] = [];
  #stopped = false;

  /** Records every chunk read of `disk`, named as in the version's manifest. */
  attach(name: string, disk: ChunkedDisk): void {
    let reads = this.#reads.get(name);
    if (!reads) this.#reads.set(name, reads = new Map());
    const counts = reads;
    this.#unobserve.push(disk.observe((chunk) => {
      if (this.#stopped) return;
      const before = counts.get(chunk) ?? 0;
      if (before === 0) this.#order.push([name, chunk]);
      counts.set(chunk, before + 1);
    }));
  }

  /** Chunks first read so far. */
  get chunks(): number {
    return this.#order.length;
  }

  /** Stops recording (later reads are not counted) and returns the recording. */
  stop(): TraceRecording {
    this.#stopped = true;
    for (const unobserve of this.#unobserve) unobserve();
    return { order: [...this.#order], reads: this.#reads };
  }
}
