/** @jsxImportSource preact */
import type { Signal } from "@preact/signals";
import type { ApplianceStatus, SnapshotEntry } from "../api.ts";
import { formatBytes } from "../format.ts";

/** Props of `SnapshotList`. */
export interface SnapshotListProps {
  appliance: ApplianceStatus;
  /** Newest first; null until read. */
  snapshots: Signal<SnapshotEntry[] | null>;
  error: Signal<string | null>;
  busy: Signal<"backing-up" | "undoing" | null>;
  onBackUpNow(name: string): void;
  onUndo(entry: SnapshotEntry): void;
}

/** Why a snapshot was taken, in words. */
export function snapshotReason(entry: SnapshotEntry): string {
  if (entry.reason === "undo") return `undo to version ${entry.undoneTo}`;
  return {
    start: "at start",
    stop: "at stop",
    periodic: "periodic",
    now: "backed up on request",
    first: "the appliance's initial user disk",
  }[entry.reason] ?? entry.reason;
}

/**
 * The user disk's snapshots: every version in the data repository and those waiting for
 * upload, "Back up now", and an undo to each version while the appliance is stopped.
 */
export function SnapshotList(
  { appliance: a, snapshots, error, busy, onBackUpNow, onUndo }: SnapshotListProps,
) {
  const stopped = a.state === "stopped";
  const list = snapshots.value;
  const body = !a.backup.enabled
    ? (
      <p class="muted">
        Nothing is backed up on this VAT: start the daemon with{" "}
        <code>--data-repo REPO --user-key FILE</code> to back user disks up.
      </p>
    )
    : !a.subscribed
    ? <p class="muted">No snapshots yet: the first is taken when {a.name} starts.</p>
    : list === null
    ? <p class="muted">Reading the snapshots…</p>
    : list.length === 0
    ? <p class="muted">No snapshots yet.</p>
    : (
      <ol class="snapshots" data-testid="snapshots">
        {list.map((s) => {
          const title = s.version === null ? "Waiting for upload" : `Version ${s.version}`;
          const id = `snapshot-${s.version ?? `queued-${s.takenAt}`}`;
          return (
            <li key={id} class={`snapshot ${s.state}`} data-testid="snapshot">
              <p class="snapshot-title">
                <strong id={id}>{title}</strong>{" "}
                <time dateTime={s.takenAt}>{new Date(s.takenAt).toLocaleString()}</time>
              </p>
              <p class="muted">
                {snapshotReason(s)} · {formatBytes(s.dataBytes)} of data · {
                  // An undo reuses chunks already backed up: it uploads nothing new.
                  s.reason === "undo" ? "no new data" : `${formatBytes(s.changedBytes)} changed`
                }
              </p>
              {s.version !== null && (
                <button
                  type="button"
                  disabled={!stopped || busy.value !== null}
                  onClick={() => onUndo(s)}
                >
                  Undo to this version <span class="visually-hidden">(version {s.version})</span>
                </button>
              )}
            </li>
          );
        })}
      </ol>
    );
  return (
    <section class="snapshots-section" aria-labelledby="snapshots-title">
      <header>
        <h2 id="snapshots-title">Snapshots</h2>
        <button
          type="button"
          disabled={!a.backup.enabled || !a.subscribed || busy.value !== null}
          onClick={() => onBackUpNow(a.name)}
        >
          {busy.value === "backing-up" ? "Backing up…" : "Back up now"}
        </button>
      </header>
      {a.backup.enabled && a.subscribed && !stopped && (
        <p class="muted">Stop {a.name} to undo to an earlier version.</p>
      )}
      {busy.value === "undoing" && <p role="status">Undoing…</p>}
      {error.value && <p class="error" role="alert">{error}</p>}
      {body}
    </section>
  );
}
