/**
 * The trace replayed as fast as the disk takes it, for what compressed time cannot
 * measure: the prepared state every phase starts from (the user's files, backed up
 * once by vat and by restic), the guest's write throughput with and without backup
 * running, and vat against restic at the idle points.
 *
 * @module
 */

import type { SnapshotReason } from "../../vat/backup/outbox.ts";
import type { CowOverlay } from "../../vat/disk/cow_overlay.ts";
import { FileDevice } from "../../vat/disk/file_device.ts";
import { ResticRepo, type ResticRun } from "./restic.ts";
import {
  closeVat,
  copyState,
  openDiskOnly,
  openVat,
  processCpuSeconds,
  syncFileSystem,
  treeBytes,
  type VatRig,
  VM,
} from "./rig.ts";
import { type GuestWrite, payloadOf, type Trace } from "./trace.ts";

/** What one backup cost. */
export interface BackupCost {
  /** Bytes written to the data repository (through the link). */
  bytes: number;
  /** How much the data repository's directory grew (files' sizes). */
  repoGrowthBytes: number;
  wallS: number;
  cpuS: number;
}

/** vat's and restic's backup of the same disk at the same moment. */
export interface PeerPoint {
  vat: BackupCost;
  restic: ResticRun;
}

/**
 * Writes the user's files into a new user disk and a raw image under `dir`, and backs
 * them up once with each: vat (no link cap: this stands for a disk backed up long ago)
 * and restic.
 */
export async function prepareState(
  dir: string,
  trace: Trace,
): Promise<PeerPoint> {
  await Deno.mkdir(dir, { recursive: true });
  const rig = await openVat(dir, trace.shape.diskBytes, 0);
  const raw = await FileDevice.create(`${dir}/user.raw`, trace.shape.diskBytes);
  const restic = new ResticRepo(`${dir}/restic`, `${dir}/restic-cache`);
  try {
    await _apply(trace.initialWrites, [rig.overlay, raw]);
    await restic.init();
    return await _backupBoth(dir, rig, raw, restic, "start");
  } finally {
    await raw.close();
    await closeVat(rig);
  }
}

/** The guest's write throughput over one replay of the session's writes. */
export interface ThroughputRun {
  withBackup: boolean;
  bytes: number;
  wallS: number;
  cpuS: number;
  snapshots: number;
}

/** Where in the session's write sequence the daemon would take snapshots. */
export interface SnapshotPlan {
  /** Every write of the session, in order. */
  writes: GuestWrite[];
  /** Before which write (an index into `writes`; its length for the end) each snapshot falls. */
  points: { beforeWrite: number; reason: SnapshotReason }[];
}

/** The session's writes and the snapshot points among them (periodic, and at idle points). */
export function snapshotPlan(trace: Trace, snapshotIntervalMs: number): SnapshotPlan {
  const writes: GuestWrite[] = [];
  const points: SnapshotPlan["points"] = [];
  let nextTick = snapshotIntervalMs;
  for (const event of trace.events) {
    for (; nextTick < event.atMs; nextTick += snapshotIntervalMs) {
      points.push({ beforeWrite: writes.length, reason: "periodic" });
    }
    if (event.type === "burst") writes.push(...event.writes);
    else points.push({ beforeWrite: writes.length, reason: event.type === "end" ? "stop" : "now" });
  }
  return { writes, points };
}

/**
 * Replays the session's writes back to back (queue depth one) on a copy of the state
 * in `seedDir`, with vat's snapshots taken where the daemon would take them, or with
 * none. A snapshot is not waited for: the guest keeps writing while it is taken, and
 * writes to chunks it has not saved yet wait for their copy (copy-before-write). Only
 * the time spent in writes counts: at the next snapshot point the replay first lets
 * the previous snapshot finish, untimed, as the minutes between two snapshots would.
 * Payloads are made beforehand (`payloads`). No upload runs.
 */
