/**
 * Life without a network, end to end: two appliances served over HTTP by `vat serve`,
 * one hoarded; with the server stopped the hoarded one boots from the cache (its
 * metadata from the local mirror) and its user disk works, the other is refused with
 * a message saying how much is missing; `vat ls` says offline and safe offline; with
 * the server back on the same port the status is online again by itself.
 */

import assert from "node:assert/strict";
import { buildBusyboxAppliance } from "../vat/demo/busybox_appliance.ts";
import { Guest, publishAppliance, qemuProcessesUnder } from "./helpers/guest.ts";
import { startVat, type VatProcess } from "./helpers/processes.ts";
import { runVat, vatOk } from "./helpers/vat_cli.ts";

interface Status {
  name: string;
  state: string;
  offline: boolean;
  safeOffline: boolean;
  hoarded: boolean;
  cachedBytes: number | null;
  totalBytes: number | null;
  latestVersion: number | null;
}

async function list(state: string): Promise<Map<string, Status>> {
  const all = JSON.parse((await vatOk(["ls", "--state", state, "--json"])).stdout) as Status[];
  return new Map(all.map((a) => [a.name, a]));
}

Deno.test("a hoarded appliance starts without its repository; the other says what is missing", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vat-offline-" });
  const state = `${dir}/s`;
  const served = `${dir}/served`;
  let daemon: VatProcess | null = null;
  let server: VatProcess | null = null;
  const serve = async (port: number) => {
    server = await startVat(
      ["serve", "--root", served, "--listen", `127.0.0.1:${port}`],
      (out) => /serving .* at http/.test(out),
    );
    return Number(/at http:\/\/127\.0\.0\.1:(\d+)/.exec(server.output())![1]);
  };
  const publish = async (name: string, marker: string) => {
    const a = await buildBusyboxAppliance(undefined, { systemMarker: marker });
    await publishAppliance(`${served}/${name}`, `${dir}/key`, a);
  };
  try {
    await vatOk(["keygen", "--out", `${dir}/key`]);
    for (const name of ["desk", "lab"]) {
      await vatOk(["repo", "init", `${served}/${name}`, "--kind", "appliance"]);
      await publish(name, `offline-${name}`);
    }
    const port = await serve(0);
    // No background prefetch: it would cache "lab" whole, and a whole cached appliance
    // starts offline even unhoarded (tests/prefetch_subscribe_test.ts).
    daemon = await startVat(
      ["--headless", "--state", state, "--port", "0", "--prefetch-limit", "0"],
      (out) => out.includes("listening at"),
    );
    for (const name of ["desk", "lab"]) {
      await vatOk([
        "appliance",
        "add",
        `http://127.0.0.1:${port}/${name}`,
        "--name",
        name,
        "--state",
        state,
      ]);
    }

    const hoarded = JSON.parse((await vatOk(["hoard", "desk", "--state", state, "--json"])).stdout);
    assert.equal(hoarded.hoarded, true);
    assert.equal(hoarded.safeOffline, true);
    assert.ok(hoarded.totalBytes > 0);
    assert.equal(hoarded.cachedBytes, hoarded.totalBytes);
    const online = await list(state);
    assert.equal(online.get("desk")!.offline, false);
    assert.equal(online.get("lab")!.offline, false);
    assert.equal(online.get("lab")!.safeOffline, false);
    assert.equal(online.get("lab")!.hoarded, false);

    // The repository goes away.
    await server!.stop();
    server = null;
    const offline = await list(state);
    assert.equal(offline.get("desk")!.offline, true);
    assert.equal(offline.get("desk")!.safeOffline, true);
    assert.equal(offline.get("desk")!.latestVersion, 1, "known from the mirror");
    assert.equal(offline.get("lab")!.offline, true);
    assert.equal(offline.get("lab")!.safeOffline, false);
    const plain = (await vatOk(["ls", "--state", state])).stdout;
    assert.match(plain, /desk .*offline; safe offline/);

    const refused = await runVat(["start", "lab", "--state", state]);
    assert.equal(refused.code, 1);
    assert.match(
      refused.stderr,
      /"lab" is not safe to use offline: [\d.]+ (B|KiB|MiB) of version 1 is not cached \(hoard it while connected: vat hoard lab\)/,
    );

    await vatOk(["start", "desk", "--state", state]);
    const guest = new Guest(state, "desk");
    await guest.waitFor(/VAT-READY/, 1, 60_000);
    assert.equal(await guest.ask("read user hello"), "VAT-REPLY read user-initial");
    assert.equal(await guest.ask("write user note offline-note"), "VAT-REPLY write ok");
    await vatOk(["stop", "desk", "--state", state]);

    // The repository comes back on the same address: online again, nothing to do.
    await serve(port);
    const back = await list(state);
    assert.equal(back.get("desk")!.offline, false);
    assert.equal(back.get("lab")!.offline, false);
    assert.equal(back.get("desk")!.safeOffline, true);

    // A new version of the hoarded appliance: seen by a status, fetched and pinned in
    // the background, and safe offline again once all of it is cached.
    await publish("desk", "offline-desk-v2");
    const deadline = Date.now() + 30_000;
    for (;;) {
      const desk = (await list(state)).get("desk")!;
      if (desk.latestVersion === 2 && desk.safeOffline) break;
      if (Date.now() > deadline) throw new Error(`v2 not hoarded: ${JSON.stringify(desk)}`);
      await new Promise((r) => setTimeout(r, 500));
    }
  } finally {
    await (daemon as VatProcess | null)?.stop();
    await (server as VatProcess | null)?.stop();
    const left = await qemuProcessesUnder(state);
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    assert.equal(left, "", "no QEMU left behind");
  }
});
