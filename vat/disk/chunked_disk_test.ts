import assert from "node:assert/strict";
import { ChunkCache } from "../cache/chunk_cache.ts";
import { NotFoundError } from "../errors.ts";
import { fetchPath } from "../fetch/fetch_path.ts";
import { hashChunk, toHex } from "../repo/chunk_codec.ts";
import { DiskIndex } from "../repo/disk_index.ts";
import { ChunkedDisk } from "./chunked_disk.ts";

const CHUNK = 4096;

/** A disk of 4 chunks and a half: chunk 2 all zeroes, the last one short. */
function disk(): { data: Uint8Array; index: DiskIndex; chunks: Map<string, Uint8Array> } {
  const data = new Uint8Array(4 * CHUNK + 1000);
  for (let i = 0; i < data.length; i++) data[i] = (i * 7 + (i >> 12)) & 0xff || 1;
  data.fill(0, 2 * CHUNK, 3 * CHUNK);
  const index = new DiskIndex(data.length, CHUNK);
  const chunks = new Map<string, Uint8Array>();
  for (let i = 0; i < index.count; i++) {
    if (i === 2) continue;
    const chunk = data.slice(i * CHUNK, i * CHUNK + index.chunkLength(i));
    const hash = new Uint8Array(hashChunk(chunk));
    index.setHash(i, hash);
    chunks.set(toHex(hash), chunk);
  }
  return { data, index, chunks };
}

Deno.test("ChunkedDisk.read() fetches each missing chunk once, never a zero chunk, then reads from the cache", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vat-chunked-disk-test-" });
  const cache = await ChunkCache.open({ dir, budgetBytes: 1 << 20 });
  try {
    const { data, index, chunks } = disk();
    const fetched: string[] = [];
    const transport = (hash: Uint8Array) => {
      fetched.push(toHex(hash));
      return Promise.resolve(chunks.get(toHex(hash))!.slice());
    };
    const device = new ChunkedDisk(index, fetchPath({ cache, transport }));
    const seen: [number, boolean][] = [];
    const unobserve = device.observe((chunk, missed) => seen.push([chunk, missed]));
    // Across every chunk boundary, twice at once: one fetch per chunk.
    const a = new Uint8Array(data.length - 100);
    const b = new Uint8Array(data.length - 100);
    await Promise.all([device.read(50, a), device.read(50, b)]);
    assert.deepEqual(a, data.subarray(50, data.length - 50));
    assert.deepEqual(b, a);
    assert.equal(fetched.length, 4, "chunks 0, 1, 3 and 4, each once; chunk 2 is zeroes");
    assert.deepEqual(seen.filter(([c]) => c === 2), [[2, false], [2, false]]);
    // Now from the cache: no fetch, and the observer hears hits.
    seen.length = 0;
    const c = new Uint8Array(CHUNK);
    await device.read(3 * CHUNK + 10, c.subarray(0, 1000));
    assert.deepEqual(c.subarray(0, 1000), data.subarray(3 * CHUNK + 10, 3 * CHUNK + 1010));
    assert.equal(fetched.length, 4);
    assert.deepEqual(seen, [[3, false]]);
    unobserve();
    const whole = await device.readChunk(4);
    assert.deepEqual(whole, data.subarray(4 * CHUNK));
    whole![0] ^= 0xff; // a copy the caller may keep and change
    assert.deepEqual(await device.readChunk(4), data.subarray(4 * CHUNK));
    assert.equal(await device.readChunk(2), null);
    await assert.rejects(device.write(), /read-only/);
  } finally {
    await cache.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("ChunkedDisk.read() that fails settles only after every chunk did", async () => {
  // Chunk 0 fails at once, chunk 1 arrives 50 ms later. The read must not reject
  // before chunk 1 is in: the NBD server lends the buffer to the next request as soon
  // as this one fails, and a late chunk would land in that request's answer.
  const chunks = [0, 1].map((i) => new Uint8Array(CHUNK).fill(i + 1));
  const index = new DiskIndex(2 * CHUNK, CHUNK);
  chunks.forEach((data, i) => index.setHash(i, hashChunk(data)));
  const dir = await Deno.makeTempDir({ prefix: "vat-chunked-test-" });
  const cache = await ChunkCache.open({ dir, budgetBytes: 1 << 20 });
  try {
    let chunk1Arrived = false;
    const transport = async (hash: Uint8Array) => {
      if (Buffer.from(hash).equals(index.hash(0)!)) throw new NotFoundError("chunk 0 is gone");
      await new Promise((resolve) => setTimeout(resolve, 50));
      chunk1Arrived = true;
      return chunks[1].slice();
    };
    const disk = new ChunkedDisk(index, fetchPath({ cache, transport, retryForMs: 0 }));
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