export async function replayWrites(
  seedDir: string,
  dir: string,
  diskBytes: number,
  plan: SnapshotPlan,
  payloads: Uint8Array[],
  withBackup: boolean,
): Promise<ThroughputRun> {
  await copyState(seedDir, dir);
  const rig = withBackup ? await openVat(dir, diskBytes, 0) : null;
  const overlay = rig?.overlay ?? await openDiskOnly(dir, diskBytes);
  let taking: Promise<unknown> = Promise.resolve();
  let snapshots = 0;
  try {
    await syncFileSystem(dir);
    // Stretches of writes between snapshot points; a point's last reason names its snapshot.
    const reasons = new Map(plan.points.map((p) => [p.beforeWrite, p.reason]));
    const starts = [...new Set([0, ...reasons.keys()])].filter((w) => w < plan.writes.length)
      .sort((x, y) => x - y);
    let wallMs = 0;
    let cpuS = 0;
    let bytes = 0;
    for (let s = 0; s < starts.length; s++) {
      const reason = reasons.get(starts[s]);
      if (rig && reason) {
        await taking;
        taking = rig.backup.snapshot(overlay, reason, VM).then((q) => q && snapshots++);
      }
      const end = starts[s + 1] ?? plan.writes.length;
      const cpu0 = await processCpuSeconds();
      const t0 = performance.now();
      for (let i = starts[s]; i < end; i++) {
        await overlay.write(plan.writes[i].offsetBytes, payloads[i]);
        bytes += payloads[i].length;
      }
      wallMs += performance.now() - t0;
      cpuS += (await processCpuSeconds()) - cpu0;
    }
    await taking;
    if (rig) await rig.backup.snapshot(overlay, "stop", VM);
    return { withBackup, bytes, wallS: wallMs / 1000, cpuS, snapshots };
  } finally {
    await Promise.allSettled([taking]);
    if (rig) await closeVat(rig);
    else await overlay.close();
    await Deno.remove(dir, { recursive: true });
  }
}

/**
 * On a copy of the state in `seedDir`, replays the session's writes into both the user
 * disk and the raw image, and at every idle point backs both up: vat (a snapshot and
 * its upload, no link cap) and restic (the image).
 */
export async function replayPeers(
  seedDir: string,
  dir: string,
  trace: Trace,
  log: (msg: string) => void,
): Promise<PeerPoint[]> {
  await copyState(seedDir, dir);
  const rig = await openVat(dir, trace.shape.diskBytes, 0);
  const raw = await FileDevice.open(`${dir}/user.raw`);
  const restic = new ResticRepo(`${dir}/restic`, `${dir}/restic-cache`);
  const points: PeerPoint[] = [];
  try {
    let pending: GuestWrite[] = [];
    for (const event of trace.events) {
      if (event.type === "burst") {
        pending.push(...event.writes);
        continue;
      }
      await _apply(pending, [rig.overlay, raw]);
      pending = [];
      const point = await _backupBoth(dir, rig, raw, restic, event.type === "end" ? "stop" : "now");
      points.push(point);
      log(
        `  idle point ${points.length}: vat ${(point.vat.bytes / 1e6).toFixed(2)} MB ` +
          `${point.vat.wallS.toFixed(2)} s, restic ${
            (point.restic.repoGrowthBytes / 1e6).toFixed(2)
          } MB ${point.restic.wallS.toFixed(2)} s`,
      );
    }
    return points;
  } finally {
    await raw.close();
    await closeVat(rig);
    await Deno.remove(dir, { recursive: true });
  }
}

async function _apply(writes: GuestWrite[], disks: (CowOverlay | FileDevice)[]): Promise<void> {
  for (const w of writes) {
    const payload = payloadOf(w);
    for (const disk of disks) await disk.write(w.offsetBytes, payload);
  }
}

/** Backs the disk up with vat, then the image with restic, each from a synced file system. */
async function _backupBoth(
  dir: string,
  rig: VatRig,
  raw: FileDevice,
  restic: ResticRepo,
  reason: SnapshotReason,
): Promise<PeerPoint> {
  await raw.flush();
  await syncFileSystem(dir);
  const sent0 = rig.link.sentBytes;
  const repo0 = await treeBytes(`${dir}/repo`);
  const cpu0 = await processCpuSeconds();
  const t0 = performance.now();
  await rig.backup.snapshot(rig.overlay, reason, VM);
  await rig.backup.upload();
  const vat = {
    bytes: rig.link.sentBytes - sent0,
    wallS: (performance.now() - t0) / 1000,
    cpuS: (await processCpuSeconds()) - cpu0,
    repoGrowthBytes: 0,
  };
  vat.repoGrowthBytes = await treeBytes(`${dir}/repo`) - repo0;
  await syncFileSystem(dir);
  return { vat, restic: await restic.backup(raw.path) };
}
