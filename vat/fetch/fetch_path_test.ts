import assert from "node:assert/strict";
import { ChunkCache } from "../cache/chunk_cache.ts";
import { NotFoundError, TransientError } from "../errors.ts";
import { hashChunk, toHex } from "../repo/chunk_codec.ts";
import { fetchPath } from "./fetch_path.ts";
import { FetchScheduler } from "./fetch_scheduler.ts";
import type { ChunkTransport } from "./transport.ts";

function chunk(seed: number): { hash: Uint8Array; data: Uint8Array } {
  const data = new Uint8Array(4096).fill(seed);
  return { hash: new Uint8Array(hashChunk(data)), data };
}

/** A repository in memory whose requests can be held open; counts requests by chunk. */
function fakeRepository(chunks: { hash: Uint8Array; data: Uint8Array }[]) {
  const byId = new Map(chunks.map((c) => [toHex(c.hash), c.data]));
  const requests = new Map<string, number>();
  const held = new Map<string, () => void>();
  let active = 0;
  let peak = 0;
  const hold = new Set<string>();
  const transport: ChunkTransport = async (hash) => {
    const id = toHex(hash);
    requests.set(id, (requests.get(id) ?? 0) + 1);
    peak = Math.max(peak, ++active);
    try {
      if (hold.has(id)) await new Promise<void>((resolve) => held.set(id, resolve));
      else await new Promise((r) => setTimeout(r, 5));
      const data = byId.get(id);
      if (!data) throw new NotFoundError(`chunk ${id} is missing`);
      return data.slice();
    } finally {
      active--;
    }
  };
  return {
    transport,
    requestsOf: (c: { hash: Uint8Array }) => requests.get(toHex(c.hash)) ?? 0,
    hold: (c: { hash: Uint8Array }) => hold.add(toHex(c.hash)),
    release: (c: { hash: Uint8Array }) => held.get(toHex(c.hash))?.(),
    isHeld: (c: { hash: Uint8Array }) => held.has(toHex(c.hash)),
    get peak() {
      return peak;
    },
  };
}

async function withCache(fn: (cache: ChunkCache) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "vat-source-test-" });
  const cache = await ChunkCache.open({ dir, budgetBytes: 64 * 1024 * 1024 });
  try {
    await fn(cache);
  } finally {
    await cache.close();
    await Deno.remove(dir, { recursive: true });
  }
}

const tick = () => new Promise((r) => setTimeout(r, 0));

Deno.test("FetchPath.get() fetches a miss once, stores it, then serves it from the cache", async () => {
  await withCache(async (cache) => {
    const c = chunk(1);
    const repo = fakeRepository([c]);
    const source = fetchPath({ cache, transport: repo.transport });
    assert.deepEqual(await source.get(c.hash), c.data);
    assert.deepEqual(await source.get(c.hash), c.data);
    assert.equal(repo.requestsOf(c), 1);
    assert.equal(source.has(c.hash), true);
    const stats = cache.stats();
    assert.deepEqual([stats.hits, stats.misses, stats.bytesFetched], [1, 1, c.data.length]);
  });
});

Deno.test("FetchPath coalesces fetches of one chunk across sources of one cache, and bounds demand", async () => {
  await withCache(async (cache) => {
    const chunks = Array.from({ length: 12 }, (_, i) => chunk(10 + i));
    const repo = fakeRepository(chunks);
    const scheduler = new FetchScheduler({ demandInFlight: 3 });
    const demand = fetchPath({ cache, scheduler, transport: repo.transport });
    const prefetch = fetchPath({
      cache,
      scheduler,
      priority: "prefetch",
      transport: repo.transport,
    });
    const reads = chunks.flatMap((c) => [1, 2, 3].map(() => demand.get(c.hash)));
    await tick();
    assert.deepEqual(scheduler.stats().inFlight.demand, 3);
    // The other reads of the three chunks being fetched join those fetches; every
    // other read waits in the scheduler, where its stats show it.
    assert.equal(scheduler.stats().queued.demand, 3 * 12 - 3 * 3);
    const loads = chunks.map((c) => prefetch.load(c.hash));
    const got = await Promise.all(reads);
    await Promise.all(loads);
    got.forEach((data, i) => assert.deepEqual(data, chunks[Math.floor(i / 3)].data));
    assert.ok(chunks.every((c) => repo.requestsOf(c) === 1), "one request per chunk");
    assert.equal(repo.peak, 3, "at most 3 demand fetches at once");
  });
});

Deno.test("FetchPath: a demand read never waits behind a queued prefetch of the same chunk", async () => {
  await withCache(async (cache) => {
    const [busy, wanted] = [chunk(1), chunk(2)];
    const repo = fakeRepository([busy, wanted]);
    const scheduler = new FetchScheduler({ backgroundInFlight: 1 });
    const prefetch = fetchPath({
      cache,
      scheduler,
      priority: "prefetch",
      transport: repo.transport,
    });
    const demand = fetchPath({ cache, scheduler, transport: repo.transport });
    repo.hold(busy);
    const first = prefetch.load(busy.hash); // takes the one background slot, held
    const queued = prefetch.load(wanted.hash); // waits its turn
    await tick();
    assert.equal(repo.isHeld(busy), true);
    assert.equal(scheduler.stats().queued.prefetch, 1);
    assert.deepEqual(await demand.get(wanted.hash), wanted.data, "not held back");
    repo.release(busy);
    await Promise.all([first, queued]);
    assert.equal(repo.requestsOf(wanted), 1, "the queued prefetch found it cached at its turn");
  });
});

Deno.test("FetchPath.load() waiting its turn ends unfetched once its signal aborts", async () => {
  await withCache(async (cache) => {
    const [busy, wanted] = [chunk(1), chunk(2)];
    const repo = fakeRepository([busy, wanted]);
    const scheduler = new FetchScheduler({ backgroundInFlight: 1 });
    const source = fetchPath({
      cache,
      scheduler,
      priority: "prefetch",
      transport: repo.transport,
    });
    const abort = new AbortController();
    repo.hold(busy);
    const first = source.load(busy.hash);
    const queued = source.load(wanted.hash, abort.signal);
    await tick();
    abort.abort();
    repo.release(busy);
    await Promise.all([first, queued]);
    assert.equal(repo.requestsOf(wanted), 0);
    assert.equal(source.has(wanted.hash), false);
  });
});

Deno.test("FetchPath retries a failing repository, and fails clearly on a permanent error", async () => {
  await withCache(async (cache) => {
    const c = chunk(3);
    let attempts = 0;
    const flaky: ChunkTransport = () =>
      ++attempts < 3
        ? Promise.reject(new TransientError("connection reset"))
        : Promise.resolve(c.data.slice());
    assert.deepEqual(await fetchPath({ cache, transport: flaky }).get(c.hash), c.data);
    assert.equal(attempts, 3);
    const missing = chunk(4);
    const repo = fakeRepository([]);
    await assert.rejects(
      fetchPath({ cache, transport: repo.transport }).get(missing.hash),
      NotFoundError,
    );
    assert.equal(cache.has(missing.hash), false);
  });
});
