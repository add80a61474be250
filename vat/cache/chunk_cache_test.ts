import assert from "node:assert/strict";
import { IntegrityError, TransientError } from "../errors.ts";
import { seededRandom } from "../fault_dice.ts";
import { hashChunk } from "../repo/chunk_codec.ts";
import { Repository } from "../repo/repository.ts";
import { FaultyStore } from "../repo/store_faulty.ts";
import { MemoryStore } from "../repo/store_memory.ts";
import { RetryingStore } from "../repo/store_retrying.ts";
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
  options: { retryForMs?: number; maxConcurrentFetches?: number } = {},
) {
  const dir = await Deno.makeTempDir({ prefix: "vat-cache-test-" });
  try {
    await fn(() => ChunkCache.open({ dir, budgetBytes, ...options }), dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("ChunkCache.get() fetches a miss once, then hits, across reopening", async () => {
  await withCache(10 * 1024 * KiB, async (open) => {
    const c = chunk(1);
    let fetches = 0;
    const fetch = () => {
      fetches++;
      return Promise.resolve(c.data.slice());
    };
    let cache = await open();
    assert.deepEqual(await cache.get(c.hash, fetch), c.data);
    assert.deepEqual(await cache.get(c.hash, fetch), c.data);
    assert.equal(fetches, 1);
    assert.equal(cache.stats().hits, 1);
    assert.equal(cache.stats().misses, 1);
    assert.equal(cache.stats().bytesFetched, c.data.length);
    await cache.close();
    cache = await open();
    assert.deepEqual(await cache.get(c.hash, fetch), c.data);
    assert.equal(fetches, 1);
    assert.equal(cache.stats().hits, 2, "counters survive a restart");
    await cache.close();
  });
});

Deno.test("ChunkCache.get() drops a chunk whose bytes on disk are bad and fetches it again", async () => {
  await withCache(10 * 1024 * KiB, async (open, dir) => {
    const c = chunk(2);
    let cache = await open();
    await cache.get(c.hash, () => Promise.resolve(c.data.slice()));
    await cache.close();
    // Damage the slab behind the cache's back (a bad sector, or a crash mid-write).
    const slab = `${dir}/slab-65536.bin`;
    const bytes = await Deno.readFile(slab);
    bytes[100] ^= 0xff;
    await Deno.writeFile(slab, bytes);
    cache = await open();
    let fetched = 0;
    const got = await cache.get(c.hash, () => {
      fetched++;
      return Promise.resolve(c.data.slice());
    });
    assert.deepEqual(got, c.data);
    assert.equal(fetched, 1);
    assert.equal(cache.stats().corruptDropped, 1);
    await cache.close();
  });
});

Deno.test("ChunkCache.get() coalesces fetches of one chunk and bounds concurrency", async () => {
  await withCache(100 * 1024 * KiB, async (open) => {
    const cache = await open();
    let active = 0;
    let peak = 0;
    const calls = new Map<string, number>();
    const fetchOf = (data: Uint8Array) => async () => {
      const key = String(data[0] + data[1] * 256);
      calls.set(key, (calls.get(key) ?? 0) + 1);
      active++;
      peak = Math.max(peak, active);
      await new Promise((r) => setTimeout(r, 20));
      active--;
      return data.slice();
    };
    const chunks = Array.from({ length: 12 }, (_, i) => chunk(100 + i));
    await Promise.all(
      chunks.flatMap((c) => [1, 2, 3].map(() => cache.get(c.hash, fetchOf(c.data)))),
    );
    assert.ok([...calls.values()].every((n) => n === 1), "one fetch per chunk");
    assert.ok(peak <= 3, `at most 3 fetches at once, saw ${peak}`);
    await cache.close();
  }, { maxConcurrentFetches: 3 });
});

Deno.test("ChunkCache.get() retries a failing repository, then fails clearly", async () => {
  await withCache(10 * 1024 * KiB, async (open) => {
    const cache = await open();
    const c = chunk(3);
    let attempts = 0;
    const flaky = () => {
      attempts++;
      return attempts < 3
        ? Promise.reject(new TransientError("connection reset"))
        : Promise.resolve(c.data.slice());
    };
    assert.deepEqual(await cache.get(c.hash, flaky), c.data);
    assert.equal(attempts, 3);
    const d = chunk(4);
    const started = performance.now();
    await assert.rejects(
      cache.get(d.hash, () => Promise.reject(new TransientError("repository unreachable"))),
      (err: Error) =>
        err instanceof TransientError &&
        /fetching chunk [0-9a-f]{64} failed: repository unreachable/.test(err.message),
    );
    assert.ok(performance.now() - started < 3000, "gives up within the retry window");
    assert.equal(cache.has(d.hash), false);
    await cache.close();
  }, { retryForMs: 1000 });
});

Deno.test("ChunkCache evicts the least recently used unpinned chunks within its budget", async () => {
  await withCache(4 * 64 * KiB, async (open) => {
    const cache = await open();
    const chunks = Array.from({ length: 6 }, (_, i) => chunk(10 + i));
    const load = (c: { hash: Uint8Array; data: Uint8Array }) =>
      cache.get(c.hash, () => Promise.resolve(c.data.slice()));
    await load(chunks[0]);
    cache.pin("appliance@1", [chunks[0].hash]);
    for (const c of chunks.slice(1)) await load(c);
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
    assert.deepEqual(await cache.get(c.hash, () => Promise.resolve(c.data.slice())), c.data);
    assert.equal(cache.stats().usedBytes, 8 * KiB);
    assert.deepEqual(await cache.get(c.hash, () => Promise.reject(new Error("no fetch"))), c.data);
    await cache.close();
  });
});

/** A repository of `count` incompressible 16 KiB chunks in memory, and its chunks. */
async function repositoryOf(count: number) {
  const below = new MemoryStore();
  const repo = await Repository.init(below, { kind: "appliance", chunkSizeBytes: 16 * KiB });
  const random = seededRandom(3);
  const chunks: { hash: Uint8Array; data: Uint8Array }[] = [];
  for (let i = 0; i < count; i++) {
    const data = new Uint8Array(16 * KiB);
    for (let j = 0; j < data.length; j++) data[j] = random() * 256;
    const hash = hashChunk(data);
    await repo.writeChunk(hash, data);
    chunks.push({ hash, data });
  }
  return { below, chunks };
}

Deno.test("ChunkCache.get() over a failing store: every chunk right, once the faults pass", async () => {
  // A third of the store's calls fail: 503s, timeouts, corrupt and cut bodies. The
  // retrying store rides out the first two, the chunk's hash check and re-read the rest.
  const { below, chunks } = await repositoryOf(60);
  const faulty = new FaultyStore(below, { seed: 99, failRate: 0.33, hangMs: 20 });
  const repo = await Repository.open(new RetryingStore(faulty, { baseDelayMs: 1 }));
  await withCache(100 * 1024 * KiB, async (open) => {
    const cache = await open();
    const got = await Promise.all(chunks.map((c) => cache.get(c.hash, (h) => repo.readChunk(h))));
    got.forEach((data, i) => assert.deepEqual(data, chunks[i].data, `chunk ${i}`));
    const { injected } = faulty.dice;
    assert.ok(injected.transient && injected.timeout && injected.corrupt && injected.truncate);
    await cache.close();
  }, { retryForMs: 5000 });
});

Deno.test("ChunkCache.get() over a store failing most calls: right bytes or an error, never wrong", async () => {
  const { below, chunks } = await repositoryOf(60);
  const faulty = new FaultyStore(below, {
    seed: 7,
    failRate: 0.8,
    kinds: ["transient", "corrupt", "truncate"],
  });
  const repo = await Repository.open(below);
  const flaky = new Repository(faulty, repo.config);
  await withCache(100 * 1024 * KiB, async (open) => {
    const cache = await open();
    let failed = 0;
    for (const c of chunks) {
      try {
        assert.deepEqual(await cache.get(c.hash, (h) => flaky.readChunk(h)), c.data);
      } catch (err) {
        assert.ok(err instanceof IntegrityError || err instanceof TransientError, String(err));
        failed++;
      }
    }
    assert.ok(failed > 0 && failed < chunks.length, `${failed} of ${chunks.length} failed`);
    // What the cache kept is right: read it all back without the repository.
    for (const c of chunks) {
      const into = new Uint8Array(c.data.length);
      if (cache.readCached(c.hash, 0, into)) assert.deepEqual(into, c.data);
    }
    await cache.close();
  }, { retryForMs: 50 });
});
