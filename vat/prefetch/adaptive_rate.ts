/**
 * The prefetcher's rate, adapted to what the link shows, as in the Collective's
 * prefetcher (docs/CACHE.md, "Prefetching"): it keeps the latencies of recent
 * requests, halves the rate when many of them were slow, doubles it when most were
 * fast, and otherwise nudges it by a small step after each request; never above the
 * configured bandwidth, never below a floor.
 *
 * @module
 */

/** Options of `AdaptiveRate`. */
export interface AdaptiveRateOptions {
  /** The configured bandwidth: the rate never goes above it (bytes per second). */
  maxBytesPerSecond: number;
  /** The floor (default 16 KiB/s, or the maximum if lower). */
  minBytesPerSecond?: number;
  /** Where the rate starts (default a quarter of the maximum). */
  initialBytesPerSecond?: number;
  /** The step of a nudge (default 64 KiB/s). */
  nudgeBytesPerSecond?: number;
}

/** Recent requests the decision looks at. */
export const RATE_WINDOW = 16;
/** Halve when at least this share of the window was slow (and at least half of it is filled). */
export const SLOW_SHARE = 0.5;
/** Double when at least this share of a full window was fast. */
export const FAST_SHARE = 0.75;
/** A request is slow above this multiple of the baseline latency... */
export const SLOW_FACTOR = 3;
/**
 * ...and more than this many milliseconds above the baseline: on a fast link (a
 * baseline of a millisecond or two) a busy CPU or disk triples latencies without any
 * contention on the link, and a demand read delayed by less than this is not worth
 * backing off for.
 */
export const SLOW_MARGIN_MS = 50;
/** A request is fast at or below this multiple of the baseline... */
export const FAST_FACTOR = 1.5;
/** ...or within this many milliseconds of it. */
export const FAST_MARGIN_MS = 5;
/** The baseline is the lowest latency among this many recent requests. */
export const BASELINE_SAMPLES = 128;

/** How the rate changed after a request. */
export type RateChange = "halved" | "doubled" | "up" | "down" | "kept";

/**
 * A rate in bytes per second that `record` adapts and `pace` enforces. Latencies are
 * judged against a baseline, the lowest latency among the last `BASELINE_SAMPLES`
 * requests (what the link does unloaded; it follows the link when that gets slower
 * for good). A request is slow above `SLOW_FACTOR` times the baseline and at least
 * `SLOW_MARGIN_MS` above it, fast within `FAST_FACTOR` times it or `FAST_MARGIN_MS`
 * of it. After each request: if at least `SLOW_SHARE` of the window (at least half
 * full) was slow, the rate halves; else if at least `FAST_SHARE` of a full window was
 * fast, it doubles; either empties the window, so that one burst is judged once. Otherwise the
 * last request nudges it: fast up, slow down, neither kept.
 */
export class AdaptiveRate {
  readonly maxBytesPerSecond: number;
  readonly minBytesPerSecond: number;
  readonly #nudge: number;
  #rate: number;
  #window: number[] = [];
  #recent: number[] = [];
  #nextStartMs = 0;

  constructor(options: AdaptiveRateOptions) {
    this.maxBytesPerSecond = options.maxBytesPerSecond;
    this.minBytesPerSecond = Math.min(
      options.minBytesPerSecond ?? 16 * 1024,
      this.maxBytesPerSecond,
    );
    this.#nudge = options.nudgeBytesPerSecond ?? 64 * 1024;
    this.#rate = this.#clamp(options.initialBytesPerSecond ?? this.maxBytesPerSecond / 4);
  }

  /** The rate now, bytes per second. */
  get bytesPerSecond(): number {
    return this.#rate;
  }

  /** The baseline latency (ms), or null before any request. */
  get baselineMs(): number | null {
    return this.#recent.length ? Math.min(...this.#recent) : null;
  }

  /** Takes one finished request's latency into account; says what it did to the rate. */
  record(latencyMs: number): RateChange {
    this.#recent.push(latencyMs);
    if (this.#recent.length > BASELINE_SAMPLES) this.#recent.shift();
    this.#window.push(latencyMs);
    if (this.#window.length > RATE_WINDOW) this.#window.shift();
    const baseline = this.baselineMs!;
    const slowAbove = Math.max(SLOW_FACTOR * baseline, baseline + SLOW_MARGIN_MS);
    const fastUpTo = Math.max(FAST_FACTOR * baseline, baseline + FAST_MARGIN_MS);
    const slow = this.#window.filter((ms) => ms > slowAbove).length;
    const fast = this.#window.filter((ms) => ms <= fastUpTo).length;
    if (this.#window.length >= RATE_WINDOW / 2 && slow >= SLOW_SHARE * RATE_WINDOW) {
      return this.#set(this.#rate / 2, "halved");
    }
    if (this.#window.length >= RATE_WINDOW && fast >= FAST_SHARE * RATE_WINDOW) {
      return this.#set(this.#rate * 2, "doubled");
    }
    if (latencyMs <= fastUpTo) {
      return this.#set(this.#rate + this.#nudge, "up", false);
    }
    if (latencyMs > slowAbove) {
      return this.#set(this.#rate - this.#nudge, "down", false);
    }
    return "kept";
  }

  /**
   * Waits until a request of `bytes` may start at the current rate (requests leave
   * `bytes / rate` apart), or `signal` aborts.
   */
  async pace(bytes: number, signal?: AbortSignal): Promise<void> {
    const now = performance.now();
    const startAt = Math.max(now, this.#nextStartMs);
    // An idle prefetcher does not save up a burst.
    this.#nextStartMs = startAt + (bytes / this.#rate) * 1000;
    const waitMs = startAt - now;
    if (waitMs <= 0 || signal?.aborted) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, waitMs);
      function done() {
        clearTimeout(timer);
        signal?.removeEventListener("abort", done);
        resolve();
      }
      signal?.addEventListener("abort", done);
    });
  }

  #set(rate: number, change: RateChange, clearWindow = true): RateChange {
    const before = this.#rate;
    this.#rate = this.#clamp(rate);
    if (clearWindow) this.#window = [];
    return this.#rate === before && !clearWindow ? "kept" : change;
  }

  #clamp(rate: number): number {
    return Math.min(this.maxBytesPerSecond, Math.max(this.minBytesPerSecond, rate));
  }
}
