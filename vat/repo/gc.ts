/**
 * `collectGarbage`: deletes all but the newest versions and reclaims the chunks and
 * index objects no remaining version references, without a lock that stops
 * publishers (docs/FORMAT.md, "Garbage collection"):
 *
 * 1. old versions are deleted, manifest first, so they stop being committed;
 * 2. the run announces itself (`activity/gc-*`), which fixes its start on the
 *    store's clock;
 * 3. if a publisher is running (a live `activity/publish-*`), the sweep is left to a
 *    later run: that publisher may be reusing chunks only it knows it needs;
 * 4. otherwise every chunk not referenced by a committed version, and written before
 *    the run started, is deleted. A publisher that starts after step 3 sees this
 *    run's announcement before it commits, waits for it, and re-checks its chunks.
 *
 * @module
 */

import { PermanentError, UsageError } from "../errors.ts";
import { announce, listActivities, storeNow } from "./activity.ts";
import { toHex } from "./chunk_codec.ts";
import { traceKey } from "./boot_trace.ts";
import { manifestKey, type Repository } from "./repository.ts";

/** What a gc run did. */
export interface GcReport {
  deletedVersions: number[];
  keptVersions: number[];
  deletedChunks: number;
  reclaimedBytes: number;
  keptChunks: number;
  /** Temporary files of killed writes removed (file stores only). */
  temporaryFiles?: number;
  /** True when a running publisher made this run leave the sweep to a later one. */
  sweepPostponed: boolean;
}

/** Keeps the newest `keep` versions and reclaims what nothing references. */
/** How old a temporary file must be before gc takes it for a killed write's. */
export const TEMPORARY_FILE_AGE_MS = 60 * 60_000;

export async function collectGarbage(
  repo: Repository,
  options: { keep: number; dryRun?: boolean },
): Promise<GcReport> {
  if (!Number.isInteger(options.keep) || options.keep < 1) {
    throw new UsageError("--keep must be a whole number of at least 1");
  }
  if (repo.config.kind === "data") {
    // Its chunks are shared by every subscription's series, and undo may name any
    // version: a data repository keeps everything (docs/BACKUP.md).
    throw new UsageError(
      `${repo.store.location} is a data repository; gc does not delete users' backups`,
    );
  }
  if (repo.config.kind === "directory") {
    throw new UsageError(`${repo.store.location} is a directory of users; it has nothing to gc`);
  }
  const store = repo.store;
  if (!store.canList) {
    throw new PermanentError(
      `gc needs a store that can list objects; ${store.location} cannot (run gc on the directory it serves, or through vat serve or S3)`,
    );
  }
  const versions = await repo.listVersions();
  const doomed = versions.slice(0, Math.max(0, versions.length - options.keep));
  const report: GcReport = {
    deletedVersions: doomed,
    keptVersions: versions.slice(doomed.length),
    deletedChunks: 0,
    reclaimedBytes: 0,
    keptChunks: 0,
    sweepPostponed: false,
  };

  // Every kept version must verify: a chunk it needs is never judged unreferenced
  // because its manifest could not be read.
  const live = new Set<string>();
  const liveObjects = new Set<string>();
  for (const n of report.keptVersions) await _markLive(repo, n, live, liveObjects);
  if (options.dryRun) return await _countSweep(repo, live, report, null);

  for (const n of doomed) await store.delete(manifestKey(n));

  const run = await announce(store, "gc");
  try {
    const now = await storeNow(store, run);
    const publishers = (await listActivities(store, now)).filter((a) => a.kind === "publish");
    if (publishers.length > 0) {
      report.sweepPostponed = true;
      return report;
    }
    // Versions committed since the listing above are live too.
    for (const n of await repo.listVersions()) {
      if (report.keptVersions.includes(n)) continue;
      report.keptVersions.push(n);
      await _markLive(repo, n, live, liveObjects);
    }
    await _countSweep(repo, live, report, run.startedMs);
    // Objects under versions/ that no committed manifest names: deleted versions,
    // indexes of publishers that lost a commit race or were killed.
    for await (const key of store.list("versions/")) {
      if (liveObjects.has(key)) continue;
      const info = await store.stat(key);
      if (info && info.modifiedMs < run.startedMs) await store.delete(key);
    }
    // What killed writers left in a file store (temporary files of unfinished writes).
    report.temporaryFiles = await store.sweepTemporary?.(TEMPORARY_FILE_AGE_MS) ?? 0;
    return report;
  } finally {
    await run.end();
  }
}

/** Adds version `n`'s chunks to `live` and its objects to `liveObjects`. */
async function _markLive(
  repo: Repository,
  n: number,
  live: Set<string>,
  liveObjects: Set<string>,
): Promise<void> {
  const { manifest } = await repo.readVersion(n);
  liveObjects.add(manifestKey(n));
  liveObjects.add(traceKey(n));
  for (const disk of Object.values(manifest.disks)) {
    liveObjects.add(disk.index.key);
    const index = await repo.readDiskIndex(disk.index);
    for (const [, hash] of index.dataChunks()) live.add(toHex(hash));
  }
}

/** Counts (and with `beforeMs`, deletes) chunks not in `live` written before `beforeMs`. */
async function _countSweep(
  repo: Repository,
  live: Set<string>,
  report: GcReport,
  beforeMs: number | null,
): Promise<GcReport> {
  for await (const key of repo.store.list("chunks/")) {
    const id = key.slice(key.lastIndexOf("/") + 1);
    if (live.has(id)) {
      report.keptChunks++;
      continue;
    }
    const info = await repo.store.stat(key);
    if (!info) continue;
    if (beforeMs !== null) {
      if (info.modifiedMs >= beforeMs) continue; // written during this run: a publisher's
      await repo.store.delete(key);
    }
    report.deletedChunks++;
    report.reclaimedBytes += info.sizeBytes;
  }
  return report;
}
