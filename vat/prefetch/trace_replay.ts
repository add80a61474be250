/**
 * Boot-trace replay (docs/CACHE.md, "Prefetching"): while a version boots, fetch the
 * chunks of its boot trace in the trace's order, at most `aheadChunks` trace entries
 * ahead of the furthest entry the guest has read, so that the guest finds in the
 * cache what it is about to read and the replay never runs far down a path the guest
 * does not take. Requests go through the fetch scheduler at "trace" priority: below
 * the guest's demand reads, above background prefetch.
 *
 * @module
 */

import type { ChunkCache, ChunkFetcher } from "../cache/chunk_cache.ts";
import type { ChunkedDisk } from "../disk/chunked_disk.ts";
import { ProgressMeter } from "../progress.ts";
import { type BootTrace, readBootTrace } from "../repo/boot_trace.ts";
import type { Repository, Version } from "../repo/repository.ts";
import type { FetchScheduler } from "./fetch_scheduler.ts";

/** Trace entries the replay may run ahead of the guest (8 MiB of 64 KiB chunks). */
export const DEFAULT_AHEAD_CHUNKS = 128;
/** Replay requests the replay hands the scheduler at once. */
const _OUTSTANDING = 8;

/** Options of `TraceReplay`. */
export interface TraceReplayOptions {
  trace: BootTrace;
  cache: ChunkCache;
  /** Fetches a chunk from the repository (verified). */
  fetch: ChunkFetcher;
  scheduler: FetchScheduler;
  /** The repository's chunk size: the progress total's estimate before disks attach. */
  chunkBytes: number;
  aheadChunks?: number;
}

/**
 * One replay of a trace for one boot. Attach each disk as the run opens it (`attach`);
 * entries of a disk not attached yet wait for it, and are dropped once the run says
 * every disk is open (`allAttached`). Ends by itself once every entry is fetched or
 * found cached (`done`), or at `stop()`.
 */
export class TraceReplay {
  /** Progress in bytes of trace chunks in the cache (kind "trace"). */
  readonly meter: ProgressMeter;
  /** Resolves when the replay ends (never rejects; failed fetches are left to demand). */
  readonly done: Promise<void>;
  /** Chunk fetches the replay issued, in order (for tests and logs): "disk:chunk". */
  readonly issued: string[] = [];
  readonly #options: TraceReplayOptions;
  readonly #ahead: number;
  readonly #disks = new Map<string, ChunkedDisk>();
  /** Trace position of each (disk number, chunk): disk * 2^32 + chunk. */
  readonly #positions = new Map<number, number>();
  readonly #deferred: number[] = [];
  readonly #unobserve: (() => void)[] = [];
  #cursor = -1;
  #next = 0;
  #allAttached = false;
  #stopped = false;
  #wake: (() => void) | null = null;

  constructor(options: TraceReplayOptions) {
    this.#options = options;
    this.#ahead = options.aheadChunks ?? DEFAULT_AHEAD_CHUNKS;
    const { order } = options.trace;
    for (let i = order.length - 1; i >= 0; i--) {
      this.#positions.set(order[i][0] * 2 ** 32 + order[i][1], i);
    }
    this.meter = new ProgressMeter("trace", order.length * options.chunkBytes);
    this.done = this.#run();
  }

  /** Follows the guest's reads of `disk` and replays the trace's entries of it. */
  attach(name: string, disk: ChunkedDisk): void {
    const number = this.#options.trace.disks.indexOf(name);
    if (number < 0 || this.#stopped) return;
    this.#disks.set(name, disk);
    const base = number * 2 ** 32;
    this.#unobserve.push(disk.observe((chunk) => {
      const position = this.#positions.get(base + chunk);
      if (position !== undefined && position > this.#cursor) {
        this.#cursor = position;
        this.#poke();
      }
    }));
    this.#poke();
  }

  /** Says that every disk of the run is open: entries of other disks are dropped. */
  allAttached(): void {
    this.#allAttached = true;
    this.#poke();
  }

  /** Ends the replay (requests in flight finish). */
  stop(): void {
    this.#stopped = true;
    this.#poke();
  }

  async #run(): Promise<void> {
    const { trace, cache, scheduler, fetch, chunkBytes } = this.#options;
    const inFlight = new Set<Promise<void>>();
    try {
      while (!this.#stopped) {
        const position = this.#take();
        if (position === null) {
          if (
            this.#next >= trace.order.length && (this.#deferred.length === 0 || this.#allAttached)
          ) {
            break;
          }
          await new Promise<void>((resolve) => this.#wake = resolve);
          continue;
        }
        const [diskNumber, chunk] = trace.order[position];
        const name = trace.disks[diskNumber];
        const disk = this.#disks.get(name);
        if (!disk) {
          if (this.#allAttached) this.meter.totalBytes -= chunkBytes;
          else this.#deferred.push(position);
          continue;
        }
        const hash = chunk < disk.index.count ? disk.index.hash(chunk) : null;
        const length = hash ? disk.index.chunkLength(chunk) : 0;
        this.meter.totalBytes += length - chunkBytes;
        if (!hash) continue;
        if (cache.has(hash)) {
          this.meter.advance(length);
          continue;
        }
        while (inFlight.size >= _OUTSTANDING) await Promise.race(inFlight);
        this.issued.push(`${name}:${chunk}`);
        const one = scheduler.run("trace", async () => {
          if (!this.#stopped && !cache.has(hash)) await cache.get(hash, fetch);
        }).then(
          () => this.meter.advance(length),
          () => {}, // a failed replay fetch is the guest's demand read later, with its retries
        ).finally(() => inFlight.delete(one));
        inFlight.add(one);
      }
      await Promise.all(inFlight);
    } finally {
      for (const unobserve of this.#unobserve) unobserve();
    }
  }

  /** The next trace position to replay, or null when none may go now. */
  #take(): number | null {
    const ready = this.#deferred.findIndex((p) => this.#disks.has(this.#nameAt(p)));
    if (ready >= 0) return this.#deferred.splice(ready, 1)[0];
    if (this.#allAttached && this.#deferred.length > 0) return this.#deferred.shift()!;
    if (this.#next < this.#options.trace.order.length && this.#next <= this.#cursor + this.#ahead) {
      return this.#next++;
    }
    return null;
  }

  #nameAt(position: number): string {
    return this.#options.trace.disks[this.#options.trace.order[position][0]];
  }

  #poke(): void {
    const wake = this.#wake;
    this.#wake = null;
    wake?.();
  }
}

/** What `startTraceReplay` needs. */
export interface StartTraceReplayOptions {
  repo: Repository;
  version: Version;
  cache: ChunkCache;
  scheduler: FetchScheduler;
  aheadChunks?: number;
}

/**
 * Starts replaying `version`'s boot trace; null when it has none. A trace that cannot
 * be read or does not verify is logged and ignored: a boot never depends on it.
 */
export async function startTraceReplay(
  options: StartTraceReplayOptions,
): Promise<TraceReplay | null> {
  const { repo, version } = options;
  let trace: BootTrace | null;
  try {
    trace = await readBootTrace(repo, version);
  } catch (err) {
    console.error(`boot trace of version ${version.number}: ${(err as Error).message}; ignored`);
    return null;
  }
  if (!trace) return null;
  return new TraceReplay({
    trace,
    cache: options.cache,
    fetch: (hash) => repo.readChunk(hash),
    scheduler: options.scheduler,
    chunkBytes: repo.config.chunkSizeBytes,
    aheadChunks: options.aheadChunks,
  });
}
