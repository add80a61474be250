/**
 * The disk path's one interface, in the shape of an nbdkit plugin: a virtual disk of
 * fixed size with read, write, flush, trim and write-zeroes. A version's disk through
 * the chunk cache (`ChunkedDisk`) and local files (`FileDevice`) are the bottoms; the
 * copy-on-write overlay (`CowOverlay`), `ReadOnlyDevice`, `StatsDevice` and
 * `FaultyDevice` are layers in nbdkit's filter style that take a `BlockDevice` and are
 * one; the NBD server serves any stack of them. Trace recording observes `ChunkedDisk`'s
 * chunk reads instead (docs/ARCHITECTURE.md says why).
 *
 * Errors: implementations throw the classes of `vat/errors.ts` (`UsageError` for a
 * request out of range, `PermanentError` for writes to a read-only device or a full
 * disk, anything else for I/O failure); the NBD server maps them to NBD error codes.
 * No method ever returns wrong data instead of failing.
 *
 * @module
 */

import { UsageError } from "../errors.ts";

/** A virtual disk. Offsets and lengths are in bytes. */
export interface BlockDevice {
  /** The disk's size; fixed for the device's lifetime. */
  readonly sizeBytes: number;
  /** Whether write, trim and writeZeroes are refused. */
  readonly readOnly: boolean;
  /**
   * The block size the device prefers (its chunk size, for chunked devices): requests
   * aligned to it are fastest. A power of two between 512 and 32 MiB.
   */
  readonly preferredBlockBytes: number;

  /** Fills `into` with the bytes at `offset`. Must not keep a reference to `into`. */
  read(offset: number, into: Uint8Array): Promise<void>;
  /** Writes `data` at `offset`. Must not keep a reference to `data` after resolving. */
  write(offset: number, data: Uint8Array): Promise<void>;
  /** Makes every completed write durable. */
  flush(): Promise<void>;
  /** Says the range is no longer needed; later reads of it return zeroes. */
  trim(offset: number, length: number): Promise<void>;
  /** Makes the range read as zeroes. */
  writeZeroes(offset: number, length: number): Promise<void>;
  /** Flushes and releases the device. */
  close(): Promise<void>;
}

/** Throws `UsageError` unless [offset, offset+length) lies within a disk of `sizeBytes`. */
export function checkRange(sizeBytes: number, offset: number, length: number): void {
  if (
    !Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 ||
    length < 0 || offset + length > sizeBytes
  ) {
    throw new UsageError(
      `request for ${length} bytes at offset ${offset} is outside the ${sizeBytes}-byte disk`,
    );
  }
}

/**
 * Waits for every part of a request that a layer split up, then throws the first
 * failure, if any. `Promise.all` would reject at the first failure while other parts
 * still write into the caller's buffer (or read its payload): the NBD server hands
 * that buffer to the next request as soon as this one settles, so a late part would
 * put one request's bytes into another's answer.
 */
export async function settleAll(parts: readonly Promise<unknown>[]): Promise<void> {
  if (parts.length === 1) {
    await parts[0]; // the common case: nothing else can be running
    return;
  }
  const results = await Promise.allSettled(parts);
  for (const result of results) if (result.status === "rejected") throw result.reason;
}
