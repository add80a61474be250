/**
 * `probeKvm()`: whether QEMU can run guests with KVM on this machine, asked once per
 * process.
 *
 * Opening `/dev/kvm` is not enough: on some hosts (nested virtualisation) KVM creates
 * a VM fine but guest code then runs very slowly or hangs, or QEMU aborts setting up
 * the virtual CPU. So the probe runs real guest code: QEMU boots its BIOS (SeaBIOS)
 * with no disk, which gives up at once and reboots, and `-no-reboot` turns that
 * reboot into an exit. KVM works if that finishes with exit code 0 within the time
 * limit (it takes a fraction of a second where KVM is healthy).
 *
 * @module
 */

import { QEMU_BINARY, spawnQemu } from "./qemu_process.ts";

/** The probe's time limit unless told otherwise. */
export const KVM_PROBE_TIMEOUT_MS = 3000;

const _KVM_DEVICE = "/dev/kvm";

let _answer: Promise<boolean> | undefined;

/**
 * Resolves to whether KVM works. The first call runs the probe (at most `timeoutMs`,
 * then the probe QEMU is killed); later calls return the same answer. Never rejects:
 * anything that goes wrong (no `/dev/kvm`, no permission, no QEMU) means "no KVM".
 */
export function probeKvm(
  timeoutMs = KVM_PROBE_TIMEOUT_MS,
  qemuBinary = QEMU_BINARY,
): Promise<boolean> {
  _answer ??= _probe(timeoutMs, qemuBinary).catch(() => false);
  return _answer;
}

async function _probe(timeoutMs: number, qemuBinary: string): Promise<boolean> {
  try {
    const device = await Deno.open(_KVM_DEVICE, { read: true, write: true });
    device.close();
  } catch {
    return false;
  }
  const qemu = spawnQemu(qemuBinary, [
    "-accel",
    "kvm",
    "-machine",
    "pc",
    "-m",
    "16",
    "-nodefaults",
    "-display",
    "none",
    "-no-reboot",
    "-boot",
    "reboot-timeout=0",
  ]);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timedOut = new Promise<"timeout">((resolve) => {
    timer = setTimeout(() => resolve("timeout"), timeoutMs);
  });
  try {
    const result = await Promise.race([qemu.status, timedOut]);
    return result !== "timeout" && result.success;
  } finally {
    clearTimeout(timer);
    qemu.kill("SIGKILL");
    await qemu.status;
  }
}
