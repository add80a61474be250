/**
 * The lease that makes one VAT at a time the uploader of a subscription (docs/BACKUP.md,
 * "Several VATs"). Generations are objects `lease/<n>` in the subscription's series;
 * the highest generation is the lease. Taking a lease creates the next generation
 * conditionally (of two racing VATs exactly one wins); its holder keeps it alive by
 * rewriting its own generation, and releases it by writing `released`. A lease whose
 * object the store has not seen written for `ttlMs` (by the store's own clock) is
 * stale: anyone may take the next generation, so a vanished VAT's lease heals by itself.
 *
 * @module
 */

import { hostname } from "node:os";
import { NotFoundError } from "../errors.ts";
import type { Store } from "../repo/store.ts";

/** The lease of a series as a reader finds it. */
export interface LeaseHolder {
  generation: number;
  vatId: string;
  host: string;
  /** Let go by its holder. */
  released: boolean;
  /** Milliseconds since the holder last renewed it (by the store's clock). */
  silentMs: number;
  /** Released, or not renewed within the time to live: anyone may take it. */
  stale: boolean;
}

/** Default time to live of a lease that is not renewed. */
export const LEASE_TTL_MS = 90_000;

/** One VAT's handle on one series' lease. */
export class Lease {
  readonly #store: Store;
  readonly #vatId: string;
  readonly ttlMs: number;
  /** The generation this VAT holds, or null. */
  #held: number | null = null;

  constructor(store: Store, vatId: string, ttlMs = LEASE_TTL_MS) {
    this.#store = store;
    this.#vatId = vatId;
    this.ttlMs = ttlMs;
  }

  /** The generation this VAT believes it holds (null: none). */
  get heldGeneration(): number | null {
    return this.#held;
  }

  /** Who holds the lease now; null when it was never taken. */
  async holder(): Promise<LeaseHolder | null> {
    const generation = await this.#newestGeneration();
    if (generation === 0) return null;
    let body: { vatId?: string; host?: string; released?: boolean } = {};
    try {
      body = JSON.parse(new TextDecoder().decode(await this.#store.get(_key(generation))));
    } catch (err) {
      if (!(err instanceof SyntaxError)) throw err;
    }
    const info = await this.#store.stat(_key(generation));
    const silentMs = info ? Math.max(0, (await this.#storeNow()) - info.modifiedMs) : Infinity;
    const released = body.released === true;
    return {
      generation,
      vatId: String(body.vatId ?? "unknown"),
      host: String(body.host ?? "unknown"),
      released,
      silentMs,
      stale: released || silentMs > this.ttlMs,
    };
  }

  /**
   * Takes the lease if this VAT holds it already, nobody does, it is stale, or
   * `takeOver` says to take it from a live holder. Returns null when taken, else the
   * live holder that keeps it.
   */
  async acquire(options: { takeOver?: boolean } = {}): Promise<LeaseHolder | null> {
    for (let attempt = 0; attempt < 5; attempt++) {
      const current = await this.holder();
      if (current && current.vatId === this.#vatId && !current.released) {
        this.#held = current.generation;
        await this.renew();
        return null;
      }
      if (current && !current.stale && !options.takeOver) return current;
      const next = (current?.generation ?? 0) + 1;
      if (await this.#store.create(_key(next), this.#body(false))) {
        this.#held = next;
        return null;
      }
      // Another VAT took that generation first: look again.
    }
    return await this.holder();
  }

  /** Keeps the lease alive; false when another VAT has taken it since. */
  async renew(): Promise<boolean> {
    if (this.#held === null) return false;
    if (await this.#newestGeneration() !== this.#held) {
      this.#held = null;
      return false;
    }
    await this.#store.put(_key(this.#held), this.#body(false));
    return true;
  }

  /** Whether this VAT still holds the lease (its generation is the newest). */
  async stillHeld(): Promise<boolean> {
    if (this.#held === null) return false;
    if (await this.#newestGeneration() === this.#held) return true;
    this.#held = null;
    return false;
  }

  /** Lets the lease go, so another VAT may take it at once. */
  async release(): Promise<void> {
    if (this.#held === null) return;
    if (await this.#newestGeneration() === this.#held) {
      await this.#store.put(_key(this.#held), this.#body(true));
    }
    this.#held = null;
  }

  #body(released: boolean): Uint8Array {
    return new TextEncoder().encode(
      JSON.stringify({
        vatId: this.#vatId,
        host: hostname(),
        released,
        at: new Date().toISOString(),
      }) + "\n",
    );
  }

  /** The highest generation (0: none), listed where the store can, else probed. */
  async #newestGeneration(): Promise<number> {
    let newest = 0;
    if (this.#store.canList) {
      for await (const key of this.#store.list("lease/")) {
        const m = /^lease\/(\d{1,9})$/.exec(key);
        if (m) newest = Math.max(newest, Number(m[1]));
      }
      return newest;
    }
    while (await this.#store.stat(_key(newest + 1))) newest++;
    return newest;
  }

  /** The store's clock: the modification time of an object written now. */
  async #storeNow(): Promise<number> {
    const key = `lease-clock/${this.#vatId}`;
    await this.#store.put(key, new Uint8Array(0));
    const info = await this.#store.stat(key);
    if (!info) throw new NotFoundError(`${this.#store.location}: ${key} vanished after a write`);
    return info.modifiedMs;
  }
}

function _key(generation: number): string {
  return `lease/${generation}`;
}
