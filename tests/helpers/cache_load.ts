/**
 * A write load on a chunk cache, for the crash test: `deno run -A cache_load.ts DIR`
 * loads chunks 0..N-1 (content derived from the number) in a shuffled order, forever,
 * into a cache too small for all of them, so slots are evicted and reused.
 */

import { ChunkCache } from "../../vat/cache/chunk_cache.ts";
import { fetchPath } from "../../vat/fetch/fetch_path.ts";
import { hashChunk } from "../../vat/repo/chunk_codec.ts";

/** Chunks the load cycles through. */
export const LOAD_CHUNKS = 96;
/** The cache budget: room for half of them. */
export const LOAD_BUDGET = 48 * 64 * 1024;

/** Chunk `n`'s content: 64 KiB (or less for every seventh) derived from `n`. */
export function loadChunk(n: number): { hash: Uint8Array; data: Uint8Array } {
  const data = new Uint8Array(n % 7 === 0 ? 20_000 + n : 64 * 1024);
  let x = n + 1;
  for (let i = 0; i < data.length; i++) {
    x = (x * 1103515245 + 12345) & 0x7fffffff;
    data[i] = x >> 16;
  }
  return { hash: hashChunk(data), data };
}

if (import.meta.main) {
  const cache = await ChunkCache.open({ dir: Deno.args[0], budgetBytes: LOAD_BUDGET });
  console.log("loading");
  for (let round = 0;; round++) {
    const order = Array.from({ length: LOAD_CHUNKS }, (_, i) => i).sort(() => Math.random() - 0.5);
    await Promise.all(order.map((n) => {
      const { hash, data } = loadChunk(n);
      return fetchPath({ cache, transport: () => Promise.resolve(data) }).get(hash);
    }));
  }
}
