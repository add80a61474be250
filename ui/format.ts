/**
 * Numbers for people, as the UI shows them.
 *
 * @module
 */

export { formatBytes } from "../vat/progress.ts";

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
