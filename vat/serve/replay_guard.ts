/**
 * Remembers the signed requests seen recently so that a captured request cannot be
 * sent again while its timestamp is still acceptable (a replayed DELETE, or a PUT of an
 * older `latest`). A client signs every attempt afresh with a new nonce, so its own
 * retries are never refused.
 *
 * @module
 */

import { MAX_CLOCK_SKEW_MS } from "../auth/request_signature.ts";

/**
 * How long a request is remembered: a request is accepted only within
 * `MAX_CLOCK_SKEW_MS` either side of its timestamp, so a window this long from its
 * arrival covers every moment at which it could be replayed.
 */
const REMEMBER_MS = 2 * MAX_CLOCK_SKEW_MS;

/** Signatures seen within the replay window. */
export class ReplayGuard {
  /** Insertion order is expiry order (every entry lives `REMEMBER_MS`). */
  readonly #seen = new Map<string, number>();

  /** Records a request; returns false if it was already seen. */
  remember(keyId: string, nonce: string, nowMs = Date.now()): boolean {
    for (const [id, expiresMs] of this.#seen) {
      if (expiresMs > nowMs) break;
      this.#seen.delete(id);
    }
    const id = `${keyId} ${nonce}`;
    if (this.#seen.has(id)) return false;
    this.#seen.set(id, nowMs + REMEMBER_MS);
    return true;
  }

  /** How many requests are remembered. */
  get size(): number {
    return this.#seen.size;
  }
}
