/**
 * `StatsDevice`: a `BlockDevice` layer (in the nbdkit filter style: the same shape as
 * what it wraps, overriding only what it counts) that counts the bytes read and
 * written in each region of the disk into an `AccessMap`. Placed on top of a disk's
 * stack, it sees exactly the guest's requests.
 *
 * @module
 */

import type { AccessMap } from "./access_map.ts";
import type { BlockDevice } from "./block_device.ts";

/** Counts every request of `next` into `map`. */
export class StatsDevice implements BlockDevice {
  readonly sizeBytes: number;
  readonly readOnly: boolean;
  readonly preferredBlockBytes: number;
  readonly map: AccessMap;
  readonly #next: BlockDevice;

  constructor(next: BlockDevice, map: AccessMap) {
    this.#next = next;
    this.map = map;
    this.sizeBytes = next.sizeBytes;
    this.readOnly = next.readOnly;
    this.preferredBlockBytes = next.preferredBlockBytes;
  }

  async read(offset: number, into: Uint8Array): Promise<void> {
    await this.#next.read(offset, into);
    this.map.countRead(offset, into.length);
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    await this.#next.write(offset, data);
    this.map.countWrite(offset, data.length);
  }

  flush(): Promise<void> {
    return this.#next.flush();
  }

  async trim(offset: number, length: number): Promise<void> {
    await this.#next.trim(offset, length);
    this.map.countWrite(offset, length);
  }

  async writeZeroes(offset: number, length: number): Promise<void> {
    await this.#next.writeZeroes(offset, length);
    this.map.countWrite(offset, length);
  }

  close(): Promise<void> {
    return this.#next.close();
  }
}
