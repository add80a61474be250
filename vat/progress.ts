/**
 * Progress of long operations (publish, export, verify, prefetch, backup): one model
 * that the terminal printer and the daemon's API both read.
 *
 * @module
 */

import { UsageError } from "./errors.ts";

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

const SIZE_UNITS: Record<string, number> = {
  "": 1,
  b: 1,
  k: 1024,
  kb: 1024,
  kib: 1024,
  m: 1024 ** 2,
  mb: 1024 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1024 ** 3,
  gib: 1024 ** 3,
  t: 1024 ** 4,
  tb: 1024 ** 4,
  tib: 1024 ** 4,
};

/** Parses "64K", "1M", "1.5GiB", "4096" into bytes (binary units). */
export function parseSize(text: string, what: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([a-zA-Z]*)$/.exec(text.trim());
  const unit = m ? SIZE_UNITS[m[2].toLowerCase()] : undefined;
  if (!m || unit === undefined) {
    throw new UsageError(`${what} "${text}" is not a size (examples: 65536, 64K, 1M, 2G)`);
  }
  const bytes = Math.round(Number(m[1]) * unit);
  if (!Number.isSafeInteger(bytes)) throw new UsageError(`${what} "${text}" is too large`);
  return bytes;
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

/** A long operation the daemon runs for an appliance, as the API and UI show it. */
export interface OperationProgress {
  /** What runs: a hoard, a publish, boot-trace replay, prefetch, backup upload. */
  kind: "hoard" | "publish" | "trace" | "prefetch" | "backup";
  doneBytes: number;
  totalBytes: number;
  /** Recent rate (bytes per second, smoothed); 0 while nothing moves. */
  rateBytesPerSecond: number;
  /** Seconds left at that rate; null while the rate is 0. */
  secondsLeft: number | null;
}

/**
 * Measures one operation's progress: `advance` it as bytes get done and read
 * `progress()` whenever the API needs it. The rate is smoothed over a few seconds so
 * that a burst does not make the time left jump.
 */
export class ProgressMeter {
  readonly kind: OperationProgress["kind"];
  doneBytes = 0;
  totalBytes: number;
  #rate = 0;
  #windowStart = performance.now();
  #windowBytes = 0;

  constructor(kind: OperationProgress["kind"], totalBytes: number, doneBytes = 0) {
    this.kind = kind;
    this.totalBytes = totalBytes;
    this.doneBytes = doneBytes;
  }

  /** Counts `bytes` more done. */
  advance(bytes: number): void {
    this.doneBytes += bytes;
    this.#windowBytes += bytes;
    this.#fold();
  }

  /**
   * Sets the bytes done in all, for sources that report totals (a `ProgressListener`).
   * A step back (the operation started a pass over again) keeps the rate but starts a
   * new window, so the repeated bytes are not counted twice.
   */
  moveTo(doneBytes: number): void {
    if (doneBytes >= this.doneBytes) return this.advance(doneBytes - this.doneBytes);
    this.doneBytes = doneBytes;
    this.#windowStart = performance.now();
    this.#windowBytes = 0;
  }

  /** The operation as the API shows it. */
  progress(): OperationProgress {
    this.#fold();
    const left = Math.max(0, this.totalBytes - this.doneBytes);
    return {
      kind: this.kind,
      doneBytes: this.doneBytes,
      totalBytes: this.totalBytes,
      rateBytesPerSecond: Math.round(this.#rate),
      secondsLeft: this.#rate > 0 ? Math.ceil(left / this.#rate) : null,
    };
  }

  /** Folds the bytes of each finished one-second window into the smoothed rate. */
  #fold(): void {
    const now = performance.now();
    const elapsedMs = now - this.#windowStart;
    if (elapsedMs < 1000) return;
    const windowRate = this.#windowBytes / (elapsedMs / 1000);
    // Idle windows longer than a few seconds reset the rate rather than averaging in.
    this.#rate = elapsedMs > 5000
      ? windowRate
      : this.#rate === 0
      ? windowRate
      : 0.6 * this.#rate + 0.4 * windowRate;
    this.#windowStart = now;
    this.#windowBytes = 0;
  }
}
