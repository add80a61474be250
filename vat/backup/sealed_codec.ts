/**
 * The object codec of data repositories (docs/FORMAT.md, "Data repositories"): an
 * object is named by HMAC-SHA256 of its plaintext under the user's name key, and
 * stored as
 *
 *     0x80 | nonce (12 bytes) | AES-256-GCM(inner) | tag (16 bytes)
 *
 * where `inner` is the plain chunk object (codec byte, then raw or zstd payload) and
 * the additional data is `"vat-sealed-v1\n"` followed by the object's 32-byte name, so
 * an object cannot be swapped for another one under a different name undetected.
 *
 * @module
 */

import { createCipheriv, createDecipheriv, createHmac, randomBytes } from "node:crypto";
import type { UserKey } from "../auth/user_key.ts";
import { IntegrityError } from "../errors.ts";
import { decodeObject, encodeChunk, toHex } from "../repo/chunk_codec.ts";
import type { ObjectCodec } from "../repo/object_codec.ts";

/** The codec byte of a sealed object (0x80 and up are reserved for encryption). */
export const CODEC_SEALED = 0x80;

const NONCE_BYTES = 12;
const TAG_BYTES = 16;
const AAD_PREFIX = new TextEncoder().encode("vat-sealed-v1\n");

/** The codec for `key`'s data repository. */
export function sealedCodec(key: UserKey): ObjectCodec {
  const aadOf = (name: Uint8Array) => {
    const aad = new Uint8Array(AAD_PREFIX.length + name.length);
    aad.set(AAD_PREFIX);
    aad.set(name, AAD_PREFIX.length);
    return aad;
  };
  return {
    nameOf(plain) {
      return new Uint8Array(createHmac("sha256", key.nameKey).update(plain).digest());
    },
    async encode(plain, name) {
      const inner = await encodeChunk(plain);
      const nonce = randomBytes(NONCE_BYTES);
      const cipher = createCipheriv("aes-256-gcm", key.chunkKey, nonce);
      cipher.setAAD(aadOf(name));
      const body = cipher.update(inner);
      const tail = cipher.final();
      const out = new Uint8Array(1 + NONCE_BYTES + inner.length + TAG_BYTES);
      out[0] = CODEC_SEALED;
      out.set(nonce, 1);
      out.set(body, 1 + NONCE_BYTES);
      out.set(tail, 1 + NONCE_BYTES + body.length);
      out.set(cipher.getAuthTag(), out.length - TAG_BYTES);
      return out;
    },
    decode(object, name, what, maxPlainBytes) {
      if (object.length < 1 + NONCE_BYTES + TAG_BYTES + 1 || object[0] !== CODEC_SEALED) {
        throw new IntegrityError(`${what} is corrupt: not a sealed object`);
      }
      const decipher = createDecipheriv(
        "aes-256-gcm",
        key.chunkKey,
        object.subarray(1, 1 + NONCE_BYTES),
      );
      decipher.setAAD(aadOf(name));
      decipher.setAuthTag(object.subarray(object.length - TAG_BYTES));
      let inner: Uint8Array;
      try {
        const head = decipher.update(object.subarray(1 + NONCE_BYTES, object.length - TAG_BYTES));
        const tail = decipher.final();
        inner = tail.length ? new Uint8Array(Buffer.concat([head, tail])) : new Uint8Array(head);
      } catch (err) {
        throw new IntegrityError(
          `${what} cannot be decrypted: it was tampered with, or this is not the key it was written with`,
          { cause: err },
        );
      }
      const plain = decodeObject(inner, what, maxPlainBytes);
      const actual = this.nameOf(plain);
      if (!Buffer.from(actual).equals(name)) {
        throw new IntegrityError(`${what} is corrupt: its content is named ${toHex(actual)}`);
      }
      return plain;
    },
  };
}
