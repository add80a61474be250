/**
 * Chunk objects: how one chunk's plaintext is named and stored (docs/FORMAT.md,
 * "Chunk objects"). A chunk is named by the SHA-256 of its plaintext; its object is one
 * codec byte followed by the payload: raw, or zstd when that is smaller.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { promisify } from "node:util";
import { constants, zstdCompress, zstdCompressSync, zstdDecompressSync } from "node:zlib";
import { IntegrityError } from "../errors.ts";

/** Length of a chunk hash in bytes. */
export const HASH_BYTES = 32;

/** Codec bytes, the first byte of every chunk object. */
export const CODEC_RAW = 0x00;
export const CODEC_ZSTD = 0x01;

const ZSTD_OPTIONS = { params: { [constants.ZSTD_c_compressionLevel]: 3 } };
const zstdCompressAsync = promisify(zstdCompress);

/** A chunk hash as 64 lowercase hex digits. */
export type ChunkId = string;

/** SHA-256 of `data`. */
export function hashChunk(data: Uint8Array): Uint8Array {
  return createHash("sha256").update(data).digest();
}

/** Hex form of a hash. */
export function toHex(hash: Uint8Array): ChunkId {
  return Buffer.from(hash.buffer, hash.byteOffset, hash.byteLength).toString("hex");
}

/** Binary form of a hex hash; throws `IntegrityError` when it is not 64 hex digits. */
export function fromHex(id: string): Uint8Array {
  if (!/^[0-9a-f]{64}$/.test(id)) throw new IntegrityError(`"${id}" is not a chunk hash`);
  return new Uint8Array(Buffer.from(id, "hex"));
}

/** The store key of a chunk: `chunks/<first two hex digits>/<hex>`. */
export function chunkKey(id: ChunkId): string {
  return `chunks/${id.slice(0, 2)}/${id}`;
}

/** Whether every byte of `data` is zero. */
export function isAllZero(data: Uint8Array): boolean {
  // Compare eight bytes at a time where the alignment allows it.
  const head = (8 - (data.byteOffset % 8)) % 8;
  const start = Math.min(head, data.length);
  for (let i = 0; i < start; i++) if (data[i] !== 0) return false;
  const words = Math.floor((data.length - start) / 8);
  const wide = new BigUint64Array(data.buffer, data.byteOffset + start, words);
  for (let i = 0; i < words; i++) if (wide[i] !== 0n) return false;
  for (let i = start + words * 8; i < data.length; i++) if (data[i] !== 0) return false;
  return true;
}

function _frame(codec: number, payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(payload.length + 1);
  out[0] = codec;
  out.set(payload, 1);
  return out;
}

/** Encodes a chunk's plaintext as a chunk object (zstd, or raw when that is smaller). */
export async function encodeChunk(plain: Uint8Array): Promise<Uint8Array> {
  const packed: Uint8Array = await zstdCompressAsync(plain, ZSTD_OPTIONS);
  return packed.length < plain.length ? _frame(CODEC_ZSTD, packed) : _frame(CODEC_RAW, plain);
}

/** Synchronous `encodeChunk`, for small objects such as indexes. */
export function encodeChunkSync(plain: Uint8Array): Uint8Array {
  const packed = zstdCompressSync(plain, ZSTD_OPTIONS);
  return packed.length < plain.length ? _frame(CODEC_ZSTD, packed) : _frame(CODEC_RAW, plain);
}

/**
 * Decodes a chunk object and checks its plaintext against `expected` (its hash);
 * throws `IntegrityError` naming `what` when the object is malformed or does not match.
 */
export function decodeChunk(
  object: Uint8Array,
  expected: Uint8Array,
  what: string,
  maxPlainBytes: number,
): Uint8Array {
  const plain = decodeObject(object, what, maxPlainBytes);
  const actual = hashChunk(plain);
  if (!Buffer.from(actual).equals(expected)) {
    throw new IntegrityError(
      `${what} is corrupt: its content hashes to ${toHex(actual)}, not ${toHex(expected)}`,
    );
  }
  return plain;
}

/** The largest output buffer `decodeObject` allocates at once (chunks are at most 16 MiB). */
const MAX_ONE_BUFFER_BYTES = 32 * 1024 * 1024 + 1;

/** Decodes a framed object without checking a hash (the caller checks it). */
export function decodeObject(object: Uint8Array, what: string, maxPlainBytes: number): Uint8Array {
  if (object.length < 1) throw new IntegrityError(`${what} is corrupt: empty object`);
  const payload = object.subarray(1);
  switch (object[0]) {
    case CODEC_RAW:
      if (payload.length > maxPlainBytes) {
        throw new IntegrityError(`${what} is corrupt: ${payload.length} bytes is too long`);
      }
      return payload;
    case CODEC_ZSTD:
      try {
        // One output buffer that holds any valid chunk (one byte more, so a longer output
        // still fails): node:zlib's default chunks would allocate and join 2.25x as much.
        // Larger objects (a disk index may be up to 512 MiB) are decoded in pieces, not
        // into a buffer of their limit.
        const plain = zstdDecompressSync(payload, {
          maxOutputLength: maxPlainBytes,
          chunkSize: Math.min(maxPlainBytes + 1, MAX_ONE_BUFFER_BYTES),
        });
        // A plain Uint8Array over the Buffer's bytes, not a copy (a Buffer's slice() is a view).
        return new Uint8Array(plain.buffer, plain.byteOffset, plain.byteLength);
      } catch (err) {
        throw new IntegrityError(`${what} is corrupt: zstd data does not decode`, {
          cause: err,
        });
      }
    default:
      throw new IntegrityError(`${what} is corrupt: unknown codec byte ${object[0]}`);
  }
}
