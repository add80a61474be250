/**
 * The disk index: a virtual disk cut into fixed-size chunks aligned to disk offsets,
 * each named by its hash, with all-zero chunks marked by an all-zero hash. Its byte
 * layout is in docs/FORMAT.md, "Disk index".
 *
 * @module
 */

import { IntegrityError } from "../errors.ts";
import { HASH_BYTES } from "./chunk_codec.ts";

const MAGIC = "VATIDX01";
const HEADER_BYTES = 32;
/** Largest disk an index may describe (64 TiB), a bound on what a reader allocates. */
const MAX_DISK_BYTES = 2 ** 46;

/** Smallest and largest chunk sizes a repository may use. */
export const MIN_CHUNK_BYTES = 4096;
export const MAX_CHUNK_BYTES = 16 * 1024 * 1024;

/** The chunk map of one disk of one version. */
export class DiskIndex {
  readonly sizeBytes: number;
  readonly chunkBytes: number;
  /** `count * HASH_BYTES` bytes; entry i is chunk i's hash, all-zero for a zero chunk. */
  readonly hashes: Uint8Array;

  constructor(sizeBytes: number, chunkBytes: number, hashes?: Uint8Array) {
    if (!Number.isSafeInteger(sizeBytes) || sizeBytes < 0 || sizeBytes > MAX_DISK_BYTES) {
      throw new IntegrityError(`disk size ${sizeBytes} is out of range`);
    }
    checkChunkBytes(chunkBytes);
    this.sizeBytes = sizeBytes;
    this.chunkBytes = chunkBytes;
    const expected = this.count * HASH_BYTES;
    if (hashes && hashes.length !== expected) {
      throw new IntegrityError(`disk index has ${hashes.length} hash bytes, expected ${expected}`);
    }
    this.hashes = hashes ?? new Uint8Array(expected);
  }

  /** Number of chunks, the last one possibly short. */
  get count(): number {
    return Math.ceil(this.sizeBytes / this.chunkBytes);
  }

  /** The length of chunk `i` (the last may be shorter than `chunkBytes`). */
  chunkLength(i: number): number {
    return Math.min(this.chunkBytes, this.sizeBytes - i * this.chunkBytes);
  }

  /** Chunk `i`'s hash (a view, not a copy), or null for an all-zero chunk. */
  hash(i: number): Uint8Array | null {
    const h = this.hashes.subarray(i * HASH_BYTES, (i + 1) * HASH_BYTES);
    for (let j = 0; j < HASH_BYTES; j++) if (h[j] !== 0) return h;
    return null;
  }

  /** Every chunk that is not all zeroes, in disk order: its number and hash (a view). */
  *dataChunks(): IterableIterator<[number, Uint8Array]> {
    for (let i = 0; i < this.count; i++) {
      const hash = this.hash(i);
      if (hash) yield [i, hash];
    }
  }

  /** How many chunks are not all zeroes (the manifest's `dataChunks`). */
  dataChunkCount(): number {
    let n = 0;
    for (const _ of this.dataChunks()) n++;
    return n;
  }

  /** Sets chunk `i`'s hash; null marks it all-zero. */
  setHash(i: number, hash: Uint8Array | null): void {
    const at = i * HASH_BYTES;
    if (hash) this.hashes.set(hash, at);
    else this.hashes.fill(0, at, at + HASH_BYTES);
  }

  /** The serialized index (docs/FORMAT.md). */
  toBytes(): Uint8Array {
    const out = new Uint8Array(HEADER_BYTES + this.hashes.length);
    const view = new DataView(out.buffer);
    out.set(new TextEncoder().encode(MAGIC), 0);
    view.setBigUint64(8, BigInt(this.sizeBytes));
    view.setUint32(16, this.chunkBytes);
    view.setUint32(20, this.count);
    view.setUint32(24, HASH_BYTES);
    out.set(this.hashes, HEADER_BYTES);
    return out;
  }

  /** Parses a serialized index; throws `IntegrityError` naming `what` if malformed. */
  static fromBytes(bytes: Uint8Array, what: string): DiskIndex {
    if (bytes.length < HEADER_BYTES) throw new IntegrityError(`${what} is truncated`);
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    if (new TextDecoder().decode(bytes.subarray(0, 8)) !== MAGIC) {
      throw new IntegrityError(`${what} is not a vat disk index (bad magic)`);
    }
    const size = view.getBigUint64(8);
    const chunkBytes = view.getUint32(16);
    const count = view.getUint32(20);
    const hashBytes = view.getUint32(24);
    if (hashBytes !== HASH_BYTES || size > BigInt(MAX_DISK_BYTES)) {
      throw new IntegrityError(`${what} has an unsupported header`);
    }
    try {
      checkChunkBytes(chunkBytes);
    } catch (err) {
      throw new IntegrityError(`${what}: ${(err as Error).message}`);
    }
    const index = new DiskIndex(
      Number(size),
      chunkBytes,
      bytes.slice(HEADER_BYTES),
    );
    if (index.count !== count) {
      throw new IntegrityError(`${what} is truncated or has a wrong chunk count`);
    }
    return index;
  }
}

/** Throws unless `chunkBytes` is a power of two within the allowed range. */
export function checkChunkBytes(chunkBytes: number): void {
  if (
    !Number.isInteger(chunkBytes) || chunkBytes < MIN_CHUNK_BYTES ||
    chunkBytes > MAX_CHUNK_BYTES || (chunkBytes & (chunkBytes - 1)) !== 0
  ) {
    throw new IntegrityError(
      `chunk size ${chunkBytes} must be a power of two from 4 KiB to 16 MiB`,
    );
  }
}
