/**
 * The trace replayed in compressed time against vat's backup over the emulated uplink:
 * what a user would see. Snapshots are taken as the daemon takes them (every
 * `snapshotIntervalMs` of simulated time while the appliance runs, and when the user
 * goes idle; the last one when they log off), the uploader drains the outbox in the
 * background, and the guest's writes land in the user disk at their simulated times.
 *
 * Simulated time is wall time plus the stretches skipped: whenever nothing is being
 * snapshotted or uploaded, the clock jumps to the next event, since nothing could
 * happen in between. While the backup works, simulated time runs at wall speed, so the
 * upload sees the link's true rate and guest writes land while it runs.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { chunkKey } from "../../vat/repo/chunk_codec.ts";
import type { QueuedSnapshot, SnapshotReason } from "../../vat/backup/outbox.ts";
import type { LinkBytes } from "./link_store.ts";
import { processCpuSeconds, type VatRig, VM } from "./rig.ts";
import { payloadOf, type Trace } from "./trace.ts";

/** The state of the backup when the user went idle. */
export interface IdlePoint {
  atMs: number;
  last: boolean;
  /** What `vat backup status` shows right after the idle snapshot. */
  pendingBytes: number;
  /** The same, counted independently: queued objects not yet in the repository, plus unsnapshotted changes. */
  unsentBytes: number;
  queuedSnapshots: number;
  /** Pending right after the last burst before it (five minutes earlier, no idle snapshot yet). */
  pendingAtLastInputBytes: number;
  /** Simulated seconds until nothing was left to upload; null when the user came back first. */
  drainS: number | null;
}

/** What the live replay measured. */
export interface LiveResult {
  idlePoints: IdlePoint[];
  sent: LinkBytes;
  snapshots: number;
  /** Sum of the snapshots' changed bytes (chunks whose content changed). */
  snapshotChangedBytes: number;
  /** Sealed bytes of the final content of every chunk the session changed: what one
   * backup of the end state alone would have uploaded. */
  endStateSealedBytes: number;
  simulatedS: number;
  wallS: number;
  cpuS: number;
  /** The guest's writes: bytes, and the wall time spent in them (backup running alongside). */
  guestWriteBytes: number;
  guestWriteS: number;
}

