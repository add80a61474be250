/**
 * The paper's prefetcher, end to end: an appliance that was only added, never started,
 * is fetched into the cache in the background (shown as a `prefetch` operation while
 * it runs), so its first start needs no network: with the repository stopped it boots
 * from the cache. It is not "safe offline" (nothing pins it; only a hoard does), and
 * `vat ls` says so.
 */

import assert from "node:assert/strict";
import { buildBusyboxAppliance } from "../vat/demo/busybox_appliance.ts";
import { Guest, publishAppliance, qemuProcessesUnder } from "./helpers/guest.ts";
import { startVat, type VatProcess } from "./helpers/processes.ts";
import { vatOk } from "./helpers/vat_cli.ts";

interface Status {
  name: string;
  offline: boolean;
  safeOffline: boolean;
  cachedBytes: number | null;
  totalBytes: number | null;
  operations: { kind: string }[];
}

Deno.test("an added appliance is prefetched before its first start, which then needs no network", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vat-prefetch-add-" });
  const state = `${dir}/s`;
  let daemon: VatProcess | null = null;
  let server: VatProcess | null = null;
  try {
    await vatOk(["keygen", "--out", `${dir}/key`]);
    await vatOk(["repo", "init", `${dir}/served/desk`, "--kind", "appliance"]);
    const a = await buildBusyboxAppliance(undefined, { systemMarker: "prefetch-on-add" });
    await publishAppliance(`${dir}/served/desk`, `${dir}/key`, a);
    server = await startVat(
      ["serve", "--root", `${dir}/served`, "--listen", "127.0.0.1:0"],
      (out) => /serving .* at http/.test(out),
    );
    const port = Number(/at http:\/\/127\.0\.0\.1:(\d+)/.exec(server.output())![1]);
    daemon = await startVat(
      ["--headless", "--state", state, "--port", "0"],
      (out) => out.includes("listening at"),
    );
    await vatOk([
      "appliance",
      "add",
      `http://127.0.0.1:${port}/desk`,
      "--name",
      "desk",
      "--state",
      state,
    ]);

    const deadline = Date.now() + 120_000;
    const kinds = new Set<string>();
    let desk: Status;
    for (;;) {
      [desk] = JSON.parse((await vatOk(["ls", "--state", state, "--json"])).stdout) as Status[];
      for (const op of desk.operations) kinds.add(op.kind);
      if (desk.totalBytes && desk.cachedBytes === desk.totalBytes) break;
      if (Date.now() > deadline) throw new Error(`not prefetched: ${JSON.stringify(desk)}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    assert.equal(desk.safeOffline, false, "prefetched is not pinned: not safe offline");
    console.log(`prefetched ${desk.totalBytes} bytes; operations seen: ${[...kinds].join(", ")}`);

    await server.stop();
    server = null;
    const [offline] = JSON.parse((await vatOk(["ls", "--state", state, "--json"])).stdout);
    assert.equal(offline.offline, true);
    assert.match((await vatOk(["ls", "--state", state])).stdout, /desk .*offline/);
    await vatOk(["start", "desk", "--state", state]);
    const guest = new Guest(state, "desk");
    await guest.waitFor(/VAT-READY/, 1, 60_000);
    assert.equal(await guest.ask("read user hello"), "VAT-REPLY read user-initial");
    await vatOk(["stop", "desk", "--state", state]);
  } finally {
    await (daemon as VatProcess | null)?.stop();
    await (server as VatProcess | null)?.stop();
    const left = await qemuProcessesUnder(state);
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    assert.equal(left, "", "no QEMU left behind");
  }
});
