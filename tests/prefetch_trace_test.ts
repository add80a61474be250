/**
 * Boot traces end to end: `vat trace record` boots the busybox appliance from a
 * scratch cache and publishes its trace; a VAT with an empty cache then starts the
 * appliance over HTTP, and the repository's request log shows the trace's chunks
 * fetched in the trace's order, most of them by the replay ahead of the guest. A
 * newer version, published with `--trace-until`, has a trace at once, and is
 * prefetched in the background, fetching only what it changed.
 */

import assert from "node:assert/strict";
import { buildBusyboxAppliance } from "../vat/demo/busybox_appliance.ts";
import { readBootTrace } from "../vat/repo/boot_trace.ts";
import { chunkKey, toHex } from "../vat/repo/chunk_codec.ts";
import { openStore } from "../vat/repo/open_store.ts";
import { Repository } from "../vat/repo/repository.ts";
import { Guest, publishAppliance, qemuProcessesUnder } from "./helpers/guest.ts";
import { startLoggingServer } from "./helpers/logging_server.ts";
import { startVat, type VatProcess } from "./helpers/processes.ts";
import { runVat, vatOk } from "./helpers/vat_cli.ts";

Deno.test("a recorded boot trace is replayed in order when a VAT starts the version", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vat-trace-e2e-" });
  const state = `${dir}/s`;
  const repoDir = `${dir}/repo`;
  let daemon: VatProcess | null = null;
  const server = startLoggingServer(repoDir);
  try {
    await vatOk(["keygen", "--out", `${dir}/key`]);
    await vatOk(["keygen", "--out", `${dir}/stranger`]);
    await vatOk(["repo", "init", repoDir, "--kind", "appliance"]);
    const a = await buildBusyboxAppliance(undefined, { systemMarker: "trace-e2e" });
    await publishAppliance(repoDir, `${dir}/key`, a);

    const refused = await runVat([
      "trace",
      "record",
      repoDir,
      "--key",
      `${dir}/stranger`,
      "--until",
      "VAT-READY",
    ]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /is not a publisher of/);
    const recorded = JSON.parse(
      (await vatOk([
        "trace",
        "record",
        `${repoDir}@1`,
        "--key",
        `${dir}/key`,
        "--until",
        "VAT-READY",
        "--timeout",
        "120",
        "--json",
      ])).stdout,
    );
    assert.equal(recorded.version, 1);
    assert.equal(recorded.runs, 1);
    assert.ok(recorded.chunks > 10, `${recorded.chunks} chunks`);

    // The trace, as a reader verifies it, and each chunk's place in it.
    const store = await openStore(repoDir);
    const position = new Map<string, number>();
    try {
      const repo = await Repository.open(store);
      const version = await repo.readVersion(1);
      const trace = (await readBootTrace(repo, version))!;
      assert.equal(trace.order.length, recorded.chunks);
      for (const [i, [disk, chunk]] of trace.order.entries()) {
        const index = await repo.readDiskIndex(version.manifest.disks[trace.disks[disk]].index);
        const hash = index.hash(chunk);
        if (hash && !position.has(chunkKey(toHex(hash)))) position.set(chunkKey(toHex(hash)), i);
      }
    } finally {
      await store.close();
    }

    daemon = await startVat(
      ["--headless", "--state", state, "--port", "0", "--prefetch-limit", "0"],
      (out) => out.includes("listening at"),
    );
    await vatOk([
      "appliance",
      "add",
      `http://127.0.0.1:${server.port}/`,
      "--name",
      "traced",
      "--state",
      state,
    ]);
    server.log.length = 0;
    await vatOk(["start", "traced", "--state", state]);
    await new Guest(state, "traced").waitFor(/VAT-READY/, 1, 90_000);
    const fetched = server.log.filter((r) => r.method === "GET" && r.key.startsWith("chunks/"))
      .map((r) => r.key);
    const inTrace = fetched.map((key) => position.get(key)).filter((p) => p !== undefined);
    assert.ok(
      inTrace.length >= 0.95 * position.size,
      `${inTrace.length} of the trace's ${position.size} chunks fetched`,
    );
    // Requests run many at a time (the boot files are read whole, the replay keeps
    // several in flight) and reach the server in any order among themselves; apart
    // from that, the order is the trace's: no request comes far behind an earlier one.
    let behind = 0;
    let furthest = -1;
    for (const p of inTrace) {
      if (p! < furthest - 64) behind++;
      furthest = Math.max(furthest, p!);
    }
    assert.ok(behind <= 0.1 * inTrace.length, `${behind} of ${inTrace.length} out of order`);
    await vatOk(["stop", "traced", "--state", state]);
    const replayed = /boot trace of version 1 replayed, (\d+) chunks fetched ahead/.exec(
      daemon.output(),
    );
    assert.ok(replayed, `the daemon says it replayed the trace:\n${daemon.output()}`);
    assert.ok(Number(replayed[1]) > 0);
    console.log(
      `trace of ${position.size} distinct chunks: ${inTrace.length} fetched, ${behind} of them ` +
        `more than 64 entries behind an earlier request, ${replayed[1]} by the replay`,
    );

    // A new version: the daemon (now with background prefetch) fetches what it lacks
    // of it without being asked, and never a chunk it already holds.
    await daemon.stop();
    daemon = null;
    const v2 = await buildBusyboxAppliance(undefined, { systemMarker: "trace-e2e-v2" });
    const withTrace = JSON.parse(
      (await publishAppliance(
        repoDir,
        `${dir}/key`,
        v2,
        "--trace-until",
        "VAT-READY",
        "--json",
      )).stdout,
    );
    assert.equal(withTrace.version, 2);
    assert.ok(withTrace.trace.chunks > 10, "publish --trace-until recorded the new version's boot");
    await Deno.stat(`${repoDir}/versions/2/trace.json`);
    daemon = await startVat(
      ["--headless", "--state", state, "--port", "0"],
      (out) => out.includes("listening at"),
    );
    const deadline = Date.now() + 60_000;
    for (;;) {
      const [a] = JSON.parse((await vatOk(["ls", "--state", state, "--json"])).stdout);
      if (a.latestVersion === 2 && a.cachedBytes === a.totalBytes && a.totalBytes > 0) break;
      if (Date.now() > deadline) throw new Error(`version 2 not prefetched: ${JSON.stringify(a)}`);
      await new Promise((r) => setTimeout(r, 500));
    }
    const chunkGets = server.log.filter((r) => r.method === "GET" && r.key.startsWith("chunks/"));
    assert.equal(new Set(chunkGets.map((r) => r.key)).size, chunkGets.length, "no chunk twice");
  } finally {
    await (daemon as VatProcess | null)?.stop();
    await server.close();
    const left = await qemuProcessesUnder(dir);
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    assert.equal(left, "", "no QEMU left behind");
  }
});
