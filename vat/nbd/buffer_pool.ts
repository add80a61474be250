/**
 * `BufferPool`: reusable buffers for read replies and write payloads.
 *
 * @module
 */

/** The smallest buffer handed out, and the spacing of sizes: powers of two from here. */
const _MIN_CLASS_BITS = 12;

/**
 * Lends byte buffers and takes them back for reuse. A fresh large `Uint8Array` costs
 * zero-filled memory (page faults, for the sizes NBD moves); a reused one costs
 * nothing. Buffers come in power-of-two sizes (plus `headroom` bytes in front for a
 * reply header); at most `maxPooledBytes` wait in the pool, the rest are left to the
 * garbage collector.
 *
 * A lent buffer's bytes are whatever its last borrower left: the caller must
 * overwrite every byte it sends.
 */
export class BufferPool {
  readonly headroom: number;
  #maxPooledBytes: number;
  #pooledBytes = 0;
  #free = new Map<number, ArrayBuffer[]>();

  constructor(options: { headroom: number; maxPooledBytes: number }) {
    this.headroom = options.headroom;
    this.#maxPooledBytes = options.maxPooledBytes;
  }

  /** A buffer of exactly `headroom + length` bytes, contents undefined. */
  take(length: number): Uint8Array {
    const capacity = this.headroom + _classBytes(length);
    const free = this.#free.get(capacity);
    const buffer = free?.pop();
    if (buffer === undefined) {
      return new Uint8Array(new ArrayBuffer(capacity), 0, this.headroom + length);
    }
    this.#pooledBytes -= capacity;
    return new Uint8Array(buffer, 0, this.headroom + length);
  }

  /** Returns a buffer from `take()`; the caller must not use it afterwards. */
  give(view: Uint8Array): void {
    const buffer = view.buffer as ArrayBuffer;
    const capacity = buffer.byteLength;
    if (this.#pooledBytes + capacity > this.#maxPooledBytes) return;
    let free = this.#free.get(capacity);
    if (free === undefined) this.#free.set(capacity, free = []);
    free.push(buffer);
    this.#pooledBytes += capacity;
  }
}

/** `length` rounded up to a power of two, at least 2^_MIN_CLASS_BITS. */
function _classBytes(length: number): number {
  let bytes = 1 << _MIN_CLASS_BITS;
  while (bytes < length) bytes *= 2;
  return bytes;
}
