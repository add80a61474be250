/**
 * `FaultyDevice`: a `BlockDevice` layer that fails a chosen fraction of the calls
 * reaching it, for tests of everything above a disk (the NBD server, the overlay, the
 * guest). Seeded and reproducible (`vat/fault_dice.ts`). Like an nbdkit filter (the
 * `error` and `delay` filters), it passes every call to the device below and changes
 * only what it injects.
 *
 * The kinds of fault:
 * - `eio`: the call fails at once with an I/O error, and does nothing.
 * - `timeout`: the call hangs for `hangMs` (bounded), does nothing, then fails with a
 *   `TransientError` saying it timed out: a device that stopped answering.
 * - `slow`: the call waits `hangMs`, then is carried out: a late but right answer.
 * - `short-read` (reads only): the device below delivers only the first part of the
 *   range. A `BlockDevice` reads exactly or fails, so the layer fails the call with an
 *   I/O error; the bytes it did not get are left poisoned (0xEE) in `into`, so a layer
 *   above that ignored the failure would hand out visibly wrong data (and the tests
 *   would see it).
 *
 * @module
 */

import { FaultDice, type FaultOptions, Hangs } from "../fault_dice.ts";
import { TransientError } from "../errors.ts";
import type { BlockDevice } from "./block_device.ts";

/** What a `FaultyDevice` may inject. */
export type DeviceFault = "eio" | "timeout" | "slow" | "short-read";

/** The calls of a `BlockDevice` that may be failed (`close` never is). */
export type DeviceCall = "read" | "write" | "flush" | "trim" | "writeZeroes";

const _ALL_FAULTS: readonly DeviceFault[] = ["eio", "timeout", "slow", "short-read"];
const _ALL_CALLS: readonly DeviceCall[] = ["read", "write", "flush", "trim", "writeZeroes"];
const _NOT_SHORT: readonly DeviceFault[] = ["eio", "timeout", "slow"];
/** The byte left where a short read delivered nothing. */
export const SHORT_READ_POISON = 0xee;

/** Options of a `FaultyDevice`. */
export interface FaultyDeviceOptions extends FaultOptions<DeviceFault> {
  /** Which calls may fail (default: all but close). */
  calls?: readonly DeviceCall[];
  /** How long a `timeout` or `slow` call waits, at most 60 s (default 1000 ms). */
  hangMs?: number;
}

/** A `BlockDevice` that fails some of the calls to the one below. */
export class FaultyDevice implements BlockDevice {
  readonly sizeBytes: number;
  readonly readOnly: boolean;
  readonly preferredBlockBytes: number;
  /** The choices made so far: calls seen and faults injected by kind. */
  readonly dice: FaultDice<DeviceFault>;
  readonly #next: BlockDevice;
  readonly #calls: ReadonlySet<DeviceCall>;
  readonly #hangs: Hangs;

  constructor(next: BlockDevice, options: FaultyDeviceOptions) {
    this.dice = new FaultDice(options, _ALL_FAULTS);
    this.#hangs = new Hangs(options.hangMs);
    this.#calls = new Set(options.calls ?? _ALL_CALLS);
    this.#next = next;
    this.sizeBytes = next.sizeBytes;
    this.readOnly = next.readOnly;
    this.preferredBlockBytes = next.preferredBlockBytes;
  }

  async read(offset: number, into: Uint8Array): Promise<void> {
    const fault = this.#roll("read", into.length > 0 ? _ALL_FAULTS : _NOT_SHORT);
    if (fault !== "short-read") {
      return await this.#run(
        fault,
        "read",
        offset,
        into.length,
        () => this.#next.read(offset, into),
      );
    }
    await this.#next.read(offset, into);
    // Keep at least one byte short, so the call is a short read and not a whole one.
    const got = Math.floor(this.dice.fraction() * into.length);
    into.fill(SHORT_READ_POISON, got);
    throw new Error(
      `injected fault: short read of ${into.length} bytes at offset ${offset}: the device ` +
        `delivered ${got} bytes`,
    );
  }

  write(offset: number, data: Uint8Array): Promise<void> {
    return this.#run(
      this.#roll("write"),
      "write",
      offset,
      data.length,
      () => this.#next.write(offset, data),
    );
  }

  flush(): Promise<void> {
    return this.#run(this.#roll("flush"), "flush", 0, 0, () => this.#next.flush());
  }

  trim(offset: number, length: number): Promise<void> {
    return this.#run(
      this.#roll("trim"),
      "trim",
      offset,
      length,
      () => this.#next.trim(offset, length),
    );
  }

  writeZeroes(offset: number, length: number): Promise<void> {
    return this.#run(
      this.#roll("writeZeroes"),
      "write zeroes",
      offset,
      length,
      () => this.#next.writeZeroes(offset, length),
    );
  }

  /** Wakes any hanging call (it then fails) and closes the device below. */
  async close(): Promise<void> {
    this.#hangs.close();
    await this.#next.close();
  }

  #roll(call: DeviceCall, allowed: readonly DeviceFault[] = _NOT_SHORT): DeviceFault | null {
    return this.#calls.has(call) ? this.dice.roll(allowed) : null;
  }

  async #run(
    fault: DeviceFault | null,
    what: string,
    offset: number,
    length: number,
    call: () => Promise<void>,
  ): Promise<void> {
    const request = `${what} of ${length} bytes at offset ${offset}`;
    if (fault === "eio") throw new Error(`injected fault: I/O error on ${request}`);
    if (fault === "timeout" || fault === "slow") {
      await this.#hangs.wait();
      if (this.#hangs.closed) {
        throw new TransientError(`injected fault: ${request} hung until the device was closed`);
      }
      if (fault === "timeout") {
        throw new TransientError(`injected fault: ${request} timed out after ${this.#hangs.ms} ms`);
      }
    }
    await call();
  }
}
