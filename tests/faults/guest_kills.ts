/**
 * Fault area "guest": a daemon running the busybox appliance (Debian kernel, busybox
 * initramfs; vat/demo/busybox_appliance.ts) SIGKILLed while `vat start` spawns QEMU,
 * while the guest boots, and once with the guest up right after it synced a note to
 * its user disk. After every kill: no QEMU is left (pgrep), and the restarted daemon
 * shows the appliance stopped. At the end the appliance boots again to VAT-READY and
 * its user disk holds the last note the guest synced.
 *
 * Guests run under TCG (`VAT_ACCEL=tcg`): some hosts' KVM hangs Linux guests (issue
 * 12). The suite runs this area only when the daemon knows `--accel`/`VAT_ACCEL`.
 *
 * @module
 */

import { buildBusyboxAppliance } from "../../vat/demo/busybox_appliance.ts";
import { Guest, publishAppliance } from "../helpers/guest.ts";
import {
  type FaultArea,
  qemuPidsMentioning,
  VAT_DENO_ARGS,
  type VatChild,
} from "../helpers/fault_kill.ts";

/** Whether the daemon can be told to use TCG (`vat daemon --help` mentions it). */
export async function daemonHasAccelChoice(): Promise<boolean> {
  const help = await new Deno.Command(Deno.execPath(), {
    args: [...VAT_DENO_ARGS, "daemon", "--help"],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(help.stdout) + new TextDecoder().decode(help.stderr);
  return /--accel|VAT_ACCEL/.test(text);
}

export async function guestKills(area: FaultArea, kills: number): Promise<void> {
  const dir = area.dir;
  const state = `${dir}/state`;
  const repo = `${dir}/apps`;
  await area.ok(["keygen", "--out", `${dir}/key`]);
  await area.ok(["repo", "init", repo, "--kind", "appliance"]);
  await publishAppliance(repo, `${dir}/key`, await buildBusyboxAppliance());
  const env = { VAT_ACCEL: "tcg" };
  const startDaemon = () =>
    area.start(["--headless", "--state", state, "--port", "0"], /listening at/, { env });
  const guest = new Guest(state, "desk");
  const readyCount = async () => ((await guest.log()).match(/VAT-READY/g) ?? []).length;
  const stateOf = async () => {
    const list = JSON.parse((await area.ok(["ls", "--state", state, "--json"])).stdout);
    return list.find((a: { name: string }) => a.name === "desk");
  };
  const noOrphanQemu = async (why: string) => {
    const deadline = performance.now() + 3000;
    let pids = await qemuPidsMentioning(state);
    while (pids.length && performance.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
      pids = await qemuPidsMentioning(state);
    }
    area.check(pids.length === 0, "no orphan QEMU", `${why}: QEMU ${pids.join(", ")} left running`);
  };

  let daemon: VatChild = await startDaemon();
  await area.ok(["appliance", "add", repo, "--name", "desk", "--state", state]);
  // The user disk's note as the guest last synced it.
  let note = "user-initial";
  for (let k = 0; k < kills; k++) {
    const boots = await readyCount();
    const starting = area.spawn(["start", "desk", "--state", state], { env });
    if (k === kills - 1) {
      // The guest is up and has just synced a note: it must survive the kill.
      await starting.exited;
      await guest.waitFor(/VAT-READY/, boots + 1);
      const text = `note-${area.int(0, 1e9)}`;
      area.check(
        (await guest.ask(`write user note ${text}`)) === "VAT-REPLY write ok",
        "guest answers",
        "the write failed",
      );
      area.check((await guest.ask("sync")) === "VAT-REPLY sync ok", "guest answers", "no sync");
      note = text;
      await new Promise((r) => setTimeout(r, area.between(0, 300)));
      area.killedAt("guest up, note synced");
    } else {
      // Somewhere from QEMU's spawn to the end of the boot (about 5 s under TCG).
      await new Promise((r) => setTimeout(r, area.between(0, 6000)));
      area.killedAt(
        !starting.hasExited ? "during start" : (await readyCount()) > boots ? "booted" : "booting",
      );
    }
    if (!(await area.kill(daemon))) area.fail(`the daemon exited by itself:\n${daemon.output()}`);
    await starting.exited;
    await noOrphanQemu(`after kill ${area.kills}`);
    daemon = await startDaemon();
    await noOrphanQemu(`after restart ${area.kills}`);
    const after = await stateOf();
    area.check(
      after.state === "stopped" && after.runningVersion === null,
      "stopped after restart",
      JSON.stringify(after),
    );
  }
  // The appliance starts again, and the synced note is there.
  const boots = await readyCount();
  await area.ok(["start", "desk", "--state", state], { env });
  await guest.waitFor(/VAT-READY/, boots + 1);
  area.checked("appliance starts again");
  const read = await guest.ask("read user note");
  area.check(
    read === `VAT-REPLY read ${note}` || (note === "user-initial" && /^VAT-ERROR/.test(read)),
    "synced guest data survives",
    `read ${read}, expected ${note}`,
  );
  await area.ok(["stop", "desk", "--state", state]);
  await daemon.stop();
  await noOrphanQemu("after a clean stop");
}
