/**
 * One disk of one version as the VAT exports it: the version's disk read through the
 * chunk cache (demand-fetched from the repository through the fetch path), under a
 * local copy-on-write overlay when the disk is writable.
 *
 * @module
 */

import type { ChunkCache } from "../cache/chunk_cache.ts";
import { fetchPath } from "../fetch/fetch_path.ts";
import type { FetchScheduler } from "../fetch/fetch_scheduler.ts";
import { repositoryTransport } from "../fetch/transport.ts";
import { IntegrityError, NotFoundError } from "../errors.ts";
import type { Repository, Version } from "../repo/repository.ts";
import type { BlockDevice } from "./block_device.ts";
import { ChunkedDisk } from "./chunked_disk.ts";
import { CowOverlay } from "./cow_overlay.ts";

/** How a disk's writes are kept. */
export interface VersionDiskOptions {
  /** The overlay's file; without it the disk is read-only. */
  overlayPath?: string;
  /** Start the overlay afresh (the system disk's lockdown at every boot). */
  discardOverlay?: boolean;
  /** Where the guest's fetches wait their turn, at "demand" (default: the cache's own). */
  scheduler?: FetchScheduler;
  /** How long a fetch is retried while the repository fails transiently (default 60 s). */
  retryForMs?: number;
}

/** An opened disk: the device to serve, and its layers for those who need them. */
export interface VersionDisk {
  device: BlockDevice;
  base: ChunkedDisk;
  overlay: CowOverlay | null;
}

/** Opens disk `name` of `version` through `cache`, its misses demand reads of `repo`. */
export async function openVersionDisk(
  repo: Repository,
  version: Version,
  name: string,
  cache: ChunkCache,
  options: VersionDiskOptions = {},
): Promise<VersionDisk> {
  // Own properties only: "constructor" is no disk.
  const entry = Object.hasOwn(version.manifest.disks, name)
    ? version.manifest.disks[name]
    : undefined;
  if (!entry) {
    const have = Object.keys(version.manifest.disks).join(", ");
    throw new NotFoundError(`version ${version.number} has no ${name} disk (it has: ${have})`);
  }
  const index = await repo.readDiskIndex(entry.index);
  if (index.sizeBytes !== entry.sizeBytes) {
    throw new IntegrityError(
      `the ${name} disk of version ${version.number} is ${index.sizeBytes} bytes by its index ` +
        `but ${entry.sizeBytes} by its manifest`,
    );
  }
  const source = fetchPath({
    cache,
    scheduler: options.scheduler,
    priority: "demand",
    transport: repositoryTransport(repo),
    retryForMs: options.retryForMs,
  });
  const base = new ChunkedDisk(index, source);
  if (!options.overlayPath) return { device: base, base, overlay: null };
  const overlay = await CowOverlay.open({
    base,
    path: options.overlayPath,
    discard: options.discardOverlay,
  });
  return { device: overlay, base, overlay };
}
