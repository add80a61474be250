import assert from "node:assert/strict";
import { UsageError } from "../errors.ts";
import { AcceleratorChoice, KVM_HANGS_GUESTS, parseAccelSetting } from "./accelerator.ts";
import type { KvmProbeResult } from "./kvm_probe.ts";

function countingProbe(result: KvmProbeResult) {
  const probe = () => {
    probe.calls++;
    return Promise.resolve(result);
  };
  probe.calls = 0;
  return probe;
}

async function withCacheFile(fn: (file: string) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "vat-accel-" });
  try {
    await fn(`${dir}/vat/accel.json`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("AcceleratorChoice uses kvm and tcg as set, without probing", async () => {
  const probe = countingProbe({ works: false, reason: "no" });
  for (const setting of ["kvm", "tcg"] as const) {
    const decision = await new AcceleratorChoice({ setting, probe, cacheFile: null }).decide();
    assert.equal(decision.accel, setting);
    assert.equal(decision.setting, setting);
    assert.match(decision.reason, /as set/);
  }
  assert.equal(probe.calls, 0);
});

Deno.test("AcceleratorChoice probes once per host boot and remembers the answer", async () => {
  await withCacheFile(async (cacheFile) => {
    const probe = countingProbe({ works: true, reason: "KVM runs Linux guests on this host" });
    const first = new AcceleratorChoice({ probe, cacheFile });
    assert.equal((await first.decide()).accel, "kvm");
    assert.equal((await first.decide()).accel, "kvm");
    assert.equal(probe.calls, 1);
    // A second daemon (another state directory, a restart) reads the answer.
    const second = new AcceleratorChoice({ probe, cacheFile });
    assert.deepEqual(await second.decide(), {
      setting: "auto",
      accel: "kvm",
      reason: "KVM runs Linux guests on this host",
      fellBack: false,
    });
    assert.equal(probe.calls, 1);
    assert.equal((await Deno.stat(cacheFile)).mode! & 0o777, 0o600);

    // Another boot of the host probes afresh.
    const raw = JSON.parse(await Deno.readTextFile(cacheFile));
    raw["/dev/kvm"].bootId = "an-earlier-boot";
    await Deno.writeTextFile(cacheFile, JSON.stringify(raw));
    await new AcceleratorChoice({ probe, cacheFile }).decide();
    assert.equal(probe.calls, 2);
    // So does another QEMU binary.
    await new AcceleratorChoice({ probe, cacheFile, qemuBinary: "/bin/true" }).decide();
    assert.equal(probe.calls, 3);
  });
});

Deno.test("AcceleratorChoice falls back to TCG for the rest of the host boot once KVM hangs a guest", async () => {
  await withCacheFile(async (cacheFile) => {
    const lines: string[] = [];
    const probe = countingProbe({ works: true, reason: "KVM runs Linux guests on this host" });
    const choice = new AcceleratorChoice({ probe, cacheFile, log: (l) => lines.push(l) });
    assert.equal((await choice.decide()).accel, "kvm");
    const fallback = await choice.kvmHangsGuests("desk");
    assert.deepEqual(fallback, {
      setting: "auto",
      accel: "tcg",
      reason: KVM_HANGS_GUESTS,
      fellBack: true,
    });
    assert.equal((await choice.decide()).accel, "tcg");
    assert.equal(choice.current?.reason, KVM_HANGS_GUESTS);
    await choice.kvmHangsGuests("other");
    assert.deepEqual(lines, [`${KVM_HANGS_GUESTS} (desk showed no sign of life under KVM)`]);
    const later = new AcceleratorChoice({ probe, cacheFile });
    assert.deepEqual(await later.decide(), fallback);
    assert.equal(probe.calls, 1);
  });
});

Deno.test("AcceleratorChoice survives an unreadable cache file", async () => {
  await withCacheFile(async (cacheFile) => {
    await Deno.mkdir(cacheFile.slice(0, cacheFile.lastIndexOf("/")), { recursive: true });
    await Deno.writeTextFile(cacheFile, "{ not json");
    const probe = countingProbe({ works: false, reason: "no KVM" });
    const decision = await new AcceleratorChoice({ probe, cacheFile, log: () => {} }).decide();
    assert.equal(decision.accel, "tcg");
    assert.equal(probe.calls, 1);
    assert.equal(JSON.parse(await Deno.readTextFile(cacheFile))["/dev/kvm"].works, false);
  });
});

Deno.test("parseAccelSetting() names the source of a bad setting", () => {
  assert.equal(parseAccelSetting("tcg", "--accel"), "tcg");
  assert.throws(
    () => parseAccelSetting("fast", "--accel"),
    (err: unknown) =>
      err instanceof UsageError &&
      err.message === '--accel must be one of auto, kvm, tcg, not "fast"',
  );
});
