/**
 * Prefetching one version in the background (docs/CACHE.md, "Prefetching"): every
 * distinct chunk a start of the version reads, the access profile's chunks first (most
 * read first), then the rest disk by disk in disk order, skipping what the cache holds
 * (so a chunk shared with the previous version is never fetched twice). Requests go
 * through the fetch path at "prefetch" priority, paced by the adaptive rate, which
 * learns from each request's latency.
 *
 * @module
 */

import type { ChunkCache } from "../cache/chunk_cache.ts";
import type { FetchPath } from "../fetch/fetch_path.ts";
import type { ChunkTransport } from "../fetch/transport.ts";
import type { ProgressMeter } from "../progress.ts";
import type { BootTrace } from "../repo/boot_trace.ts";
import { toHex } from "../repo/chunk_codec.ts";
import type { DiskIndex } from "../repo/disk_index.ts";
import type { Repository, StoredChunk, Version } from "../repo/repository.ts";
import type { AdaptiveRate } from "./adaptive_rate.ts";

/** The chunks to prefetch, in order. */
export interface PrefetchPlan {
  hashes: Uint8Array[];
  lengths: number[];
  /** Bytes of every distinct chunk of the version (the plan's and those already cached). */
  totalBytes: number;
  /** Of those, bytes already cached when the plan was made. */
  cachedBytes: number;
  /** Every distinct chunk of the version, cached or not. */
  all: Uint8Array[];
}

/** Boot files first, then the system disk, then the user disk; others after, by name. */
const _DISK_ORDER = ["kernel", "initrd", "system", "user"];

/**
 * The plan for `version` (with the user disk of `userBase`, the subscription's base,
 * or of the version itself before the first start) and its trace's profile if any.
 */
export async function planPrefetch(
  repo: Repository,
  version: Version,
  userBase: Version | null,
  trace: BootTrace | null,
  cache: ChunkCache,
): Promise<PrefetchPlan> {
  const names = Object.keys(version.manifest.disks).filter((d) => d !== "user");
  const disks = new Map<string, DiskIndex>();
  for (const name of names) {
    disks.set(name, await repo.readDiskIndex(version.manifest.disks[name].index));
  }
  const userEntry = (userBase ?? version).manifest.disks.user;
  if (userEntry) disks.set("user", await repo.readDiskIndex(userEntry.index));
  const order = [...disks.keys()].sort((a, b) => _rank(a) - _rank(b) || a.localeCompare(b));

  const plan: PrefetchPlan = {
    hashes: [],
    lengths: [],
    totalBytes: 0,
    cachedBytes: 0,
    all: [],
  };
  const seen = new Set<string>();
  const add = (index: DiskIndex, chunk: number) => {
    if (chunk >= index.count) return;
    const hash = index.hash(chunk);
    if (!hash) return;
    const id = toHex(hash);
    if (seen.has(id)) return;
    seen.add(id);
    plan.all.push(hash.slice());
    const length = index.chunkLength(chunk);
    plan.totalBytes += length;
    if (cache.has(hash)) {
      plan.cachedBytes += length;
      return;
    }
    plan.hashes.push(plan.all[plan.all.length - 1]);
    plan.lengths.push(length);
  };
  for (const [disk, chunk] of trace?.profile ?? []) {
    const index = disks.get(trace!.disks[disk]);
    if (index) add(index, chunk);
  }
  for (const name of order) {
    const index = disks.get(name)!;
    for (let i = 0; i < index.count; i++) add(index, i);
  }
  return plan;
}

/** What `prefetchPlan` needs. */
export interface PrefetchRun {
  plan: PrefetchPlan;
  /** The version's repository at "prefetch" priority, its transport `measuredTransport`. */
  source: FetchPath;
  rate: AdaptiveRate;
  /** Advanced by each chunk fetched (or found cached meanwhile). */
  meter?: ProgressMeter;
  signal?: AbortSignal;
}

/**
 * Fetches the plan's chunks in order, paced by `rate` and at "prefetch" priority,
 * until done or `signal` aborts. A failed fetch ends it with that error.
 */
export async function prefetchPlan(run: PrefetchRun): Promise<void> {
  const { plan, source, rate, meter, signal } = run;
  const inFlight = new Set<Promise<void>>();
  let failure: unknown = null;
  for (let i = 0; i < plan.hashes.length && !signal?.aborted && failure === null; i++) {
    const hash = plan.hashes[i];
    const length = plan.lengths[i];
    if (source.has(hash)) {
      meter?.advance(length);
      continue;
    }
    // One more than the scheduler lets run, so the next request is ready when a slot frees.
    while (inFlight.size > 2) await Promise.race(inFlight);
    await rate.pace(length, signal);
    if (signal?.aborted) break;
    const one = source.load(hash, signal).then(
      () => meter?.advance(length),
      (err) => failure ??= err,
    ).finally(() => inFlight.delete(one));
    inFlight.add(one);
  }
  await Promise.all(inFlight);
  if (failure !== null) throw failure;
}

/**
 * A transport reading chunks with `read` (`Repository.readStoredChunk`), each
 * request's latency and stored size told to `rate`: a request made, not one joined,
 * is what says something about the link.
 */
export function measuredTransport(
  read: (hash: Uint8Array) => Promise<StoredChunk>,
  rate: AdaptiveRate,
): ChunkTransport {
  return async function readMeasured(hash) {
    const started = performance.now();
    const chunk = await read(hash);
    rate.record(performance.now() - started, chunk.storedBytes);
    return chunk.plain;
  };
}

function _rank(disk: string): number {
  const i = _DISK_ORDER.indexOf(disk);
  return i < 0 ? _DISK_ORDER.length : i;
}
