/**
 * A version's disk read through the chunk cache: the base of every export. Reads are
 * served chunk by chunk from the cache, which fetches what it lacks from the
 * repository; all-zero chunks are never fetched.
 *
 * @module
 */

import { PermanentError } from "../errors.ts";
import type { ChunkCache, ChunkFetcher } from "../cache/chunk_cache.ts";
import type { DiskIndex } from "../repo/disk_index.ts";
import { type BlockDevice, checkRange, settleAll } from "./block_device.ts";

/**
 * Observes every chunk read (boot traces, access profiles, statistics): the chunk's
 * number, and whether the read found it missing from the cache (so it was fetched).
 * All-zero chunks are never missing.
 */
export type ChunkReadObserver = (chunk: number, missed: boolean) => void;

/** A read-only `BlockDevice` over a disk index, a cache and a repository. */
export class ChunkedDisk implements BlockDevice {
  readonly sizeBytes: number;
  readonly readOnly = true;
  readonly preferredBlockBytes: number;
  readonly index: DiskIndex;
  readonly #cache: ChunkCache;
  readonly #fetch: ChunkFetcher;
  readonly #observers = new Set<ChunkReadObserver>();

  constructor(index: DiskIndex, cache: ChunkCache, fetch: ChunkFetcher) {
    this.index = index;
    this.sizeBytes = index.sizeBytes;
    this.preferredBlockBytes = index.chunkBytes;
    this.#cache = cache;
    this.#fetch = fetch;
  }

  /** Calls `observer` with every chunk read from now on, until the returned function is called. */
  observe(observer: ChunkReadObserver): () => void {
    this.#observers.add(observer);
    return () => this.#observers.delete(observer);
  }

  /** Chunk `i` whole (a copy the caller may keep), or null when it is all zeroes. */
  async readChunk(i: number): Promise<Uint8Array | null> {
    const hash = this.index.hash(i);
    if (this.#observers.size > 0) this.#notify(i, hash !== null && !this.#cache.has(hash));
    if (!hash) return null;
    return await this.#cache.get(hash, this.#fetch);
  }

  async read(offset: number, into: Uint8Array): Promise<void> {
    checkRange(this.sizeBytes, offset, into.length);
    const chunkBytes = this.index.chunkBytes;
    const first = Math.floor(offset / chunkBytes);
    const last = Math.floor((offset + into.length - 1) / chunkBytes);
    let misses: Promise<void>[] | undefined;
    for (let i = first; i <= last && into.length > 0; i++) {
      const chunkStart = i * chunkBytes;
      const from = Math.max(offset, chunkStart);
      const to = Math.min(offset + into.length, chunkStart + chunkBytes);
      const target = into.subarray(from - offset, to - offset);
      const hash = this.index.hash(i);
      if (!hash) {
        target.fill(0);
        if (this.#observers.size > 0) this.#notify(i, false);
      } else if (this.#cache.readCached(hash, from - chunkStart, target)) {
        if (this.#observers.size > 0) this.#notify(i, false);
      } else {
        if (this.#observers.size > 0) this.#notify(i, true);
        (misses ??= []).push(
          this.#cache.get(hash, this.#fetch).then((data) => {
            target.set(data.subarray(from - chunkStart, to - chunkStart));
          }),
        );
      }
    }
    if (misses) await settleAll(misses);
  }

  write(): Promise<void> {
    return Promise.reject(new PermanentError("this disk is read-only"));
  }

  flush(): Promise<void> {
    return Promise.resolve();
  }

  trim(): Promise<void> {
    return this.write();
  }

  writeZeroes(): Promise<void> {
    return this.write();
  }

  close(): Promise<void> {
    return Promise.resolve();
  }

  #notify(chunk: number, missed: boolean): void {
    for (const observer of this.#observers) observer(chunk, missed);
  }
}
