/**
 * The chunk cache killed with SIGKILL at random points of a write load (with
 * evictions and slot reuse): after every restart nothing corrupt is served, and the
 * cache opens without a scan.
 */

import assert from "node:assert/strict";
import { ChunkCache } from "../vat/cache/chunk_cache.ts";
import { fetchPath } from "../vat/fetch/fetch_path.ts";
import { LOAD_BUDGET, LOAD_CHUNKS, loadChunk } from "./helpers/cache_load.ts";

const LOAD = new URL("./helpers/cache_load.ts", import.meta.url).pathname;

Deno.test("ChunkCache survives SIGKILL at random points of a write load", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vat-cache-crash-" });
  try {
    for (let round = 0; round < 6; round++) {
      const child = new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", "--quiet", LOAD, dir],
        stdout: "piped",
        stderr: "inherit",
      }).spawn();
      // Wait until it is loading, then kill it somewhere in the middle.
      const reader = child.stdout.getReader();
      await reader.read();
      await new Promise((r) => setTimeout(r, 50 + Math.random() * 400));
      child.kill("SIGKILL");
      reader.releaseLock();
      await child.stdout.cancel();
      await child.status;

      const opened = performance.now();
      const cache = await ChunkCache.open({ dir, budgetBytes: LOAD_BUDGET });
      assert.ok(performance.now() - opened < 2000, "opening needs no scan");
      let refetched = 0;
      for (let n = 0; n < LOAD_CHUNKS; n++) {
        const { hash, data } = loadChunk(n);
        const got = await fetchPath({
          cache,
          transport: () => {
            refetched++;
            return Promise.resolve(data.slice());
          },
        }).get(hash);
        assert.ok(Buffer.from(got).equals(data), `chunk ${n} after kill ${round} is wrong`);
      }
      const stats = cache.stats();
      assert.ok(stats.usedBytes <= LOAD_BUDGET, "within budget");
      assert.ok(refetched >= LOAD_CHUNKS - LOAD_BUDGET / (64 * 1024), "misses were fetched");
      await cache.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
