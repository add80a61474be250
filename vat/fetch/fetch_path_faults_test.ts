/**
 * The fetch path over stores that fail (`FaultyStore`): retried failures give the
 * right bytes, and what fails for good is an error, never wrong data in the cache.
 */

import assert from "node:assert/strict";
import { ChunkCache } from "../cache/chunk_cache.ts";
import { IntegrityError, TransientError } from "../errors.ts";
import { seededRandom } from "../fault_dice.ts";
import { hashChunk } from "../repo/chunk_codec.ts";
import { Repository } from "../repo/repository.ts";
import { FaultyStore } from "../repo/store_faulty.ts";
import { MemoryStore } from "../repo/store_memory.ts";
import { RetryingStore } from "../repo/store_retrying.ts";
import { fetchPath } from "./fetch_path.ts";

const KiB = 1024;

async function withCache(
  budgetBytes: number,
  fn: (open: () => Promise<ChunkCache>) => Promise<void>,
) {
  const dir = await Deno.makeTempDir({ prefix: "vat-fetch-faults-test-" });
  try {
    await fn(() => ChunkCache.open({ dir, budgetBytes }));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

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

Deno.test("FetchPath over a failing store: every chunk right, once the faults pass", async () => {
  // A third of the store's calls fail: 503s, timeouts, corrupt and cut bodies. The
  // retrying store rides out the first two, the chunk's hash check and re-read the rest.
  const { below, chunks } = await repositoryOf(60);
  const faulty = new FaultyStore(below, { seed: 99, failRate: 0.33, hangMs: 20 });
  const repo = await Repository.open(new RetryingStore(faulty, { baseDelayMs: 1 }));
  await withCache(100 * 1024 * KiB, async (open) => {
    const cache = await open();
    const path = fetchPath({ cache, transport: (h) => repo.readChunk(h), retryForMs: 5000 });
    const got = await Promise.all(chunks.map((c) => path.get(c.hash)));
    got.forEach((data, i) => assert.deepEqual(data, chunks[i].data, `chunk ${i}`));
    const { injected } = faulty.dice;
    assert.ok(injected.transient && injected.timeout && injected.corrupt && injected.truncate);
    await cache.close();
  });
});

Deno.test("FetchPath over a store failing most calls: right bytes or an error, never wrong", async () => {
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
    const path = fetchPath({ cache, transport: (h) => flaky.readChunk(h), retryForMs: 50 });
    let failed = 0;
    for (const c of chunks) {
      try {
        assert.deepEqual(await path.get(c.hash), c.data);
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
  });
});