/** Replays `trace`'s session on `rig` (opened over the prepared state). */
export async function replayLive(
  rig: VatRig,
  trace: Trace,
  options: { snapshotIntervalMs: number; dirtyChunks: number[]; log: (msg: string) => void },
): Promise<LiveResult> {
  const { overlay, backup, link } = rig;
  const startIndex = backup.outbox.committedIndex();
  const clock = new _SimClock();
  const errors: unknown[] = [];
  let snapshotsRunning = 0;
  let uploadsQueued = 0;
  let uploadChain: Promise<void> = Promise.resolve();
  let snapshots = 0;
  let changedBytes = 0;
  const busy = () => snapshotsRunning > 0 || uploadsQueued > 0;

  const kickUpload = () => {
    uploadsQueued++;
    uploadChain = uploadChain.then(() => backup.upload()).catch((err) => void errors.push(err))
      .finally(() => uploadsQueued--);
  };
  const snapshot = async (reason: SnapshotReason): Promise<QueuedSnapshot | null> => {
    snapshotsRunning++;
    try {
      const queued = await backup.snapshot(overlay, reason, VM);
      if (queued) {
        snapshots++;
        changedBytes += queued.changedBytes;
      }
      return queued;
    } finally {
      kickUpload();
      snapshotsRunning--;
    }
  };

  const idlePoints: IdlePoint[] = [];
  const draining: IdlePoint[] = [];
  const noteDrained = () => {
    if (busy()) return;
    for (const p of draining.splice(0)) p.drainS = (clock.nowMs() - p.atMs) / 1000;
  };
  /** Lets simulated time reach `atMs`: at wall speed while the backup works, else at once. */
  const advanceTo = async (atMs: number) => {
    for (;;) {
      _throwFirst(errors);
      noteDrained();
      const now = clock.nowMs();
      if (now >= atMs) return;
      if (!busy()) return clock.skipTo(atMs);
      await _sleep(Math.min(atMs - now, 20));
    }
  };

  const ticks: number[] = [];
  const endMs = trace.events[trace.events.length - 1].atMs;
  for (let t = options.snapshotIntervalMs; t < endMs; t += options.snapshotIntervalMs) {
    ticks.push(t);
  }
  const cpu0 = await processCpuSeconds();
  const wall0 = performance.now();
  let tick = 0;
  let guestWriteMs = 0;
  let guestWriteBytes = 0;
  let pendingAtLastInput = 0;
  for (const event of trace.events) {
    while (tick < ticks.length && ticks[tick] < event.atMs) {
      await advanceTo(ticks[tick++]);
      snapshot("periodic").catch((err) => void errors.push(err));
    }
    await advanceTo(event.atMs);
    if (event.type === "burst") {
      draining.length = 0; // the user is back: those idle points never drained
      for (const w of event.writes) {
        const payload = payloadOf(w);
        const t0 = performance.now();
        await overlay.write(w.offsetBytes, payload);
        guestWriteMs += performance.now() - t0;
        guestWriteBytes += payload.length;
      }
      pendingAtLastInput = backup.status(overlay.dirtyBytes()).pendingBytes;
      continue;
    }
    await snapshot(event.type === "end" ? "stop" : "now");
    const point: IdlePoint = {
      atMs: event.atMs,
      last: event.type === "end",
      pendingBytes: backup.status(overlay.dirtyBytes()).pendingBytes,
      unsentBytes: await _unsentBytes(rig),
      queuedSnapshots: backup.outbox.queued().length,
      pendingAtLastInputBytes: pendingAtLastInput,
      drainS: null,
    };
    idlePoints.push(point);
    draining.push(point);
    options.log(
      `  ${(event.atMs / 3_600_000).toFixed(2)} h simulated, ` +
        `${((performance.now() - wall0) / 1000).toFixed(0)} s wall: user idle, ` +
        `${(point.pendingBytes / 1e6).toFixed(2)} MB pending`,
    );
  }
  // The user logged off: the VAT stays up until everything is uploaded.
  await advanceTo(Infinity);
  noteDrained();
  _throwFirst(errors);
  const wallS = (performance.now() - wall0) / 1000;
  const cpuS = (await processCpuSeconds()) - cpu0;

  let endStateSealedBytes = 0;
  const codec = rig.data.root.codec;
  for (const i of options.dirtyChunks) {
    const content = await overlay.readChunk(i);
    if (!content) continue;
    const name = codec.nameOf(content);
    const before = startIndex?.hash(i);
    if (before && Buffer.from(before).equals(name)) continue;
    endStateSealedBytes += (await codec.encode(content, name)).length;
  }
  return {
    idlePoints,
    sent: { ...link.sent },
    snapshots,
    snapshotChangedBytes: changedBytes,
    endStateSealedBytes,
    simulatedS: clock.nowMs() / 1000,
    wallS,
    cpuS,
    guestWriteBytes,
    guestWriteS: guestWriteMs / 1000,
  };
}

/** Objects of queued snapshots that the repository lacks, plus changes not yet snapshotted. */
async function _unsentBytes(rig: VatRig): Promise<number> {
  const seen = new Set<string>();
  let bytes = rig.overlay.dirtyBytes();
  for (const snapshot of rig.backup.outbox.queued()) {
    for (const id of snapshot.objects) {
      if (seen.has(id)) continue;
      seen.add(id);
      if (await rig.link.stat(chunkKey(id))) continue;
      try {
        bytes += (await Deno.stat(`${rig.backup.outbox.dir}/objects/${id}`)).size;
      } catch (err) {
        // Uploaded and dropped from the outbox between the two looks.
        if (!(err instanceof Deno.errors.NotFound)) throw err;
      }
    }
  }
  return bytes;
}

class _SimClock {
  readonly #startMs = performance.now();
  #skippedMs = 0;

  nowMs(): number {
    return performance.now() - this.#startMs + this.#skippedMs;
  }

  skipTo(atMs: number): void {
    const now = this.nowMs();
    if (atMs > now && Number.isFinite(atMs)) this.#skippedMs += atMs - now;
  }
}

function _throwFirst(errors: unknown[]): void {
  if (errors.length) throw errors[0];
}

function _sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
