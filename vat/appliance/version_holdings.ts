/**
 * How much of a version a VAT holds: the distinct chunks a start of it reads (every
 * disk but the user disk, plus the subscription's user-disk base) and how many bytes
 * of them the cache has. Both are asked often (every status), so the chunk lists are
 * kept (a version never changes) and the cached count is trusted for a few seconds
 * while nothing changed the cache in bulk (`changed()`).
 *
 * @module
 */

import type { ChunkCache } from "../cache/chunk_cache.ts";
import { toHex } from "../repo/chunk_codec.ts";
import type { Repository, Version } from "../repo/repository.ts";
import type { ApplianceRecord } from "./state_db.ts";

/** The distinct chunks one version needs on this VAT. */
export interface VersionChunks {
  hashes: Uint8Array[];
  lengths: number[];
  totalBytes: number;
}

/** How much of a version is cached. */
export interface Holding {
  cachedBytes: number;
  totalBytes: number;
  version: number;
}

/** How long a counted number of cached bytes is trusted while nothing changed. */
const _HOLDING_TTL_MS = 5000;
/** Chunk lists kept (versions are immutable; the map only needs a bound). */
const _KEPT_CHUNK_SETS = 16;

/** The chunk lists and cached byte counts of the appliances' versions. */
export class VersionHoldings {
  readonly #cache: ChunkCache;
  readonly #chunkSets = new Map<string, VersionChunks>();
  readonly #holdings = new Map<string, { cachedBytes: number; at: number; generation: number }>();
  #generation = 0;

  constructor(cache: ChunkCache) {
    this.#cache = cache;
  }

  /** Says that the cache's content changed in bulk (a hoard, an unhoard, a run). */
  changed(): void {
    this.#generation++;
  }

  /** How many bytes of `version`'s chunks are cached (counted again after a while, or now if `fresh`). */
  async holdingOf(
    record: ApplianceRecord,
    repo: Repository,
    version: Version,
    fresh = false,
  ): Promise<Holding> {
    const key = _key(record, version);
    const chunks = await this.chunksOf(record, repo, version);
    const known = this.#holdings.get(key);
    if (
      !fresh && known && known.generation === this.#generation &&
      Date.now() - known.at < _HOLDING_TTL_MS
    ) {
      return {
        cachedBytes: known.cachedBytes,
        totalBytes: chunks.totalBytes,
        version: version.number,
      };
    }
    let cachedBytes = 0;
    for (let i = 0; i < chunks.hashes.length; i++) {
      if (this.#cache.has(chunks.hashes[i])) cachedBytes += chunks.lengths[i];
    }
    this.#holdings.set(key, { cachedBytes, at: Date.now(), generation: this.#generation });
    return { cachedBytes, totalBytes: chunks.totalBytes, version: version.number };
  }

  /**
   * The distinct chunks a start of `version` reads: every disk of it but the user
   * disk (system disk, kernel, initrd), and the user disk of the subscription's base
   * (this version's, before the first start creates the subscription).
   */
  async chunksOf(
    record: ApplianceRecord,
    repo: Repository,
    version: Version,
  ): Promise<VersionChunks> {
    const key = _key(record, version);
    const known = this.#chunkSets.get(key);
    if (known) return known;
    const refs = Object.entries(version.manifest.disks)
      .filter(([disk]) => disk !== "user").map(([, entry]) => entry.index);
    const baseNumber = record.userBaseVersion ?? version.number;
    const base = baseNumber === version.number ? version : await repo.readVersion(baseNumber);
    if (base.manifest.disks.user) refs.push(base.manifest.disks.user.index);
    const seen = new Set<string>();
    const out: VersionChunks = { hashes: [], lengths: [], totalBytes: 0 };
    for (const ref of refs) {
      const index = await repo.readDiskIndex(ref);
      for (let i = 0; i < index.count; i++) {
        const hash = index.hash(i);
        if (!hash) continue; // an all-zero chunk is not stored
        const id = toHex(hash);
        if (seen.has(id)) continue;
        seen.add(id);
        out.hashes.push(hash.slice());
        out.lengths.push(index.chunkLength(i));
        out.totalBytes += index.chunkLength(i);
      }
    }
    if (this.#chunkSets.size >= _KEPT_CHUNK_SETS) this.#chunkSets.clear();
    this.#chunkSets.set(key, out);
    return out;
  }
}

function _key(record: ApplianceRecord, version: Version): string {
  return `${record.repo}\n${version.number}\n${record.userBaseVersion ?? version.number}`;
}
