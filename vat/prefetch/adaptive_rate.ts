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
/** A request is slow above this multiple of its expected latency (see `AdaptiveRate`)... */
export const SLOW_FACTOR = 3;
/**
 * ...and more than this many milliseconds above it: on a fast link (a round trip of a
 * millisecond or two) a busy CPU or disk triples latencies without any
 * contention on the link, and a demand read delayed by less than this is not worth
 * backing off for.
 */
export const SLOW_MARGIN_MS = 50;
/** A request is fast at or below this multiple of its expected latency... */
export const FAST_FACTOR = 1.5;
/** ...or within this many milliseconds of it. */
export const FAST_MARGIN_MS = 5;
/** The round trip and best throughput are taken over this many recent requests. */
export const BASELINE_SAMPLES = 128;

/** How the rate changed after a request. */
export type RateChange = "halved" | "doubled" | "up" | "down" | "kept";

/**
 * A rate in bytes per second that `record` adapts and `pace` enforces. Each request's
 * latency is judged against what the unloaded link would take for its size: the
 * larger of the round trip (the lowest latency among the last `BASELINE_SAMPLES`
 * requests) and its bytes at the best throughput among them (bytes over latency; a
 * request of unknown size is judged by the round trip alone). Chunks are compressed,
 * so sizes vary from a few bytes to a whole chunk: on a slow link a whole chunk takes
 * ten times the round trip and is not "slow" for that. Both follow the link when it
 * gets slower for good. A request is slow above `SLOW_FACTOR` times its expected
 * latency and at least `SLOW_MARGIN_MS` above it, fast within `FAST_FACTOR` times it
 * or `FAST_MARGIN_MS` of it. After each request: if at least `SLOW_SHARE` of the
 * window (at least half full) was slow, the rate halves; else if at least
 * `FAST_SHARE` of a full window was fast, it doubles; either empties the window, so
 * that one burst is judged once. Otherwise the last request nudges it: fast up, slow
 * down, neither kept.
 */
export class AdaptiveRate {
  readonly maxBytesPerSecond: number;
  readonly minBytesPerSecond: number;
  readonly #nudge: number;
  #rate: number;
  /** The recent requests' latencies, each with what the unloaded link would have taken. */
  #window: _Judged[] = [];
  /** The last `BASELINE_SAMPLES` requests. */
  #recent: { latencyMs: number; bytes: number }[] = [];
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

  /** The baseline latency (ms): the round trip of the unloaded link; null before any request. */
  get baselineMs(): number | null {
    return this.#recent.length ? Math.min(...this.#recent.map((r) => r.latencyMs)) : null;
  }

  /** What the unloaded link would take for a request of `bytes` (0: unknown), in ms. */
  expectedMs(bytes: number): number {
    let bytesPerMs = 0;
    for (const r of this.#recent) bytesPerMs = Math.max(bytesPerMs, r.bytes / r.latencyMs);
    const roundTrip = this.baselineMs ?? 0;
    return bytesPerMs > 0 ? Math.max(roundTrip, bytes / bytesPerMs) : roundTrip;
  }

  /**
   * Takes one finished request into account: its latency and, when known, how many
   * bytes it moved. Says what it did to the rate.
   */
  record(latencyMs: number, bytes = 0): RateChange {
    latencyMs = Math.max(latencyMs, 0.001);
    this.#recent.push({ latencyMs, bytes });
    if (this.#recent.length > BASELINE_SAMPLES) this.#recent.shift();
    const last = { latencyMs, expectedMs: this.expectedMs(bytes) };
    this.#window.push(last);
    if (this.#window.length > RATE_WINDOW) this.#window.shift();
    const slow = this.#window.filter(_isSlow).length;
    const fast = this.#window.filter(_isFast).length;
    if (this.#window.length >= RATE_WINDOW / 2 && slow >= SLOW_SHARE * RATE_WINDOW) {
      return this.#set(this.#rate / 2, "halved");
    }
    if (this.#window.length >= RATE_WINDOW && fast >= FAST_SHARE * RATE_WINDOW) {
      return this.#set(this.#rate * 2, "doubled");
    }
    if (_isFast(last)) {
      return this.#set(this.#rate + this.#nudge, "up", false);
    }
    if (_isSlow(last)) {
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

/** A request's latency and what the unloaded link would have taken for it. */
interface _Judged {
  latencyMs: number;
  expectedMs: number;
}

function _isSlow({ latencyMs, expectedMs }: _Judged): boolean {
  return latencyMs > Math.max(SLOW_FACTOR * expectedMs, expectedMs + SLOW_MARGIN_MS);
}

function _isFast({ latencyMs, expectedMs }: _Judged): boolean {
  return latencyMs <= Math.max(FAST_FACTOR * expectedMs, expectedMs + FAST_MARGIN_MS);
}
