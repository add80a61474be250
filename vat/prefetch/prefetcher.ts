/**
 * The VAT's background prefetcher (docs/CACHE.md, "Prefetching"): now and then, and
 * whenever something changes (an appliance added or started, a version published),
 * it fetches the newest version of every subscribed appliance into the cache, one
 * version at a time, at "prefetch" priority and an adaptive rate capped by the
 * configured bandwidth (`vat --prefetch-limit`).
 *
 * @module
 */

import type { ChunkCache } from "../cache/chunk_cache.ts";
import { fetchPath } from "../fetch/fetch_path.ts";
import type { FetchScheduler } from "../fetch/fetch_scheduler.ts";
import { formatBytes, ProgressMeter } from "../progress.ts";
import { readBootTrace } from "../repo/boot_trace.ts";
import type { Repository, Version } from "../repo/repository.ts";
import type { AdaptiveRate } from "./adaptive_rate.ts";
import { measuredTransport, planPrefetch, prefetchPlan } from "./version_prefetch.ts";

/** A version to prefetch, opened; `close` releases its repository. */
export interface PrefetchSource {
  repo: Repository;
  version: Version;
  /** The subscription's user-disk base. */
  userBase: Version | null;
  close(): Promise<void>;
}

/** One appliance the prefetcher keeps fetched. */
export interface PrefetchTarget {
  name: string;
  /** Its newest version, or null when it should not be prefetched now (offline). */
  open(): Promise<PrefetchSource | null>;
  /** Shows a running prefetch in the appliance's status, and stops showing it. */
  track(meter: ProgressMeter): void;
  untrack(meter: ProgressMeter): void;
}

/** Options of `Prefetcher`. */
export interface PrefetcherOptions {
  cache: ChunkCache;
  scheduler: FetchScheduler;
  rate: AdaptiveRate;
  /** The appliances to keep fetched, asked at every pass. */
  targets: () => PrefetchTarget[];
  /** Time between passes (default a minute). */
  intervalMs?: number;
  /** A version is prefetched only when what is missing fits in this share of the cache. */
  maxCacheShare?: number;
  log?: (line: string) => void;
}

/** Runs passes over every target until closed. */
export class Prefetcher {
  readonly #options: PrefetcherOptions;
  readonly #abort = new AbortController();
  #timer: ReturnType<typeof setTimeout> | undefined;
  #pass: Promise<void> | null = null;
  #again = false;
  /**
   * Every chunk of versions prefetched whole, by repository id, version and user-disk
   * base: a pass checks these against the cache instead of reading the disk indexes
   * from the repository again.
   */
  readonly #complete = new Map<string, Uint8Array[]>();
  /** Versions found too big for the cache, by "name@version", said once. */
  readonly #tooBig = new Set<string>();

  constructor(options: PrefetcherOptions) {
    this.#options = options;
  }

  /** Runs a pass soon (after the current one if one runs). */
  kick(): void {
    if (this.#abort.signal.aborted) return;
    if (this.#pass) {
      this.#again = true;
      return;
    }
    clearTimeout(this.#timer);
    this.#pass = this.#runPass().finally(() => {
      this.#pass = null;
      if (this.#abort.signal.aborted) return;
      if (this.#again) {
        this.#again = false;
        this.kick();
        return;
      }
      this.#timer = setTimeout(() => this.kick(), this.#options.intervalMs ?? 60_000);
      Deno.unrefTimer(this.#timer);
    });
  }

  /** Stops: the pass in progress ends after its requests in flight. */
  async close(): Promise<void> {
    this.#abort.abort();
    clearTimeout(this.#timer);
    await this.#pass;
  }

  async #runPass(): Promise<void> {
    for (const target of this.#options.targets()) {
      if (this.#abort.signal.aborted) return;
      try {
        await this.#prefetch(target);
      } catch (err) {
        this.#log(`prefetch ${target.name}: ${(err as Error).message}`);
      }
    }
  }

  async #prefetch(target: PrefetchTarget): Promise<void> {
    const { cache, scheduler, rate } = this.#options;
    const source = await target.open();
    if (!source) return;
    try {
      const { repo, version, userBase } = source;
      const id = `${repo.config.id}@${version.number}/${userBase?.number ?? "-"}`;
      const complete = this.#complete.get(id);
      if (complete && complete.every((hash) => cache.has(hash))) return;
      const trace = await readBootTrace(repo, version).catch(() => null);
      const plan = await planPrefetch(repo, version, userBase, trace, cache);
      if (plan.hashes.length === 0) {
        this.#complete.set(id, plan.all);
        return;
      }
      const missing = plan.totalBytes - plan.cachedBytes;
      const room = cache.budgetBytes * (this.#options.maxCacheShare ?? 0.5);
      if (missing > room) {
        const id = `${target.name}@${version.number}`;
        if (!this.#tooBig.has(id)) {
          this.#tooBig.add(id);
          this.#log(
            `prefetch ${target.name}: version ${version.number} lacks ${formatBytes(missing)}, ` +
              `more than the prefetcher may use of the ${formatBytes(cache.budgetBytes)} cache`,
          );
        }
        return;
      }
      const meter = new ProgressMeter("prefetch", plan.totalBytes, plan.cachedBytes);
      target.track(meter);
      try {
        await prefetchPlan({
          plan,
          source: fetchPath({
            cache,
            scheduler,
            priority: "prefetch",
            transport: measuredTransport((hash) => repo.readStoredChunk(hash), rate),
          }),
          rate,
          meter,
          signal: this.#abort.signal,
        });
        if (!this.#abort.signal.aborted) this.#complete.set(id, plan.all);
      } finally {
        target.untrack(meter);
      }
    } finally {
      await source.close();
    }
  }

  #log(line: string): void {
    (this.#options.log ?? ((l: string) => console.error(l)))(line);
  }
}
