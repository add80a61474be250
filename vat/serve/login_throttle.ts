/**
 * Slows failed logins down (docs/USERS.md, "Login on vat serve"): after each failure
 * of a user (or from a client), the next attempt for it waits twice as long as the
 * last, from 1 s up to a minute; a success resets the user. In memory: a restarted
 * server forgets, which costs an attacker a restart they cannot cause.
 *
 * @module
 */

const FIRST_DELAY_MS = 1000;
const MAX_DELAY_MS = 60_000;
const MAX_TRACKED = 100_000;

/** Failure counts and the time each key may try again. */
export class LoginThrottle {
  readonly #nowMs: () => number;
  readonly #state = new Map<string, { failures: number; untilMs: number }>();

  constructor(options: { nowMs?: () => number } = {}) {
    this.#nowMs = options.nowMs ?? Date.now;
  }

  /** How long any of `keys` must still wait (0: may try now). */
  waitMs(keys: string[]): number {
    const now = this.#nowMs();
    return Math.max(0, ...keys.map((k) => (this.#state.get(k)?.untilMs ?? 0) - now));
  }

  /** Records a failure of each of `keys`. */
  failed(keys: string[]): void {
    const now = this.#nowMs();
    if (this.#state.size > MAX_TRACKED) {
      for (const [k, s] of this.#state) if (s.untilMs < now - MAX_DELAY_MS) this.#state.delete(k);
    }
    for (const k of keys) {
      const failures = (this.#state.get(k)?.failures ?? 0) + 1;
      const delay = Math.min(FIRST_DELAY_MS * 2 ** (failures - 1), MAX_DELAY_MS);
      this.#state.set(k, { failures, untilMs: now + delay });
    }
  }

  /** Forgets `keys`' failures. */
  succeeded(keys: string[]): void {
    for (const k of keys) this.#state.delete(k);
  }
}
