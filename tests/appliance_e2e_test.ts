/**
 * Appliances run, end to end, as a user drives them: the daemon (headless) and its
 * CLI, a published test appliance (Debian kernel, busybox initramfs), real QEMU. The
 * system disk is locked down, the user disk persists, a running guest keeps its
 * version while a new one is published, suspend and resume keep memory, reset clears
 * the ephemeral disk, and a daemon killed with SIGKILL leaves no orphans.
 */

import assert from "node:assert/strict";
import { buildBusyboxAppliance } from "../vat/demo/busybox_appliance.ts";
import { Guest, publishAppliance, qemuProcessesUnder } from "./helpers/guest.ts";
import { startVat, type VatProcess } from "./helpers/processes.ts";
import { runVat, vatOk } from "./helpers/vat_cli.ts";

async function status(state: string, name: string) {
  const list = JSON.parse((await vatOk(["ls", "--state", state, "--json"])).stdout);
  return list.find((a: { name: string }) => a.name === name);
}

Deno.test("appliances boot, lock down, keep user data, update, suspend, reset and survive a killed daemon", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vat-e2e-" });
  const state = `${dir}/s`;
  let daemon: VatProcess | null = null;
  const startDaemon = async () => {
    daemon = await startVat(
      ["--headless", "--state", state, "--port", "0"],
      (out) => out.includes("listening at"),
    );
  };
  try {
    const v1 = await buildBusyboxAppliance(undefined, { systemMarker: "system-v1" });
    const v2 = await buildBusyboxAppliance(undefined, { systemMarker: "system-v2" });
    const repo = `${dir}/apps`;
    await vatOk(["keygen", "--out", `${dir}/key`]);
    await vatOk(["repo", "init", repo, "--kind", "appliance"]);
    const publish = (a: typeof v1) =>
      publishAppliance(repo, `${dir}/key`, a, "--ephemeral-size", "16M");
    await publish(v1);

    await startDaemon();
    await vatOk(["appliance", "add", repo, "--name", "desk", "--state", state]);
    const guest = new Guest(state, "desk");

    // First start: creates the subscription, boots v1.
    await vatOk(["start", "desk", "--state", state]);
    await guest.waitFor(/VAT-READY/);
    assert.equal((await status(state, "desk")).runningVersion, 1);
    assert.equal((await status(state, "desk")).subscribed, true);
    assert.equal(await guest.ask("cat /mnt/system/marker"), "VAT-REPLY cat system-v1");
    assert.equal(await guest.ask("read user hello"), "VAT-REPLY read user-initial");
    assert.equal(await guest.ask("write system junk lockdown-test"), "VAT-REPLY write ok");
    assert.equal(await guest.ask("write user note kept-across-boots"), "VAT-REPLY write ok");
    assert.equal(await guest.ask("write ephemeral scratch e1"), "VAT-REPLY write ok");
    assert.equal(await guest.ask("sync"), "VAT-REPLY sync ok");
    const again = await runVat(["start", "desk", "--state", state]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /already running/);

    // Stop (ACPI) and start: the system disk is back to v1, the user disk kept.
    await vatOk(["stop", "desk", "--state", state]);
    assert.equal((await status(state, "desk")).state, "stopped");
    await vatOk(["start", "desk", "--state", state]);
    await guest.waitFor(/VAT-READY/, 2);
    assert.match(await guest.ask("read system junk"), /^VAT-ERROR read/);
    assert.equal(await guest.ask("read user note"), "VAT-REPLY read kept-across-boots");
    assert.equal(await guest.ask("read ephemeral scratch"), "VAT-REPLY read e1");

    // Suspend and resume keep what is in memory.
    assert.equal(await guest.ask("count"), "VAT-REPLY count 1");
    assert.equal(await guest.ask("count"), "VAT-REPLY count 2");
    const suspended = JSON.parse(
      (await vatOk(["suspend", "desk", "--state", state, "--json"])).stdout,
    );
    assert.equal(suspended.state, "suspended");
    assert.equal(suspended.suspendedVersion, 1);
    await vatOk(["start", "desk", "--state", state]);
    assert.equal(await guest.ask("count"), "VAT-REPLY count 3");

    // A new version published while v1 runs: v1 keeps running, and says so.
    await publish(v2);
    const running = await status(state, "desk");
    assert.equal(running.runningVersion, 1);
    assert.equal(running.latestVersion, 2);
    assert.equal(running.updateAvailable, true);
    assert.equal(await guest.ask("cat /mnt/system/marker"), "VAT-REPLY cat system-v1");
    await vatOk(["stop", "desk", "--state", state]);

    // Reset clears the ephemeral disk; the next start boots v2 with the same user disk.
    await vatOk(["reset", "desk", "--state", state]);
    await vatOk(["start", "desk", "--state", state]);
    await guest.waitFor(/VAT-READY/, 3);
    assert.equal((await status(state, "desk")).runningVersion, 2);
    assert.equal(await guest.ask("cat /mnt/system/marker"), "VAT-REPLY cat system-v2");
    assert.equal(await guest.ask("read user note"), "VAT-REPLY read kept-across-boots");
    assert.match(await guest.ask("read ephemeral scratch"), /^VAT-ERROR read/);

    const refused = await runVat(["delete", "desk", "--state", state]);
    assert.equal(refused.code, 2);

    // An administrator's change to the running system disk becomes version 3.
    assert.equal(await guest.ask("write system admin-change from-v2"), "VAT-REPLY write ok");
    assert.equal(await guest.ask("sync"), "VAT-REPLY sync ok");
    const published = JSON.parse(
      (await vatOk([
        "publish",
        "--from",
        "desk",
        "--key",
        `${dir}/key`,
        "--state",
        state,
        "--json",
      ]))
        .stdout,
    );
    assert.equal(published.version, 3);
    assert.equal((await status(state, "desk")).updateAvailable, true);

    // The daemon dies with the guest running: the next daemon reaps QEMU.
    assert.notEqual(await qemuProcessesUnder(state), "");
    await daemon!.stop("SIGKILL");
    daemon = null;
    await startDaemon();
    assert.equal(await qemuProcessesUnder(state), "", "no orphan QEMU");
    const after = await status(state, "desk");
    assert.equal(after.state, "stopped");
    assert.equal(after.runningVersion, null);
    const started = JSON.parse((await vatOk(["start", "desk", "--state", state, "--json"])).stdout);
    assert.equal(started.state, "running");
    assert.equal(started.runningVersion, 3);
    await guest.waitFor(/VAT-READY/, 4);
    assert.equal(await guest.ask("read user note"), "VAT-REPLY read kept-across-boots");
    assert.equal(await guest.ask("read system admin-change"), "VAT-REPLY read from-v2");
    assert.equal(await guest.ask("cat /mnt/system/marker"), "VAT-REPLY cat system-v2");
    await vatOk(["stop", "desk", "--state", state]);
  } finally {
    await (daemon as VatProcess | null)?.stop();
    const left = await qemuProcessesUnder(state);
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    assert.equal(left, "", "no QEMU left behind");
  }
});
