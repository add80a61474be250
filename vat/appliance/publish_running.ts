/**
 * Publishing from a running appliance (the paper's administrator at work): its system
 * disk, the base plus the overlay as the guest has it now, becomes the next version of
 * its repository, with the other disks and the VM description of the running version.
 *
 * @module
 */

import { loadSigningKey } from "../auth/signing_key.ts";
import type { ChunkCache } from "../cache/chunk_cache.ts";
import { openVersionDisk } from "../disk/version_disk.ts";
import type { ProgressListener } from "../progress.ts";
import { openStore } from "../repo/open_store.ts";
import { type DiskSource, publishDisks, type PublishResult } from "../repo/publish.ts";
import { Repository } from "../repo/repository.ts";
import type { ApplianceRun } from "./appliance_run.ts";

/**
 * Publishes `run`'s system disk to the repository at `location` with the key at
 * `keyPath`; `onStart` hears the total bytes before the first progress report.
 */
export async function publishRunning(
  run: ApplianceRun,
  location: string,
  keyPath: string,
  cache: ChunkCache,
  onProgress: ProgressListener,
  onStart: (totalBytes: number) => void,
): Promise<PublishResult> {
  const key = await loadSigningKey(keyPath);
  const store = await openStore(location, { signingKey: key });
  try {
    const repo = await Repository.open(store);
    const sources: [string, DiskSource][] = [["system", run.system.device]];
    for (const disk of Object.keys(run.version.manifest.disks)) {
      if (disk === "system") continue;
      const base = await openVersionDisk(repo, run.version, disk, cache);
      sources.push([disk, base.device]);
    }
    await run.system.device.flush();
    onStart(sources.reduce((n, [, s]) => n + s.sizeBytes, 0));
    return await publishDisks(repo, sources, run.version.manifest.vm, { key, onProgress });
  } finally {
    await store.close();
  }
}
