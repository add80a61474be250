/**
 * `FaultDice`: the seeded, reproducible choice of which calls an error-injecting layer
 * fails and how (`vat/disk/faulty_device.ts`, `vat/repo/store_faulty.ts`). Calls are
 * numbered in the order they reach the layer; the same seed, fail rate and call order
 * give the same faults, so a failing run is replayed from the seed it prints.
 *
 * @module
 */

import { UsageError } from "./errors.ts";

/** Options shared by every error-injecting layer. */
export interface FaultOptions<Kind extends string> {
  /** Seeds the choices; the same seed and call order give the same faults. */
  seed: number;
  /** The fraction of calls that fail, from 0 (none) to 1 (all). */
  failRate: number;
  /** The kinds of fault to inject, picked with equal chance (default: every kind). */
  kinds?: readonly Kind[];
}

/** Decides, call by call, whether to inject a fault and which. */
export class FaultDice<Kind extends string> {
  readonly seed: number;
  readonly failRate: number;
  readonly kinds: readonly Kind[];
  /** How many faults of each kind were injected so far. */
  readonly injected: Record<Kind, number>;
  /** Calls seen so far (failed or not). */
  calls = 0;
  #next: () => number;

  constructor(options: FaultOptions<Kind>, allKinds: readonly Kind[]) {
    if (!Number.isSafeInteger(options.seed)) {
      throw new UsageError(`fault seed ${options.seed} is not an integer`);
    }
    if (!(options.failRate >= 0 && options.failRate <= 1)) {
      throw new UsageError(`fail rate ${options.failRate} is not between 0 and 1`);
    }
    const kinds = options.kinds ?? allKinds;
    const unknown = kinds.filter((kind) => !allKinds.includes(kind));
    if (kinds.length === 0 || unknown.length > 0) {
      throw new UsageError(
        `fault kinds must be some of ${allKinds.join(", ")} (got ${kinds.join(", ") || "none"})`,
      );
    }
    this.seed = options.seed;
    this.failRate = options.failRate;
    this.kinds = kinds;
    this.injected = Object.fromEntries(allKinds.map((kind) => [kind, 0])) as Record<Kind, number>;
    this.#next = seededRandom(options.seed);
  }

  /**
   * The fault for the next call, among `allowed` (the kinds that make sense for it), or
   * null to let it through. Two numbers are drawn per call whatever the outcome, so the
   * choices for later calls do not depend on which kinds an earlier call allowed.
   */
  roll(allowed: readonly Kind[] = this.kinds): Kind | null {
    this.calls++;
    const fail = this.#next() < this.failRate;
    const pick = this.#next();
    if (!fail) return null;
    const usable = this.kinds.filter((kind) => allowed.includes(kind));
    if (usable.length === 0) return null;
    const kind = usable[Math.floor(pick * usable.length)];
    this.injected[kind]++;
    return kind;
  }

  /** A number in [0, 1) from the same sequence (e.g. where to cut a short read). */
  fraction(): number {
    return this.#next();
  }

  /** Faults injected so far, of every kind. */
  get total(): number {
    return Object.values<number>(this.injected).reduce((sum, n) => sum + n, 0);
  }
}

/**
 * A small seeded generator of numbers in [0, 1): xorshift32 (Marsaglia), enough to
 * spread faults evenly, never for anything secret.
 */
export function seededRandom(seed: number): () => number {
  // The state must never be zero; mixing the seed first also spreads nearby seeds.
  let x = (Math.imul(seed | 0, 0x9e3779b1) ^ 0x6d2b79f5) >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 2 ** 32;
  };
}

/** The longest an injected hang may last. */
const _MAX_HANG_MS = 60_000;

/**
 * Injected hangs of a fault layer: each `wait()` lasts `ms` (at most a minute), or
 * until `close()` wakes every one early, so a closed layer never keeps a caller.
 */
export class Hangs {
  readonly ms: number;
  readonly #waiting = new Set<() => void>();
  #closed = false;

  constructor(ms = 1000) {
    if (!Number.isFinite(ms) || ms < 0 || ms > _MAX_HANG_MS) {
      throw new UsageError(`hang time ${ms} ms is not between 0 and ${_MAX_HANG_MS} ms`);
    }
    this.ms = ms;
  }

  /** Whether `close()` was called. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Waits `ms`, or less if closed meanwhile. */
  wait(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        this.#waiting.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, this.ms);
      this.#waiting.add(wake);
    });
  }

  /** Wakes every hang now, and makes later ones end at once. */
  close(): void {
    this.#closed = true;
    for (const wake of [...this.#waiting]) wake();
  }
}
