import assert from "node:assert/strict";
import { zstdCompressSync } from "node:zlib";
import { IntegrityError } from "../errors.ts";
import { CODEC_ZSTD, decodeChunk, decodeObject, encodeChunk, hashChunk } from "./chunk_codec.ts";

function zstdObject(plain: Uint8Array): Uint8Array {
  const packed = zstdCompressSync(plain);
  const object = new Uint8Array(packed.length + 1);
  object[0] = CODEC_ZSTD;
  object.set(packed, 1);
  return object;
}

Deno.test("decodeObject() decodes zstd up to the limit exactly, refuses a byte more", () => {
  const limit = 64 * 1024;
  for (const length of [0, 1, 4096, limit - 1, limit]) {
    const plain = new Uint8Array(length).map((_, i) => i % 7);
    const out = decodeObject(zstdObject(plain), "test object", limit);
    assert.deepEqual(out, plain);
    assert.equal(Object.getPrototypeOf(out), Uint8Array.prototype, "a plain Uint8Array");
  }
  assert.throws(
    () => decodeObject(zstdObject(new Uint8Array(limit + 1)), "test object", limit),
    (err) => err instanceof IntegrityError && /does not decode/.test(err.message),
  );
});

Deno.test("decodeChunk() gives a chunk whose slice() is a copy", async () => {
  const plain = new Uint8Array(65536).map((_, i) => (i * 31) % 251);
  const out = decodeChunk(await encodeChunk(plain), hashChunk(plain), "chunk", plain.length);
  const copy = out.slice();
  copy[0] ^= 1;
  assert.equal(out[0], plain[0]);
});
