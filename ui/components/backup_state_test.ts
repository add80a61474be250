import assert from "node:assert/strict";
import type { ApplianceStatus, BackupStatus } from "../api.ts";
import { backupText } from "./backup_state.tsx";
import { snapshotReason } from "./snapshot_list.tsx";

const IDLE: BackupStatus = {
  enabled: true,
  series: "desk",
  pendingBytes: 0,
  pendingSnapshots: 0,
  uploading: false,
  rateBytesPerSecond: 0,
  lastVersion: 4,
  lastBackupAt: "2026-01-01T00:00:00.000Z",
  error: null,
  forkNote: null,
};

function desk(backup: Partial<BackupStatus>, subscribed = true): ApplianceStatus {
  return { name: "desk", subscribed, backup: { ...IDLE, ...backup } } as ApplianceStatus;
}

Deno.test("backupText() says what is left to back up, or why nothing is", () => {
  assert.equal(
    backupText(desk({ enabled: false, series: null, lastVersion: null })),
    "Not backed up: this VAT has no data repository.",
  );
  assert.equal(
    backupText(desk({ series: null, lastVersion: null }, false)),
    "Backed up once desk has started: nothing to back up yet.",
  );
  assert.equal(backupText(desk({})), "All changes backed up (version 4).");
  assert.equal(backupText(desk({ pendingBytes: 3 * 1024 ** 2 })), "3.0 MiB still to back up.");
  assert.equal(
    backupText(
      desk({
        pendingBytes: 3 * 1024 ** 2,
        pendingSnapshots: 2,
        uploading: true,
        rateBytesPerSecond: 48 * 1024,
      }),
    ),
    "3.0 MiB still to back up, uploading at 48.0 KiB/s (2 snapshots waiting).",
  );
  assert.equal(backupText(desk({ pendingSnapshots: 1 })), "Uploading 1 snapshot…");
});

Deno.test("snapshotReason() names why a snapshot was taken", () => {
  const entry = {
    version: 5,
    state: "committed" as const,
    takenAt: "2026-01-01T00:00:00.000Z",
    dataBytes: 0,
    changedBytes: 0,
    undoneTo: null,
  };
  assert.equal(snapshotReason({ ...entry, reason: "stop" }), "at stop");
  assert.equal(snapshotReason({ ...entry, reason: "now" }), "backed up on request");
  assert.equal(snapshotReason({ ...entry, reason: "undo", undoneTo: 2 }), "undo to version 2");
});
