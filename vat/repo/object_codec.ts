/**
 * How a repository names and stores the plaintext of its chunks and disk indexes
 * (docs/FORMAT.md). Appliance and release repositories name by SHA-256 and store
 * compressed plaintext (`PLAIN_CODEC`); data repositories name by a keyed hash and
 * store ciphertext (`vat/backup/sealed_codec.ts`).
 *
 * @module
 */

import { decodeChunk, encodeChunk, hashChunk } from "./chunk_codec.ts";

/** Names, encodes and decodes a repository's objects. */
export interface ObjectCodec {
  /** The 32-byte name of an object whose plaintext is `plain`. */
  nameOf(plain: Uint8Array): Uint8Array;
  /** The stored form of `plain`, which is named `name`. */
  encode(plain: Uint8Array, name: Uint8Array): Promise<Uint8Array>;
  /**
   * The plaintext of `object`, checked against `name`; `IntegrityError` naming `what`
   * when it is malformed, longer than `maxPlainBytes`, or not the object named `name`.
   */
  decode(object: Uint8Array, name: Uint8Array, what: string, maxPlainBytes: number): Uint8Array;
}

/** SHA-256 names, zstd (or raw) objects: every repository kind but `data`. */
export const PLAIN_CODEC: ObjectCodec = {
  nameOf: hashChunk,
  encode: (plain) => encodeChunk(plain),
  decode: decodeChunk,
};
