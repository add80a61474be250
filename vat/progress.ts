/**
 * Progress of long operations (publish, export, verify, prefetch, backup): one model
 * that the terminal printer and the daemon's API both read.
 *
 * @module
 */

/** A snapshot of an operation's progress. */
export interface Progress {
  /** What is being done ("publishing system disk"). */
  phase: string;
  doneBytes: number;
  totalBytes: number;
  /** Bytes sent to or fetched from the repository so far. */
  transferredBytes: number;
  /** What `doneBytes` and `totalBytes` count when it is not bytes (e.g. "chunks"). */
  unit?: string;
  elapsedMs: number;
}

/** Receives progress snapshots; called often, so it must be cheap. */
export type ProgressListener = (progress: Progress) => void;

const UNITS = ["B", "KiB", "MiB", "GiB", "TiB"];

/** A byte count for people: "1.5 GiB". */
export function formatBytes(bytes: number): string {
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${UNITS[unit]}`;
}

/**
 * A listener that prints progress to standard error: a line rewritten in place on a
 * terminal (at most ten times a second), a plain line every few seconds otherwise.
 * Call the returned `done()` when the operation ends.
 */
export function terminalProgress(
  options: { quiet?: boolean } = {},
): { listener: ProgressListener; done(): void } {
  const tty = Deno.stderr.isTerminal();
  const intervalMs = tty ? 100 : 5000;
  let lastPrint = 0;
  let lastLine = "";
  let finishedPhase = "";
  const encoder = new TextEncoder();
  const listener: ProgressListener = (p) => {
    if (options.quiet) return;
    const now = performance.now();
    const finished = p.doneBytes >= p.totalBytes;
    if (finished ? finishedPhase === p.phase : now - lastPrint < intervalMs) return;
    if (finished) finishedPhase = p.phase;
    lastPrint = now;
    const pct = p.totalBytes ? Math.floor((p.doneBytes / p.totalBytes) * 100) : 100;
    const rate = p.elapsedMs > 0 ? p.doneBytes / (p.elapsedMs / 1000) : 0;
    const left = rate > 0 ? Math.ceil((p.totalBytes - p.doneBytes) / rate) : 0;
    const amount = (n: number) => p.unit ? `${n} ${p.unit}` : formatBytes(n);
    const line = `${p.phase}: ${pct}% ${amount(p.doneBytes)} of ${amount(p.totalBytes)}` +
      `, ${formatBytes(p.transferredBytes)} transferred, ${amount(Math.round(rate))}/s` +
      (finished ? "" : `, ${left} s left`);
    if (line === lastLine) return;
    lastLine = line;
    Deno.stderr.writeSync(encoder.encode(tty ? `\r\x1b[K${line}` : `${line}\n`));
  };
  return {
    listener,
    done() {
      if (tty && lastLine && !options.quiet) Deno.stderr.writeSync(encoder.encode("\n"));
    },
  };
}
