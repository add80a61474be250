/**
 * Numbers for people, as the UI shows them.
 *
 * @module
 */

import { formatBytes } from "../vat/progress.ts";
import type { UpdateStatus } from "../vat/api/wire_types.ts";

export { formatBytes };

/** A duration for people: "45 s", "4 min 5 s", "2 h 10 min". */
export function formatSeconds(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

/** `part` of `whole` as a whole percentage, rounded down (100 only when complete). */
export function percent(part: number, whole: number): number {
  if (whole <= 0) return 100;
  return Math.min(100, Math.floor((part / whole) * 100));
}

/** The update's one line in the header: what runs, what is downloading or staged, what failed. */
export function describeUpdate(s: UpdateStatus): string {
  const parts = [`vat ${s.runningVersion}`];
  const p = s.progress;
  if (s.state === "downloading" && p) {
    parts.push(
      p.phase === "fetching"
        ? `downloading release ${p.release}: ${formatBytes(p.fetchedBytes)} of ${
          formatBytes(p.toFetchBytes)
        }`
        : `installing release ${p.release}: ${percent(p.doneBytes, p.totalBytes)}%`,
    );
  } else if (s.install.next?.release) {
    parts.push(
      `vat ${s.install.next.release.vatVersion} is ready: it starts when no appliance runs`,
    );
  } else if (s.install.failed !== null && s.available?.release === s.install.failed) {
    parts.push(`release ${s.install.failed} did not start and was rolled back`);
  }
  if (s.lastError) parts.push(`update failed: ${s.lastError}`);
  return parts.join(" · ");
}
