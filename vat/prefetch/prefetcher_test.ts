import assert from "node:assert/strict";
import type { ProgressMeter } from "../progress.ts";
import { distinctChunks, makeTestRepository } from "./_test_repository.ts";
import { AdaptiveRate } from "./adaptive_rate.ts";
import { FetchScheduler } from "../fetch/fetch_scheduler.ts";
import { Prefetcher, type PrefetchTarget } from "./prefetcher.ts";

Deno.test("Prefetcher fetches a target's newest version whole, shows progress, and then leaves it be", async () => {
  const t = await makeTestRepository({ system: distinctChunks(20, 5), user: distinctChunks(4, 6) });
  const reads: string[] = [];
  const original = t.store.get.bind(t.store);
  t.store.get = (key: string) => {
    reads.push(key);
    return original(key);
  };
  const shown: ProgressMeter[] = [];
  const hidden: ProgressMeter[] = [];
  const target: PrefetchTarget = {
    name: "desk",
    open: () =>
      Promise.resolve({
        repo: t.repo,
        version: t.version,
        userBase: null,
        close: () => Promise.resolve(),
      }),
    track: (m) => shown.push(m),
    untrack: (m) => hidden.push(m),
  };
  const logs: string[] = [];
  const prefetcher = new Prefetcher({
    cache: t.cache,
    scheduler: new FetchScheduler(),
    rate: new AdaptiveRate({ maxBytesPerSecond: 64 * 1024 * 1024 }),
    targets: () => [target],
    intervalMs: 20,
    log: (l) => logs.push(l),
  });
  try {
    prefetcher.kick();
    const deadline = Date.now() + 5000;
    while (hidden.length === 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.equal(shown.length, 1);
    assert.equal(shown[0].kind, "prefetch");
    assert.equal(shown[0].doneBytes, shown[0].totalBytes);
    assert.equal(shown[0].totalBytes, 24 * 4096);
    const chunkReads = reads.filter((k) => k.startsWith("chunks/"));
    assert.equal(chunkReads.length, 24);
    // Later passes find it whole without reading its indexes or chunks again.
    reads.length = 0;
    await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(reads.filter((k) => !k.includes("trace")), []);
    assert.equal(shown.length, 1);
    assert.deepEqual(logs, []);
  } finally {
    await prefetcher.close();
    await t.close();
  }
});

Deno.test("Prefetcher leaves a version that would crowd the cache alone, and says so once", async () => {
  const t = await makeTestRepository({ system: distinctChunks(64, 2) });
  const logs: string[] = [];
  const prefetcher = new Prefetcher({
    cache: t.cache,
    scheduler: new FetchScheduler(),
    rate: new AdaptiveRate({ maxBytesPerSecond: 64 * 1024 * 1024 }),
    targets: () => [{
      name: "big",
      open: () =>
        Promise.resolve({
          repo: t.repo,
          version: t.version,
          userBase: null,
          close: () => Promise.resolve(),
        }),
      track: () => assert.fail("nothing to show"),
      untrack: () => {},
    }],
    intervalMs: 10,
    maxCacheShare: (64 * 4096 - 1) / t.cache.budgetBytes,
    log: (l) => logs.push(l),
  });
  try {
    prefetcher.kick();
    await new Promise((r) => setTimeout(r, 150));
    assert.equal(logs.length, 1);
    assert.match(
      logs[0],
      /prefetch big: version 1 lacks 256\.0 KiB, more than the prefetcher may use/,
    );
    assert.equal(t.cache.stats().chunks, 0);
  } finally {
    await prefetcher.close();
    await t.close();
  }
});
