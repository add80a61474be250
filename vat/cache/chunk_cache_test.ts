import assert from "node:assert/strict";
import { hashChunk } from "../repo/chunk_codec.ts";
import { ChunkCache } from "./chunk_cache.ts";

const KiB = 1024;

function chunk(seed: number, length = 64 * KiB): { hash: Uint8Array; data: Uint8Array } {
  const data = new Uint8Array(length);
  for (let i = 0; i < length; i += 4) data[i] = (seed * 2654435761 + i) & 0xff;
  data[0] = seed & 0xff;
  data[1] = seed >> 8;
  return { hash: hashChunk(data), data };
}

async function withCache(
  budgetBytes: number,
  fn: (open: () => Promise<ChunkCache>, dir: string) => Promise<void>,
) {
  const dir = await Deno.makeTempDir({ prefix: "vat-cache-test-" });
  try {
    await fn(() => ChunkCache.open({ dir, budgetBytes }), dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("ChunkCache.store() keeps a chunk that read() then serves, across reopening", async () => {
  await withCache(10 * 1024 * KiB, async (open) => {
    const c = chunk(1);
    let cache = await open();
    assert.equal(cache.read(c.hash), null);
    cache.store(c.hash, c.data.slice());
    assert.deepEqual(cache.read(c.hash), c.data);
    assert.deepEqual(cache.peek(c.hash), c.data);
    assert.equal(cache.stats().hits, 1, "peek() is not counted");
    assert.equal(cache.stats().misses, 1);
    assert.equal(cache.stats().bytesFetched, c.data.length);
    await cache.close();
    cache = await open();
    assert.deepEqual(cache.read(c.hash), c.data);
    assert.equal(cache.stats().hits, 2, "counters survive a restart");
    await cache.close();
  });
});

Deno.test("ChunkCache.read() drops a chunk whose bytes on disk are bad", async () => {
  await withCache(10 * 1024 * KiB, async (open, dir) => {
    const c = chunk(2);
    let cache = await open();
    cache.store(c.hash, c.data.slice());
    await cache.close();
    // Damage the slab behind the cache's back (a bad sector, or a crash mid-write).
    const slab = `${dir}/slab-65536.bin`;
    const bytes = await Deno.readFile(slab);
    bytes[100] ^= 0xff;
    await Deno.writeFile(slab, bytes);
    cache = await open();
    assert.equal(cache.readCached(c.hash, 0, new Uint8Array(10)), false);
    assert.equal(cache.read(c.hash), null);
    assert.equal(cache.has(c.hash), false, "the bad row is gone");
    assert.equal(cache.stats().corruptDropped, 1);
    cache.store(c.hash, c.data.slice());
    assert.deepEqual(cache.read(c.hash), c.data);
    await cache.close();
  });
});

Deno.test("ChunkCache after close() drops stores and misses reads", async () => {
  await withCache(10 * 1024 * KiB, async (open) => {
    const c = chunk(3);
    const cache = await open();
    await cache.close();
    cache.store(c.hash, c.data.slice());
    assert.equal(cache.peek(c.hash), null);
    assert.equal(cache.readCached(c.hash, 0, new Uint8Array(10)), false);
    const again = await open();
    assert.equal(again.has(c.hash), false);
    await again.close();
  });
});

Deno.test("ChunkCache evicts the least recently used unpinned chunks within its budget", async () => {
  await withCache(4 * 64 * KiB, async (open) => {
    const cache = await open();
    const chunks = Array.from({ length: 6 }, (_, i) => chunk(10 + i));
    cache.store(chunks[0].hash, chunks[0].data);
    cache.pin("appliance@1", [chunks[0].hash]);
    for (const c of chunks.slice(1)) cache.store(c.hash, c.data);
    const stats = cache.stats();
    assert.ok(stats.usedBytes <= 4 * 64 * KiB);
    assert.equal(stats.bytesEvicted, 2 * 64 * KiB);
    assert.equal(cache.has(chunks[0].hash), true, "pinned chunk kept");
    assert.equal(cache.has(chunks[1].hash), false, "oldest unpinned evicted");
    assert.equal(cache.has(chunks[2].hash), false);
    assert.equal(cache.has(chunks[5].hash), true);
    assert.equal(stats.pinnedChunks, 1);
    cache.pin("hoard:desk:2", [chunks[5].hash]);
    assert.deepEqual(cache.pinOwners("hoard:desk:"), ["hoard:desk:2"]);
    assert.deepEqual(cache.pinOwners("hoard:des:"), []);
    cache.unpin("hoard:desk:2");
    cache.unpin("appliance@1");
    assert.equal(cache.stats().pinnedChunks, 0);
    assert.deepEqual(cache.pinOwners(""), []);
    await cache.close();
  });
});

Deno.test("ChunkCache stores short chunks in the smallest slot that fits", async () => {
  await withCache(10 * 1024 * KiB, async (open) => {
    const cache = await open();
    const c = chunk(5, 5000);
    cache.put(c.hash, c.data);
    assert.equal(cache.stats().usedBytes, 8 * KiB);
    assert.deepEqual(cache.read(c.hash), c.data);
    const part = new Uint8Array(100);
    assert.equal(cache.readCached(c.hash, 4900, part), true);
    assert.deepEqual(part, c.data.subarray(4900));
    assert.equal(cache.readCached(c.hash, 4950, part), false, "past the chunk's end");
    await cache.close();
  });
});

Deno.test("ChunkCache keeps a bounded index in memory, and a slot it verified stays verified once its entry is forgotten", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vat-cache-test-" });
  let hashed = 0;
  const hashOf = (data: Uint8Array) => {
    hashed++;
    return hashChunk(data);
  };
  try {
    // More chunks than the in-memory index keeps: the first one's entry is forgotten.
    const maxEntries = 256;
    const count = maxEntries * 4;
    let cache = await ChunkCache.open({ dir, budgetBytes: count * 4 * KiB, hashOf, maxEntries });
    const first = chunk(0, 4 * KiB);
    for (let i = 0; i < count; i++) {
      const c = i === 0 ? first : chunk(i, 4 * KiB);
      cache.store(c.hash, c.data);
    }
    assert.deepEqual(cache.read(first.hash), first.data);
    const into = new Uint8Array(100);
    assert.ok(cache.readCached(first.hash, 10, into));
    assert.deepEqual(into, first.data.subarray(10, 110));
    assert.equal(hashed, 0, "a slot stored by this process is never hashed again");
    await cache.close();
    // Another process checks every slot once, and only once.
    cache = await ChunkCache.open({ dir, budgetBytes: count * 4 * KiB, hashOf, maxEntries });
    for (let round = 0; round < 2; round++) {
      for (let i = 0; i < count; i++) {
        const c = chunk(i, 4 * KiB);
        assert.deepEqual(cache.read(c.hash), c.data);
      }
    }
    assert.equal(hashed, count);
    await cache.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
