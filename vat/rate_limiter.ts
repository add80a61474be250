/**
 * A token bucket over bytes: `take(n)` resolves when `n` more bytes may go without
 * exceeding `bytesPerSecond` on average (bursts up to one second's worth). Shared by
 * everything that caps a transfer rate (backup upload, prefetch).
 *
 * @module
 */

import { UsageError } from "./errors.ts";

/** Caps a byte rate; `bytesPerSecond` of 0 or less means no cap. */
export class RateLimiter {
  bytesPerSecond: number;
  #tokens: number;
  #last = performance.now();
  #queue: Promise<void> = Promise.resolve();

  constructor(bytesPerSecond: number) {
    this.bytesPerSecond = bytesPerSecond;
    this.#tokens = bytesPerSecond;
  }

  /** Waits until `bytes` may be sent; callers are served in order. */
  take(bytes: number): Promise<void> {
    if (this.bytesPerSecond <= 0) return Promise.resolve();
    const turn = this.#queue.then(() => this.#wait(bytes));
    this.#queue = turn;
    return turn;
  }

  async #wait(bytes: number): Promise<void> {
    const now = performance.now();
    const rate = this.bytesPerSecond;
    this.#tokens = Math.min(rate, this.#tokens + ((now - this.#last) / 1000) * rate);
    this.#last = now;
    this.#tokens -= bytes;
    if (this.#tokens < 0) {
      await new Promise((resolve) => setTimeout(resolve, (-this.#tokens / rate) * 1000));
    }
  }
}

/** Parses a rate such as "384k", "1.5M" or "2000000" (bits per second) into bytes per second. */
export function parseBitRate(text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmg]?)(?:bit)?(?:\/s|ps)?$/i.exec(text.trim());
  if (!m) {
    throw new UsageError(
      `"${text}" is not a rate (use e.g. 384k, 1.5M or 10M, in bits per second)`,
    );
  }
  const scale = { "": 1, k: 1e3, m: 1e6, g: 1e9 }[m[2].toLowerCase() as "" | "k" | "m" | "g"];
  return Math.round((Number(m[1]) * scale) / 8);
}
