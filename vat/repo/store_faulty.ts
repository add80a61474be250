/**
 * `FaultyStore`: a `Store` wrapper that fails a chosen fraction of the calls reaching
 * it, for tests of everything that reads or writes a repository (the chunk cache, the
 * retrying wrapper, publish, backup). Seeded and reproducible (`vat/fault_dice.ts`).
 *
 * The kinds of fault, each applied only to the calls it makes sense for:
 * - `transient` (every call): fails before doing anything with a `TransientError` of
 *   status 503, as a busy server (500, 503 `SlowDown`, 429) would.
 * - `timeout` (every call): hangs for `hangMs` (bounded), does nothing, then fails
 *   with a `TransientError` without a status, as a server that never answers would.
 * - `lost-reply` (put, create, delete): carries the call out, then fails with a
 *   `TransientError`, as when the reply to a write that succeeded is lost. A retry
 *   must be harmless (the `Store` contract makes writes idempotent and a create
 *   retried over its own bytes true).
 * - `corrupt` (get, getRange): answers with one byte of the body flipped.
 * - `truncate` (get, getRange): answers with the body cut short, as a proxy that
 *   hangs up early and is believed would.
 *
 * Corrupt and truncated bodies succeed: only a check above (a chunk's hash, a
 * signature, a JSON parser) can catch them, which is what they test. An empty body
 * cannot be corrupted or cut, so those calls fail transiently instead.
 *
 * @module
 */

import { FaultDice, type FaultOptions, Hangs } from "../fault_dice.ts";
import { TransientError } from "../errors.ts";
import type { ObjectInfo, PutOptions, ReadOptions, Store } from "./store.ts";

/** What a `FaultyStore` may inject. */
export type StoreFault = "transient" | "timeout" | "lost-reply" | "corrupt" | "truncate";

const _ALL_FAULTS: readonly StoreFault[] = [
  "transient",
  "timeout",
  "lost-reply",
  "corrupt",
  "truncate",
];
const _READ_FAULTS: readonly StoreFault[] = ["transient", "timeout", "corrupt", "truncate"];
const _WRITE_FAULTS: readonly StoreFault[] = ["transient", "timeout", "lost-reply"];
const _OTHER_FAULTS: readonly StoreFault[] = ["transient", "timeout"];

/** Options of a `FaultyStore`. */
export interface FaultyStoreOptions extends FaultOptions<StoreFault> {
  /** How long a `timeout` call hangs, at most 60 s (default 1000 ms). */
  hangMs?: number;
  /** Which keys may see faults (default: every key). */
  keys?: (key: string) => boolean;
}

/** A `Store` that fails some of the calls to the one below. */
export class FaultyStore implements Store {
  readonly location: string;
  readonly canList: boolean;
  /** The choices made so far: calls seen and faults injected by kind. */
  readonly dice: FaultDice<StoreFault>;
  readonly #next: Store;
  readonly #hangs: Hangs;
  readonly #keys: (key: string) => boolean;

  constructor(next: Store, options: FaultyStoreOptions) {
    this.dice = new FaultDice(options, _ALL_FAULTS);
    this.#hangs = new Hangs(options.hangMs);
    this.#keys = options.keys ?? (() => true);
    this.#next = next;
    this.location = next.location;
    this.canList = next.canList;
  }

  get(key: string, options?: ReadOptions): Promise<Uint8Array> {
    options?.signal?.throwIfAborted();
    return this.#read(key, `get ${key}`, () => this.#next.get(key, options));
  }

  getRange(key: string, offset: number, length: number): Promise<Uint8Array> {
    return this.#read(
      key,
      `get ${key} at ${offset}+${length}`,
      () => this.#next.getRange(key, offset, length),
    );
  }

  put(key: string, data: Uint8Array, options?: PutOptions): Promise<void> {
    return this.#write(key, `put ${key}`, () => this.#next.put(key, data, options));
  }

  create(key: string, data: Uint8Array): Promise<boolean> {
    return this.#write(key, `create ${key}`, () => this.#next.create(key, data));
  }

  delete(key: string): Promise<void> {
    return this.#write(key, `delete ${key}`, () => this.#next.delete(key));
  }

  async stat(key: string): Promise<ObjectInfo | null> {
    await this.#inject(this.#roll(key, _OTHER_FAULTS), `stat ${key}`);
    return await this.#next.stat(key);
  }

  async *list(prefix: string): AsyncIterable<string> {
    await this.#inject(this.#roll(prefix, _OTHER_FAULTS), `list ${prefix}`);
    yield* this.#next.list(prefix);
  }

  /** Wakes any hanging call (it then fails) and closes the store below. */
  async close(): Promise<void> {
    this.#hangs.close();
    await this.#next.close();
  }

  #roll(key: string, allowed: readonly StoreFault[]): StoreFault | null {
    return this.#keys(key) ? this.dice.roll(allowed) : null;
  }

  async #read(key: string, what: string, call: () => Promise<Uint8Array>): Promise<Uint8Array> {
    const fault = this.#roll(key, _READ_FAULTS);
    if (fault !== "corrupt" && fault !== "truncate") {
      await this.#inject(fault, what);
      return await call();
    }
    const body = await call();
    if (body.length === 0) {
      throw new TransientError(`injected fault: ${what} in ${this.location} failed (503)`, {
        status: 503,
      });
    }
    const at = Math.floor(this.dice.fraction() * body.length);
    if (fault === "truncate") return body.slice(0, at);
    const damaged = body.slice();
    damaged[at] ^= 0x5a;
    return damaged;
  }

  async #write<T>(key: string, what: string, call: () => Promise<T>): Promise<T> {
    const fault = this.#roll(key, _WRITE_FAULTS);
    if (fault !== "lost-reply") {
      await this.#inject(fault, what);
      return await call();
    }
    await call();
    throw new TransientError(
      `injected fault: the reply to ${what} in ${this.location} was lost (it was carried out)`,
    );
  }

  /** Fails as `fault` says before a call is made (nothing for null). */
  async #inject(fault: StoreFault | null, what: string): Promise<void> {
    if (fault === null) return;
    if (fault === "timeout") {
      await this.#hangs.wait();
      const why = this.#hangs.closed
        ? "hung until the store was closed"
        : `timed out after ${this.#hangs.ms} ms`;
      throw new TransientError(`injected fault: ${what} in ${this.location} ${why}`);
    }
    throw new TransientError(`injected fault: ${what} in ${this.location} failed (503)`, {
      status: 503,
    });
  }
}
