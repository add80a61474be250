/**
 * A host whose KVM hangs Linux guests (as a `kvm_pvm` host does: the BIOS runs, a
 * Linux guest hangs with QMP saying `running` and an empty console), played by a
 * stand-in `qemu-system-x86_64` early on PATH (tests/helpers/hanging_kvm_qemu.ts).
 * The probe decides on the guest's line, not QEMU's exit code; a guest that the probe
 * let onto KVM and that hangs there is restarted under TCG and reaches VAT-READY, and
 * every surface says why.
 */

import assert from "node:assert/strict";
import { buildBusyboxAppliance } from "../vat/demo/busybox_appliance.ts";
import { KVM_HANGS_GUESTS } from "../vat/vmm/accelerator.ts";
import { KVM_PROBE_LINE, probeKvm } from "../vat/vmm/kvm_probe.ts";
import { writeHangingKvmQemu } from "./helpers/hanging_kvm_qemu.ts";
import { applianceRepo, Guest, qemuProcessesUnder } from "./helpers/guest.ts";
import { startVat, type VatProcess } from "./helpers/processes.ts";
import { vatOk } from "./helpers/vat_cli.ts";

async function script(path: string, body: string): Promise<string> {
  await Deno.writeTextFile(path, `#!/bin/bash\n${body}\n`, { mode: 0o755 });
  return path;
}

Deno.test("probeKvm() decides on the Linux guest's line, not on QEMU's exit code", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vat-kvm-probe-" });
  try {
    // /dev/null stands in for /dev/kvm: it opens read-write on every host.
    const kvmDevice = "/dev/null";
    const hanging = await writeHangingKvmQemu(dir);
    const hung = await probeKvm({ qemuBinary: hanging, kvmDevice, timeoutMs: 3000 });
    assert.equal(hung.works, false);
    assert.match(hung.reason, /KVM on this host hangs Linux guests .*nothing in 3 s.*using TCG/);

    const silent = await script(`${dir}/silent`, "exit 0");
    const quiet = await probeKvm({ qemuBinary: silent, kvmDevice, timeoutMs: 3000 });
    assert.equal(quiet.works, false, "exit code 0 without the line is not KVM working");
    assert.match(quiet.reason, /cannot run Linux guests \(the probe exited with code 0\)/);

    const healthy = await script(`${dir}/healthy`, `echo ${KVM_PROBE_LINE}`);
    assert.equal((await probeKvm({ qemuBinary: healthy, kvmDevice })).works, true);

    const missing = await probeKvm({ qemuBinary: healthy, kvmDevice: `${dir}/no-kvm` });
    assert.deepEqual(missing, { works: false, reason: `${dir}/no-kvm does not exist; using TCG` });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a guest that hangs under KVM is restarted under TCG and boots; vat status says why", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vat-kvm-hang-" });
  const state = `${dir}/s`;
  const bin = `${dir}/bin`;
  let daemon: VatProcess | null = null;
  try {
    await Deno.mkdir(bin);
    const standIn = await writeHangingKvmQemu(bin);
    // The host's probe passed (as the BIOS-only probe did on the kvm_pvm host): its
    // remembered answer says KVM works for this QEMU in this host boot.
    const bootId = (await Deno.readTextFile("/proc/sys/kernel/random/boot_id")).trim();
    const cache = `${dir}/xdg-cache`;
    await Deno.mkdir(`${cache}/vat`, { recursive: true });
    await Deno.writeTextFile(
      `${cache}/vat/accel.json`,
      JSON.stringify({
        "/dev/kvm": {
          bootId,
          qemu: standIn,
          works: true,
          reason: "KVM runs the BIOS on this host",
          fellBack: false,
          decidedAt: new Date().toISOString(),
        },
      }),
    );
    const env = {
      PATH: `${bin}:${Deno.env.get("PATH")}`,
      XDG_CACHE_HOME: cache,
      VAT_ACCEL: undefined,
    };

    const appliance = await buildBusyboxAppliance();
    const repo = await applianceRepo(dir, appliance);
    daemon = await startVat(
      ["--headless", "--state", state, "--port", "0", "--prefetch-limit", "0"],
      (out) => out.includes("listening at"),
      { env },
    );
    await vatOk(["appliance", "add", repo, "--name", "desk", "--state", state]);
    const guest = new Guest(state, "desk");

    await vatOk(["start", "desk", "--state", state]);
    await guest.waitFor(/VAT-READY/);
    const list = JSON.parse((await vatOk(["ls", "--json", "--state", state])).stdout);
    assert.equal(list[0].accel, "tcg");
    assert.equal(list[0].accelNote, KVM_HANGS_GUESTS);
    const status = (await vatOk(["status", "--state", state])).stdout;
    assert.match(status, new RegExp(`guests run on TCG: ${KVM_HANGS_GUESTS}`));
    assert.match(
      daemon.output(),
      new RegExp(`${KVM_HANGS_GUESTS} \\(desk showed no sign of life under KVM\\)`),
    );
    assert.equal(await guest.ask("ping"), "VAT-REPLY ping pong");
    // The answer holds for the rest of the host boot, for every daemon of this user.
    const remembered = JSON.parse(await Deno.readTextFile(`${cache}/vat/accel.json`));
    assert.equal(remembered["/dev/kvm"].works, false);
    assert.equal(remembered["/dev/kvm"].fellBack, true);

    // The next start goes straight to TCG: no second wait for a sign of life.
    await vatOk(["stop", "desk", "--state", state]);
    const started = performance.now();
    await vatOk(["start", "desk", "--state", state]);
    assert.ok(performance.now() - started < 10_000, "the second start did not wait on KVM");
    await guest.waitFor(/VAT-READY/, 2);
    await vatOk(["stop", "desk", "--state", state]);
  } finally {
    await daemon?.stop();
    assert.equal(await qemuProcessesUnder(dir), "");
    await Deno.remove(dir, { recursive: true });
  }
});
