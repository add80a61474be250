/**
 * Recording a version's boot trace (`vat trace record`): the version boots in QEMU
 * exactly as a VAT boots it (system disk under a fresh overlay, the version's own
 * user disk, boot files), from an empty cache in a scratch directory, until its console
 * shows the line the administrator names or a time limit passes; every chunk read
 * until then is recorded (docs/FORMAT.md, "Boot traces").
 *
 * @module
 */

import { ChunkCache } from "../cache/chunk_cache.ts";
import type { ChunkedDisk } from "../disk/chunked_disk.ts";
import { startApplianceRun } from "./appliance_run.ts";
import type { TraceRecording } from "../repo/boot_trace.ts";
import type { Repository, Version } from "../repo/repository.ts";
import { TraceRecorder } from "../prefetch/trace_recorder.ts";
import { TimeoutError } from "../errors.ts";

/** What to record. */
export interface TraceRecordOptions {
  repo: Repository;
  version: Version;
  /** Stop at the first console line containing this text (null: at the time limit). */
  until: string | null;
  timeoutMs: number;
}

/** One recorded boot. */
export interface RecordedBoot {
  recording: TraceRecording;
  /** Whether the `until` line appeared (false: the time limit ended the recording). */
  reachedLine: boolean;
  elapsedMs: number;
  /** Bytes of the chunks first read (all-zero chunks count 0). */
  bytes: number;
}

/** Boots `options.version` from an empty scratch cache and records its reads. */
export async function recordBootTrace(options: TraceRecordOptions): Promise<RecordedBoot> {
  const { repo, version } = options;
  const scratch = await Deno.makeTempDir({ prefix: "vat-trace-" });
  const cache = await ChunkCache.open({ dir: `${scratch}/cache`, budgetBytes: 2 ** 50 });
  const recorder = new TraceRecorder();
  const disks = new Map<string, ChunkedDisk>();
  try {
    const started = performance.now();
    const run = await startApplianceRun({
      repo,
      version,
      userDisk: { repo, version, cache },
      cache,
      dirs: { dir: `${scratch}/appliance`, runDir: `${scratch}/run` },
      onDisk: (name, disk) => {
        disks.set(name, disk);
        recorder.attach(name, disk);
      },
    });
    let reachedLine = false;
    try {
      const pattern = options.until === null
        ? /(?!)/ // never matches: the time limit ends the recording
        : new RegExp(options.until.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
      await run.vm.console.waitForLine(pattern, { timeoutMs: options.timeoutMs });
      reachedLine = true;
    } catch (err) {
      if (options.until !== null && !(err instanceof TimeoutError)) throw err;
    } finally {
      await run.vm.kill();
      await run.ended;
    }
    const recording = recorder.stop();
    let bytes = 0;
    for (const [name, chunk] of recording.order) {
      const index = disks.get(name)!.index;
      if (index.hash(chunk)) bytes += index.chunkLength(chunk);
    }
    return { recording, reachedLine, elapsedMs: performance.now() - started, bytes };
  } finally {
    await cache.close();
    await Deno.remove(scratch, { recursive: true }).catch(() => {});
  }
}
