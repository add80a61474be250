import assert from "node:assert/strict";
import { ChunkCache } from "../cache/chunk_cache.ts";
import { NotFoundError } from "../errors.ts";
import { hashChunk } from "../repo/chunk_codec.ts";
import { DiskIndex } from "../repo/disk_index.ts";
import { ChunkedDisk } from "./chunked_disk.ts";

const CHUNK = 4096;

Deno.test("ChunkedDisk.read() that fails settles only after every chunk did", async () => {
  // Chunk 0 fails at once, chunk 1 arrives 50 ms later. The read must not reject
  // before chunk 1 is in: the NBD server lends the buffer to the next request as soon
  // as this one fails, and a late chunk would land in that request's answer.
  const chunks = [0, 1].map((i) => new Uint8Array(CHUNK).fill(i + 1));
  const index = new DiskIndex(2 * CHUNK, CHUNK);
  chunks.forEach((data, i) => index.setHash(i, hashChunk(data)));
  const dir = await Deno.makeTempDir({ prefix: "vat-chunked-test-" });
  const cache = await ChunkCache.open({ dir, budgetBytes: 1 << 20, retryForMs: 0 });
  try {
    let chunk1Arrived = false;
    const disk = new ChunkedDisk(index, cache, async (hash) => {
      if (Buffer.from(hash).equals(index.hash(0)!)) throw new NotFoundError("chunk 0 is gone");
      await new Promise((resolve) => setTimeout(resolve, 50));
      chunk1Arrived = true;
      return chunks[1].slice();
    });
    const into = new Uint8Array(2 * CHUNK);
    await assert.rejects(disk.read(0, into), /chunk 0 is gone/);
    assert.ok(chunk1Arrived, "the read failed only once chunk 1 had come");
    const after = into.slice();
    await new Promise((resolve) => setTimeout(resolve, 80));
    assert.deepEqual(into, after, "nothing lands in the buffer after the read failed");
  } finally {
    await cache.close();
    await Deno.remove(dir, { recursive: true });
  }
});
