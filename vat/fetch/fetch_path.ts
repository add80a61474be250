/**
 * The fetch path, built once (docs/CACHE.md, "The fetch path"): every reader of chunks
 * (the guest's demand reads, boot-trace replay, background prefetch, hoarding) gets a
 * `FetchPath` from `fetchPath()` with its priority and its repository, and reads
 * through it (`ChunkedDisk` takes one). A read goes down these layers, in this order:
 *
 * 1. **cache**: a chunk the `ChunkCache` holds intact is served from it;
 * 2. **coalesce**: a fetch of the same chunk that is running is joined;
 * 3. **priority**: the request waits its turn in the `FetchScheduler`, where its stats
 *    show it; when the turn comes it looks in the cache again (a fetch of the chunk may
 *    have ended while it waited) and joins a fetch of it that started meanwhile;
 * 4. **retry**: transient failures are retried with backoff (`retrying`);
 * 5. **transport**: one request to the repository (`repositoryTransport`);
 *
 * and the fetched chunk is stored in the cache on the way back. A fetch is registered
 * for coalescing only once it runs, so a demand read never waits behind a queued
 * prefetch of the same chunk. A request keeps its scheduler slot through its retries:
 * a repository that fails is not asked by more requests than the level allows.
 *
 * @module
 */

import type { ChunkCache } from "../cache/chunk_cache.ts";
import { toHex } from "../repo/chunk_codec.ts";
import { Coalescer } from "./coalesce.ts";
import { type FetchPriority, FetchScheduler } from "./fetch_scheduler.ts";
import { retrying } from "./retry.ts";
import type { ChunkTransport } from "./transport.ts";

/** Options of `fetchPath`. */
export interface FetchPathOptions {
  /** Where chunks are kept; fetches of one chunk are coalesced across its paths. */
  cache: ChunkCache;
  /** Where the request waits its turn: the daemon's one scheduler (default: the cache's own). */
  scheduler?: FetchScheduler;
  /** Who asks (default "demand"). */
  priority?: FetchPriority;
  /** Where a chunk the cache lacks comes from. */
  transport: ChunkTransport;
  /** How long a fetch is retried while the repository fails transiently (default 60 s). */
  retryForMs?: number;
}

/** What every path of one cache shares. */
interface _Shared {
  coalescer: Coalescer<Uint8Array>;
  /** The scheduler of paths given none (tools and tests without a daemon). */
  scheduler: FetchScheduler;
}

const _shared = new WeakMap<ChunkCache, _Shared>();

/** The fetch path of one reader: `options.cache`, backed by `options.transport`. */
export function fetchPath(options: FetchPathOptions): FetchPath {
  let shared = _shared.get(options.cache);
  if (!shared) {
    shared = { coalescer: new Coalescer(), scheduler: new FetchScheduler() };
    _shared.set(options.cache, shared);
  }
  return new FetchPath(options, shared);
}

/** Chunks read through a cache, fetched at one priority from one repository when missing. */
export class FetchPath {
  readonly cache: ChunkCache;
  readonly priority: FetchPriority;
  readonly #scheduler: FetchScheduler;
  readonly #coalescer: Coalescer<Uint8Array>;
  readonly #transport: ChunkTransport;

  /** Use `fetchPath()`: it gives the path its cache's shared state. */
  constructor(options: FetchPathOptions, shared: _Shared) {
    this.cache = options.cache;
    this.priority = options.priority ?? "demand";
    this.#scheduler = options.scheduler ?? shared.scheduler;
    this.#coalescer = shared.coalescer;
    this.#transport = retrying(options.transport, { retryForMs: options.retryForMs });
  }

  /** Whether the cache holds `hash` (not verified). */
  has(hash: Uint8Array): boolean {
    return this.cache.has(hash);
  }

  /**
   * Chunk `hash`, whole: from the cache when it holds it intact, else fetched (and
   * stored). The caller must not change the bytes (joiners of a fetch share them).
   */
  async get(hash: Uint8Array): Promise<Uint8Array> {
    const cached = this.cache.read(hash);
    if (cached) return cached;
    const id = toHex(hash);
    return await (this.#coalescer.running(id) ??
      this.#scheduler.run(this.priority, async () => {
        // A fetch of the chunk may have ended while this request waited its turn.
        return this.cache.peek(hash) ?? await this.#fetch(hash, id);
      }));
  }

  /**
   * Makes sure the cache holds `hash`, fetching it if not (prefetch, trace replay,
   * hoarding), without reading it. A request still waiting its turn when `signal`
   * aborts ends without fetching.
   */
  async load(hash: Uint8Array, signal?: AbortSignal): Promise<void> {
    if (this.cache.has(hash)) return;
    const id = toHex(hash);
    const running = this.#coalescer.running(id);
    if (running) {
      await running;
      return;
    }
    await this.#scheduler.run(this.priority, async () => {
      if (signal?.aborted || this.cache.has(hash)) return;
      // Counted as a miss (the chunk has no row), as a guest's read would be.
      if (this.cache.read(hash)) return;
      await this.#fetch(hash, id);
    });
  }

  /** Fetches `hash` and stores it, or joins a fetch of it that started meanwhile. */
  #fetch(hash: Uint8Array, id: string): Promise<Uint8Array> {
    return this.#coalescer.run(id, async () => {
      const data = await this.#transport(hash);
      this.cache.store(hash, data);
      return data;
    });
  }
}
