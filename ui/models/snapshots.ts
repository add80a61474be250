/// <reference lib="dom" />
/**
 * The open appliance's snapshots: the versions of its user disk in the data repository
 * and those waiting for upload (`GET /api/appliances/NAME/snapshots`), "back up now",
 * and undo to a version, which waits for the user's confirmation.
 *
 * @module
 */

import { signal } from "@preact/signals";
import { api, ApiError, call, type SnapshotEntry } from "../api.ts";
import { sessionLost } from "./session.ts";

/** The open appliance's snapshots, newest first (null until read). */
export const snapshots = signal<SnapshotEntry[] | null>(null);
/** Why reading them, backing up or undoing failed. */
export const snapshotsError = signal<string | null>(null);
/** What runs now: a "back up now" or an undo. */
export const snapshotsBusy = signal<"backing-up" | "undoing" | null>(null);
/** The version an undo waits for confirmation to go back to. */
export const undoAsked = signal<SnapshotEntry | null>(null);

// Which appliance the list is of, and the newest read: an answer for another appliance
// (the page changed while it was on its way), or overtaken by a newer read, is dropped.
let _of: string | null = null;
let _reads = 0;

function _failed(err: unknown): void {
  if (err instanceof ApiError && err.status === 401) sessionLost();
  snapshotsError.value = (err as Error).message;
}

/** Forgets the list (another appliance's page opens, or one without snapshots). */
export function clearSnapshots(name: string | null): void {
  _of = name;
  snapshots.value = null;
  snapshotsError.value = null;
  undoAsked.value = null;
}

/** Reads `name`'s snapshots again. */
export async function loadSnapshots(name: string): Promise<void> {
  if (_of !== name) clearSnapshots(name);
  const read = ++_reads;
  try {
    const list = await call<SnapshotEntry[]>(
      `listing ${name}'s snapshots`,
      api.api.appliances[":name"].snapshots.$get({ param: { name } }),
    );
    if (_of !== name || read !== _reads) return;
    snapshots.value = list;
    if (snapshotsBusy.value === null) snapshotsError.value = null;
  } catch (err) {
    if (_of === name) _failed(err);
  }
}

/** Takes a snapshot of `name`'s user disk now and starts uploading what waits. */
export async function backUpNow(name: string): Promise<void> {
  snapshotsBusy.value = "backing-up";
  snapshotsError.value = null;
  try {
    await call(
      `backing up ${name}`,
      api.api.appliances[":name"].backup.$post({ param: { name } }),
    );
  } catch (err) {
    _failed(err);
  } finally {
    snapshotsBusy.value = null;
  }
  await loadSnapshots(name);
}

/** Asks to undo to `entry`'s version (the UI then asks for confirmation). */
export function askUndo(entry: SnapshotEntry): void {
  undoAsked.value = entry;
}

/** Cancels an undo that waits for confirmation. */
export function cancelUndo(): void {
  undoAsked.value = null;
}

/** Undoes `name`'s user disk to the version that was confirmed, then lists again. */
export async function confirmUndo(name: string): Promise<void> {
  const version = undoAsked.value?.version;
  undoAsked.value = null;
  if (version === null || version === undefined) return;
  snapshotsBusy.value = "undoing";
  snapshotsError.value = null;
  try {
    await call(
      `undoing ${name} to version ${version}`,
      api.api.appliances[":name"].undo.$post({ param: { name }, json: { version } }),
    );
  } catch (err) {
    _failed(err);
  } finally {
    snapshotsBusy.value = null;
  }
  await loadSnapshots(name);
}
