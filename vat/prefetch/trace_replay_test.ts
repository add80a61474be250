import assert from "node:assert/strict";
import { ChunkedDisk } from "../disk/chunked_disk.ts";
import { mergeTrace } from "../repo/boot_trace.ts";
import { toHex } from "../repo/chunk_codec.ts";
import { distinctChunks, makeTestRepository, TEST_CHUNK_BYTES } from "./_test_repository.ts";
import { fetchPath } from "../fetch/fetch_path.ts";
import { FetchScheduler } from "../fetch/fetch_scheduler.ts";
import { TraceRecorder } from "./trace_recorder.ts";
import { TraceReplay } from "./trace_replay.ts";

Deno.test("TraceReplay fetches a recorded trace in order, a bounded distance ahead of the guest", async () => {
  const t = await makeTestRepository({
    system: distinctChunks(64, 7),
    kernel: distinctChunks(3, 8),
  });
  try {
    const fetchLog: string[] = [];
    const names = new Map<string, string>();
    const fetch = (hash: Uint8Array) => {
      fetchLog.push(names.get(toHex(hash)) ?? "?");
      return t.repo.readChunk(hash);
    };
    const open = async (name: string) => {
      const index = await t.repo.readDiskIndex(t.version.manifest.disks[name].index);
      for (let i = 0; i < index.count; i++) names.set(toHex(index.hash(i)!), `${name}:${i}`);
      return new ChunkedDisk(index, fetchPath({ cache: t.cache, transport: fetch }));
    };
    // Record a "boot" from a scratch cache: the kernel whole, then system chunks out of order.
    const recorder = new TraceRecorder();
    const kernel = await open("kernel");
    const system = await open("system");
    recorder.attach("kernel", kernel);
    recorder.attach("system", system);
    const bootOrder = [40, 2, 41, 17, 3, 60, 5, 9, 33, 34, 35, 12];
    await kernel.read(0, new Uint8Array(3 * TEST_CHUNK_BYTES));
    for (const c of bootOrder) await system.read(c * TEST_CHUNK_BYTES, new Uint8Array(512));
    await system.read(40 * TEST_CHUNK_BYTES, new Uint8Array(512)); // a second read of 40
    const recording = recorder.stop();
    assert.equal(recording.order.length, 3 + bootOrder.length);
    assert.equal(recording.reads.get("system")!.get(40), 2);
    const trace = mergeTrace(null, recording, {
      repoId: t.repo.config.id,
      version: 1,
      publisher: t.key.publicKeyId,
      until: null,
    });

    // Replay into an empty cache, with the guest at the start of the trace: the
    // replay runs ahead by 4 entries only.
    const dir = await Deno.makeTempDir();
    const { ChunkCache } = await import("../cache/chunk_cache.ts");
    const cache = await ChunkCache.open({ dir, budgetBytes: 16 * 1024 * 1024 });
    try {
      fetchLog.length = 0;
      const replay = new TraceReplay({
        trace,
        source: fetchPath({
          cache,
          scheduler: new FetchScheduler(),
          priority: "trace",
          transport: fetch,
        }),
        chunkBytes: TEST_CHUNK_BYTES,
        aheadChunks: 4,
      });
      const index = (name: string) => t.repo.readDiskIndex(t.version.manifest.disks[name].index);
      const guestSystem = new ChunkedDisk(
        await index("system"),
        fetchPath({ cache, transport: fetch }),
      );
      const guestKernel = new ChunkedDisk(
        await index("kernel"),
        fetchPath({ cache, transport: fetch }),
      );
      replay.attach("kernel", guestKernel);
      replay.attach("system", guestSystem);
      replay.allAttached();
      await new Promise((r) => setTimeout(r, 50));
      assert.deepEqual(
        fetchLog,
        ["kernel:0", "kernel:1", "kernel:2", "system:40"],
        "up to 4 entries past the guest (at -1)",
      );
      // The guest reads along the trace; the replay follows.
      await guestKernel.read(0, new Uint8Array(3 * TEST_CHUNK_BYTES));
      for (const c of bootOrder) await guestSystem.read(c * TEST_CHUNK_BYTES, new Uint8Array(512));
      await replay.done;
      assert.deepEqual(fetchLog, [
        "kernel:0",
        "kernel:1",
        "kernel:2",
        ...bootOrder.map((c) => `system:${c}`),
      ], "every chunk fetched once, in the trace's order");
      assert.equal(replay.meter.doneBytes, replay.meter.totalBytes);
      assert.equal(replay.meter.totalBytes, (3 + bootOrder.length) * TEST_CHUNK_BYTES);
    } finally {
      await cache.close();
      await Deno.remove(dir, { recursive: true });
    }
  } finally {
    await t.close();
  }
});
