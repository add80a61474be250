/**
 * The access heat map of a running appliance: for each disk, region by region, how
 * much of it the version stores (chunks that are not all zeroes), how much of that
 * the cache holds now, what the guest read and wrote, what had to be fetched, and
 * where the version's boot trace reads. The answer to "what does my appliance actually
 * touch at boot?", drawn by the appliance page and printed by `vat stats`.
 *
 * @module
 */

import type { AccessCounts } from "../disk/access_map.ts";
import type { BootTrace } from "../repo/boot_trace.ts";
import type { DiskAccess } from "./appliance_run.ts";

/** One disk's heat map. */
export interface DiskHeatMap extends AccessCounts {
  /** The disk's name in the version (`system`, `user`). */
  disk: string;
  regions: number;
  /** Chunks per region that hold data (all-zero chunks are never stored or fetched). */
  storedChunks: number[];
  /** Of those, the chunks the cache holds now. */
  cachedChunks: number[];
  /** Chunks per region that the version's boot trace reads. */
  traceChunks: number[];
}

/** An appliance's heat map: one entry per disk while it runs, none otherwise. */
export interface ApplianceHeatMap {
  name: string;
  /** The running version, or null when the appliance is not running. */
  version: number | null;
  disks: DiskHeatMap[];
}

/** How long a disk's cache coverage is reused while nothing was fetched for it. */
const _COVERAGE_TTL_MS = 5000;

/**
 * Builds heat maps of one run's disks. Counting what the cache holds asks it about
 * every chunk (a query each), so that part is kept while the disk fetched nothing new
 * and for at most a few seconds (background prefetch fills the cache unseen here).
 */
export class HeatMaps {
  readonly #access: ReadonlyMap<string, DiskAccess>;
  readonly #trace: BootTrace | null;
  readonly #coverage = new Map<
    string,
    { stored: number[]; cached: number[]; fetched: number; at: number }
  >();
  readonly #traceChunks = new Map<string, number[]>();

  constructor(access: ReadonlyMap<string, DiskAccess>, trace: BootTrace | null) {
    this.#access = access;
    this.#trace = trace;
  }

  /** Every disk's map now. */
  disks(): DiskHeatMap[] {
    return [...this.#access].map(([disk, access]) => this.#disk(disk, access));
  }

  #disk(disk: string, access: DiskAccess): DiskHeatMap {
    const { map } = access;
    const counts = map.counts();
    const fetched = counts.fetchedChunks.reduce((a, b) => a + b, 0);
    let coverage = this.#coverage.get(disk);
    if (!coverage || coverage.fetched !== fetched || Date.now() - coverage.at > _COVERAGE_TTL_MS) {
      const stored = new Array(map.regions).fill(0);
      const cached = new Array(map.regions).fill(0);
      const { index } = access.base;
      for (let chunk = 0; chunk < index.count; chunk++) {
        const hash = index.hash(chunk);
        if (!hash) continue;
        const region = map.regionOfChunk(chunk);
        stored[region]++;
        if (access.cache.has(hash)) cached[region]++;
      }
      coverage = { stored, cached, fetched, at: Date.now() };
      this.#coverage.set(disk, coverage);
    }
    let traceChunks = this.#traceChunks.get(disk);
    if (!traceChunks) {
      traceChunks = new Array(map.regions).fill(0);
      const number = this.#trace?.disks.indexOf(disk) ?? -1;
      const seen = new Set<number>();
      for (const [d, chunk] of number >= 0 ? this.#trace!.order : []) {
        if (d !== number || seen.has(chunk) || chunk * map.chunkBytes >= map.sizeBytes) continue;
        seen.add(chunk);
        traceChunks[map.regionOfChunk(chunk)]++;
      }
      this.#traceChunks.set(disk, traceChunks);
    }
    return {
      disk,
      regions: map.regions,
      ...counts,
      storedChunks: coverage.stored,
      cachedChunks: coverage.cached,
      traceChunks,
    };
  }
}
