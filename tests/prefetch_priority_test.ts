/**
 * Priorities on an emulated slow link (bench/nbd/link_proxy.ts, 8 Mbit/s, 40 ms): a
 * guest's demand read of a chunk the cache lacks, while background prefetch keeps
 * the link busy, waits behind at most the prefetcher's few requests in flight, not
 * behind its queue. Measured against the same reads while a naive prefetcher (32
 * requests at once, no scheduler, as a plain bulk download would) fills the link.
 */

import assert from "node:assert/strict";
import { ChunkCache } from "../vat/cache/chunk_cache.ts";
import { generateSigningKey } from "../vat/auth/signing_key.ts";
import { ChunkedDisk } from "../vat/disk/chunked_disk.ts";
import { AdaptiveRate } from "../vat/prefetch/adaptive_rate.ts";
import { FetchScheduler } from "../vat/fetch/fetch_scheduler.ts";
import { fetchPath } from "../vat/fetch/fetch_path.ts";
import { repositoryTransport } from "../vat/fetch/transport.ts";
import { measuredTransport, planPrefetch, prefetchPlan } from "../vat/prefetch/version_prefetch.ts";
import { openStore } from "../vat/repo/open_store.ts";
import { publishDisks } from "../vat/repo/publish.ts";
import { Repository } from "../vat/repo/repository.ts";
import { startLinkProxy } from "../bench/nbd/link_proxy.ts";
import { fillRandom } from "./helpers/images.ts";
import { startLoggingServer } from "./helpers/logging_server.ts";

const CHUNK = 64 * 1024;
const CHUNKS = 400;

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

Deno.test("a demand read overtakes a busy prefetch on a slow link", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vat-priority-" });
  const server = startLoggingServer(`${dir}/repo`);
  const proxy = startLinkProxy({ hostname: "127.0.0.1", port: server.port }, {
    rateBitsPerSec: 8_000_000,
    rttMs: 40,
  });
  const closers: (() => Promise<void>)[] = [];
  try {
    const key = await generateSigningKey(`${dir}/key`);
    const local = await openStore(`${dir}/repo`);
    try {
      const repo = await Repository.init(local, { kind: "appliance", chunkSizeBytes: CHUNK });
      const image = new Uint8Array(CHUNKS * CHUNK);
      fillRandom(image, 42); // incompressible: every chunk crosses the link whole
      const source = {
        sizeBytes: image.length,
        read(offset: number, into: Uint8Array) {
          into.set(image.subarray(offset, offset + into.length));
          return Promise.resolve();
        },
      };
      await publishDisks(repo, [["system", source]], { memoryMiB: 64, cpus: 1 }, { key });
    } finally {
      await local.close();
    }

    const store = await openStore(`http://127.0.0.1:${proxy.port}/`);
    closers.push(() => store.close());
    const repo = await Repository.open(store);
    const version = await repo.readVersion(1);
    const index = await repo.readDiskIndex(version.manifest.disks.system.index);
    const transport = repositoryTransport(repo);

    /** Demand-reads `chunks` one after another through `disk`; their latencies in ms. */
    const demand = async (disk: ChunkedDisk, chunks: number[]) => {
      const out: number[] = [];
      for (const c of chunks) {
        const started = performance.now();
        await disk.read(c * CHUNK, new Uint8Array(4096));
        out.push(performance.now() - started);
      }
      return out;
    };
    const openCache = async (name: string) => {
      const cache = await ChunkCache.open({ dir: `${dir}/${name}`, budgetBytes: 1 << 30 });
      closers.push(() => cache.close());
      return cache;
    };

    // With the scheduler: the prefetcher at "prefetch", the reads at "demand".
    const cache = await openCache("cache");
    const scheduler = new FetchScheduler();
    const disk = new ChunkedDisk(index, fetchPath({ cache, scheduler, transport }));
    const idle = await demand(disk, [390, 391, 392]);
    const plan = await planPrefetch(repo, version, null, null, cache);
    const rate = new AdaptiveRate({ maxBytesPerSecond: 4 * 1024 * 1024 });
    const abort = new AbortController();
    const prefetching = prefetchPlan({
      plan,
      source: fetchPath({
        cache,
        scheduler,
        priority: "prefetch",
        transport: measuredTransport((hash) => repo.readStoredChunk(hash), rate),
      }),
      rate,
      signal: abort.signal,
    });
    await new Promise((r) => setTimeout(r, 1500));
    proxy.resetStats();
    const windowStart = performance.now();
    const busy = await demand(disk, [380, 381, 382, 383, 384, 385]);
    const windowMs = performance.now() - windowStart;
    const linkBytes = proxy.stats().downBytes;
    abort.abort();
    await prefetching;
    const queued = plan.hashes.length - [...plan.hashes].filter((h) => cache.has(h)).length;

    // Without: 32 prefetch requests at once, straight to the repository (each reader
    // with a scheduler of its own: nothing orders them).
    const naiveCache = await openCache("naive");
    const naiveDisk = new ChunkedDisk(
      index,
      fetchPath({ cache: naiveCache, scheduler: new FetchScheduler(), transport }),
    );
    const naivePrefetch = fetchPath({
      cache: naiveCache,
      scheduler: new FetchScheduler(),
      transport,
    });
    let stop = false;
    let next = 0;
    const worker = async () => {
      while (!stop && next < 370) await naivePrefetch.load(index.hash(next++)!);
    };
    const naive = Promise.all(Array.from({ length: 32 }, worker));
    await new Promise((r) => setTimeout(r, 1500));
    const naiveBusy = await demand(naiveDisk, [380, 381, 382]);
    stop = true;
    await naive;

    const linkShare = (linkBytes * 8) / (windowMs / 1000) / 8_000_000;
    console.log(
      `demand read of a 64 KiB chunk over 8 Mbit/s, 40 ms: idle ${median(idle).toFixed(0)} ms; ` +
        `with prefetch through the scheduler ${median(busy).toFixed(0)} ms ` +
        `(link ${(linkShare * 100).toFixed(0)}% busy, ${queued} chunks still queued); ` +
        `with a naive 32-request prefetch ${median(naiveBusy).toFixed(0)} ms`,
    );
    assert.ok(linkShare > 0.6, `the prefetch kept the link busy (${linkShare})`);
    assert.ok(queued > 100, "the prefetch had plenty left to do");
    // At most the two prefetch requests in flight are ahead of it on the wire (65 ms each).
    assert.ok(median(busy) < median(idle) + 250, `${median(busy)} vs idle ${median(idle)}`);
    assert.ok(
      median(busy) < median(naiveBusy) / 3,
      `${median(busy)} vs naive ${median(naiveBusy)}`,
    );
  } finally {
    for (const close of closers.reverse()) await close().catch(() => {});
    await proxy.close();
    await server.close();
    await Deno.remove(dir, { recursive: true });
  }
});
