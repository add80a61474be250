/**
 * `ReadOnlyDevice`: a `BlockDevice` layer (nbdkit's `readonly` filter) that serves what
 * it wraps for reading and refuses write, trim and write-zeroes with `PermanentError`
 * (NBD: EPERM; the export says read-only, so clients do not try). Used to look at a
 * writable disk, e.g. a user disk's overlay, without changing it.
 *
 * @module
 */

import { PermanentError } from "../errors.ts";
import type { BlockDevice } from "./block_device.ts";

/** `next`, read-only. */
export class ReadOnlyDevice implements BlockDevice {
  readonly sizeBytes: number;
  readonly readOnly = true;
  readonly preferredBlockBytes: number;
  readonly #next: BlockDevice;

  constructor(next: BlockDevice) {
    this.#next = next;
    this.sizeBytes = next.sizeBytes;
    this.preferredBlockBytes = next.preferredBlockBytes;
  }

  read(offset: number, into: Uint8Array): Promise<void> {
    return this.#next.read(offset, into);
  }

  write(_offset: number, _data: Uint8Array): Promise<void> {
    return _refuse("write to");
  }

  /** Nothing was written through this layer: nothing to make durable. */
  flush(): Promise<void> {
    return Promise.resolve();
  }

  trim(_offset: number, _length: number): Promise<void> {
    return _refuse("trim");
  }

  writeZeroes(_offset: number, _length: number): Promise<void> {
    return _refuse("write zeroes to");
  }

  close(): Promise<void> {
    return this.#next.close();
  }
}

function _refuse(what: string): Promise<never> {
  return Promise.reject(new PermanentError(`cannot ${what} this disk: it is served read-only`));
}
