/** @jsxImportSource preact */
import type { ApplianceStatus } from "../api.ts";
import { formatBytes } from "../format.ts";

/** "1 snapshot", "3 snapshots". */
function _snapshots(n: number): string {
  return `${n} snapshot${n === 1 ? "" : "s"}`;
}

/** What is left to back up: the words `BackupState` shows. */
export function backupText(a: ApplianceStatus): string {
  const b = a.backup;
  if (!b.enabled) return "Not backed up: this VAT has no data repository.";
  if (!a.subscribed) return `Backed up once ${a.name} has started: nothing to back up yet.`;
  if (b.pendingBytes > 0) {
    const rate = b.uploading && b.rateBytesPerSecond > 0
      ? `, uploading at ${formatBytes(b.rateBytesPerSecond)}/s`
      : b.uploading
      ? ", uploading"
      : "";
    const waiting = b.pendingSnapshots > 0 ? ` (${_snapshots(b.pendingSnapshots)} waiting)` : "";
    return `${formatBytes(b.pendingBytes)} still to back up${rate}${waiting}.`;
  }
  if (b.pendingSnapshots > 0) return `Uploading ${_snapshots(b.pendingSnapshots)}…`;
  return b.lastVersion === null
    ? "All changes backed up."
    : `All changes backed up (version ${b.lastVersion}).`;
}

/** The user disk's backup: bytes still to upload, a failure, a fork. */
export function BackupState({ appliance: a }: { appliance: ApplianceStatus }) {
  const b = a.backup;
  const done = b.enabled && a.subscribed && b.pendingBytes === 0 && b.pendingSnapshots === 0;
  return (
    <div class="backup">
      <p data-testid="backup" class={done ? "safe" : b.enabled ? undefined : "muted"}>
        {backupText(a)}
      </p>
      {b.error && <p class="error" data-testid="backup-error">Backup failed: {b.error}</p>}
      {b.forkNote && <p class="note" data-testid="fork-note">Forked: {b.forkNote}</p>}
    </div>
  );
}
