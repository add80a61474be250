/**
 * A run whose repository traffic the VAT's fetch scheduler orders (docs/CACHE.md,
 * "Prefetching"): the guest's reads as demand fetches, and the version's boot trace
 * replayed ahead of them when it has one and the guest boots (not when it resumes:
 * a resumed guest is past its boot, and the trace would fetch what it may never read).
 *
 * @module
 */

import type { ChunkCache } from "../cache/chunk_cache.ts";
import type { FetchScheduler } from "../fetch/fetch_scheduler.ts";
import { startTraceReplay, type TraceReplay } from "../prefetch/trace_replay.ts";
import { type ApplianceRun, type RunSpec, startApplianceRun } from "./appliance_run.ts";

/**
 * Starts `spec` with its fetches through `scheduler`; `onReplay` hears of a replay that
 * starts (its meter shows in the appliance's operations until it is done).
 */
export async function startScheduledRun(
  spec: RunSpec,
  scheduler: FetchScheduler,
  cache: ChunkCache,
  onReplay?: (replay: TraceReplay) => void,
): Promise<ApplianceRun> {
  const { repo, version } = spec;
  const replay = spec.resumeFrom
    ? null
    : await startTraceReplay({ repo, version, cache, scheduler });
  if (replay) onReplay?.(replay);
  try {
    const run = await startApplianceRun({
      ...spec,
      scheduler,
      onDisk: replay ? (disk, base) => replay.attach(disk, base) : undefined,
    });
    replay?.allAttached();
    const stop = () => replay?.stop();
    run.ended.then(stop, stop);
    return run;
  } catch (err) {
    replay?.stop();
    throw err;
  }
}
