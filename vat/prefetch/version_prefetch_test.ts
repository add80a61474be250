import assert from "node:assert/strict";
import { mergeTrace } from "../repo/boot_trace.ts";
import { toHex } from "../repo/chunk_codec.ts";
import { ProgressMeter } from "../progress.ts";
import { distinctChunks, makeTestRepository, TEST_CHUNK_BYTES } from "./_test_repository.ts";
import { AdaptiveRate, RATE_WINDOW } from "./adaptive_rate.ts";
import { fetchPath } from "../fetch/fetch_path.ts";
import { FetchScheduler } from "../fetch/fetch_scheduler.ts";
import { measuredTransport, planPrefetch, prefetchPlan } from "./version_prefetch.ts";

Deno.test("planPrefetch() puts the profile first, then boot files and disks in disk order, skipping cached and repeated chunks", async () => {
  const system = distinctChunks(6, 1);
  system.set(distinctChunks(1, 9), 4 * TEST_CHUNK_BYTES); // chunk 4 = the kernel's chunk 0
  system.fill(0, 5 * TEST_CHUNK_BYTES); // chunk 5 is all zeroes
  const t = await makeTestRepository({
    system,
    kernel: distinctChunks(2, 9),
    user: distinctChunks(2, 3),
  });
  try {
    const names = new Map<string, string>();
    for (const disk of ["system", "kernel", "user"]) {
      const index = await t.repo.readDiskIndex(t.version.manifest.disks[disk].index);
      for (let i = index.count - 1; i >= 0; i--) {
        if (index.hash(i)) names.set(toHex(index.hash(i)!), `${disk}:${i}`);
      }
    }
    const system3 = await t.repo.readDiskIndex(t.version.manifest.disks.system.index);
    t.cache.put(system3.hash(3)!, await t.repo.readChunk(system3.hash(3)!));
    const reads = new Map([["system", new Map([[2, 5], [1, 9]])], ["user", new Map([[1, 1]])]]);
    const trace = mergeTrace(null, { order: [], reads }, {
      repoId: t.repo.config.id,
      version: 1,
      publisher: t.key.publicKeyId,
      until: null,
    });
    const plan = await planPrefetch(t.repo, t.version, null, trace, t.cache);
    assert.deepEqual(plan.hashes.map((h) => names.get(toHex(h))), [
      "system:1",
      "system:2",
      "user:1",
      "kernel:0",
      "kernel:1",
      "system:0",
      "user:0",
    ]);
    assert.equal(plan.cachedBytes, TEST_CHUNK_BYTES);
    assert.equal(plan.totalBytes, 8 * TEST_CHUNK_BYTES);
  } finally {
    await t.close();
  }
});

Deno.test("prefetchPlan() halves its rate while requests are slow and recovers after", async () => {
  const t = await makeTestRepository({ system: distinctChunks(160, 4) });
  try {
    const plan = await planPrefetch(t.repo, t.version, null, null, t.cache);
    const rate = new AdaptiveRate({
      maxBytesPerSecond: 4 * 1024 * 1024,
      initialBytesPerSecond: 2 * 1024 * 1024,
    });
    let fetched = 0;
    const history: { at: number; rate: number }[] = [];
    // Requests 40 to 79 meet a congested link: 20 times the usual latency.
    const fetch = async (hash: Uint8Array) => {
      const n = fetched++;
      await new Promise((r) => setTimeout(r, n >= 40 && n < 80 ? 80 : 4));
      history.push({ at: n, rate: rate.bytesPerSecond });
      return await t.repo.readStoredChunk(hash);
    };
    const meter = new ProgressMeter("prefetch", plan.totalBytes);
    await prefetchPlan({
      plan,
      source: fetchPath({
        cache: t.cache,
        scheduler: new FetchScheduler(),
        priority: "prefetch",
        transport: measuredTransport(fetch, rate),
      }),
      rate,
      meter,
    });
    assert.equal(meter.doneBytes, plan.totalBytes);
    const rateAt = (n: number) => history.find((h) => h.at === n)!.rate;
    const before = rateAt(39);
    const during = rateAt(79);
    const after = rate.bytesPerSecond;
    assert.ok(
      during <= before / 4,
      `slow requests halved the rate (twice): ${before} -> ${during}`,
    );
    assert.ok(after >= 2 * during, `it recovered: ${during} -> ${after}`);
    assert.equal(after, 4 * 1024 * 1024, "back up to the cap");
    assert.ok(RATE_WINDOW <= 40);
  } finally {
    await t.close();
  }
});
