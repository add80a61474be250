/**
 * `probeKvm()`: whether QEMU can run Linux guests with KVM on this host.
 *
 * Opening `/dev/kvm` is not enough, and neither is running the BIOS: on some hosts
 * (nested virtualisation, or a `kvm_pvm` module) KVM starts SeaBIOS fine and then
 * hangs every Linux guest as soon as it runs in long mode with paging, with QMP still
 * saying `running` and the serial console empty. So the probe boots what appliances
 * boot: the host's Debian kernel with a tiny initramfs (a static busybox whose `/init`
 * prints `VAT-KVM-PROBE-OK` and powers off), under `-accel kvm`, and decides on that
 * line being seen within the time limit, not on an exit code. Where KVM is healthy
 * this takes about a second and a half.
 *
 * Without a kernel or busybox on the host the probe falls back to the BIOS run
 * (`-no-reboot` turns SeaBIOS's "no bootable device" reboot into an exit), which
 * catches hosts where KVM hangs everything; the guest watchdog in
 * `VirtualMachine.start()` catches the rest.
 *
 * @module
 */

import { NewcArchive } from "../image/newc_archive.ts";
import { findBusybox, findHostKernel } from "./host_linux.ts";
import { QEMU_BINARY, spawnQemu } from "./qemu_process.ts";

/** The probe's time limit unless told otherwise: six times what a healthy KVM needs. */
export const KVM_PROBE_TIMEOUT_MS = 10_000;

/** The device KVM is used through. */
export const KVM_DEVICE = "/dev/kvm";

/** The line the probe guest prints once its kernel has started its init. */
export const KVM_PROBE_LINE = "VAT-KVM-PROBE-OK";

/** What the probe found. */
export interface KvmProbeResult {
  /** Whether guests should run under KVM. */
  works: boolean;
  /** Why, in words for the log and `vat status`. */
  reason: string;
}

/** How to probe. */
export interface KvmProbeOptions {
  /** The QEMU binary (default `qemu-system-x86_64`). */
  qemuBinary?: string;
  /** Default `KVM_PROBE_TIMEOUT_MS`. */
  timeoutMs?: number;
  /** Default `/dev/kvm`. */
  kvmDevice?: string;
}

/**
 * Runs the probe (at most `timeoutMs`, then the probe's QEMU is killed). Never
 * rejects: anything that goes wrong (no `/dev/kvm`, no permission, no QEMU, no line)
 * means "no KVM", with the reason.
 */
export async function probeKvm(options: KvmProbeOptions = {}): Promise<KvmProbeResult> {
  const device = options.kvmDevice ?? KVM_DEVICE;
  const timeoutMs = options.timeoutMs ?? KVM_PROBE_TIMEOUT_MS;
  const qemuBinary = options.qemuBinary ?? QEMU_BINARY;
  try {
    (await Deno.open(device, { read: true, write: true })).close();
  } catch (err) {
    const why = err instanceof Deno.errors.NotFound
      ? `${device} does not exist`
      : `${device} cannot be opened (${(err as Error).message})`;
    return { works: false, reason: `${why}; using TCG` };
  }
  try {
    const guest = await _probeGuest();
    if (guest === null) return await _probeBios(qemuBinary, timeoutMs);
    return await _probeLinux(qemuBinary, timeoutMs, guest);
  } catch (err) {
    return { works: false, reason: `the KVM probe failed (${(err as Error).message}); using TCG` };
  }
}

interface _ProbeGuest {
  kernel: string;
  initrd: string;
  dir: string;
}

/** The host's kernel and a busybox initramfs in a temporary directory, or null. */
async function _probeGuest(): Promise<_ProbeGuest | null> {
  let kernel: string;
  let busybox: string;
  try {
    kernel = (await findHostKernel()).kernel;
    busybox = await findBusybox();
  } catch {
    return null;
  }
  const archive = new NewcArchive();
  archive.directory("dev");
  archive.characterDevice("dev/console", 5, 1);
  archive.file("bin/busybox", await Deno.readFile(busybox), 0o755);
  archive.file(
    "init",
    new TextEncoder().encode(
      `#!/bin/busybox sh\n/bin/busybox echo ${KVM_PROBE_LINE}\n/bin/busybox poweroff -f\n`,
    ),
    0o755,
  );
  const dir = await Deno.makeTempDir({ prefix: "vat-kvm-probe-" });
  const initrd = `${dir}/initrd.cpio`;
  await Deno.writeFile(initrd, archive.finish());
  return { kernel, initrd, dir };
}

async function _probeLinux(
  qemuBinary: string,
  timeoutMs: number,
  guest: _ProbeGuest,
): Promise<KvmProbeResult> {
  try {
    const outcome = await _run(qemuBinary, [
      "-serial",
      "stdio",
      "-kernel",
      guest.kernel,
      "-initrd",
      guest.initrd,
      "-append",
      "console=ttyS0 quiet panic=-1 8250.nr_uarts=1",
    ], timeoutMs);
    if (outcome.output.includes(KVM_PROBE_LINE)) {
      return { works: true, reason: "KVM runs Linux guests on this host" };
    }
    return {
      works: false,
      reason: outcome.timedOut
        ? `KVM on this host hangs Linux guests (the probe's kernel printed nothing in ${
          timeoutMs / 1000
        } s); using TCG`
        : `KVM on this host cannot run Linux guests (the probe ${outcome.how}); using TCG`,
    };
  } finally {
    await Deno.remove(guest.dir, { recursive: true }).catch(() => {});
  }
}

async function _probeBios(qemuBinary: string, timeoutMs: number): Promise<KvmProbeResult> {
  const outcome = await _run(qemuBinary, ["-boot", "reboot-timeout=0"], timeoutMs);
  if (outcome.success) {
    return {
      works: true,
      reason: "KVM runs the BIOS on this host (no Linux kernel to probe with: install " +
        "linux-image-amd64 and busybox-static for a better probe); guests are watched",
    };
  }
  return {
    works: false,
    reason: outcome.timedOut
      ? `KVM on this host hangs guests (the BIOS did not finish in ${timeoutMs / 1000} s); ` +
        "using TCG"
      : `KVM on this host cannot run guests (the probe ${outcome.how}); using TCG`,
  };
}

interface _Outcome {
  success: boolean;
  timedOut: boolean;
  /** How QEMU ended, in words. */
  how: string;
  /** What QEMU printed (the serial console goes to standard output). */
  output: string;
}

/** Runs a 128 MiB KVM guest with `args` until it exits or `timeoutMs` passes. */
async function _run(qemuBinary: string, args: string[], timeoutMs: number): Promise<_Outcome> {
  const qemu = spawnQemu(qemuBinary, [
    "-accel",
    "kvm",
    "-machine",
    "pc",
    "-m",
    "128",
    "-nodefaults",
    "-no-user-config",
    "-display",
    "none",
    "-no-reboot",
    ...args,
  ]);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timedOut = new Promise<"timeout">((resolve) => {
    timer = setTimeout(() => resolve("timeout"), timeoutMs);
  });
  try {
    const result = await Promise.race([qemu.status, timedOut]);
    if (result === "timeout") {
      return { success: false, timedOut: true, how: "timed out", output: qemu.outputTail() };
    }
    return {
      success: result.success,
      timedOut: false,
      how: result.signal ? `was killed by ${result.signal}` : `exited with code ${result.code}`,
      output: qemu.outputTail(),
    };
  } finally {
    clearTimeout(timer);
    qemu.kill("SIGKILL");
    await qemu.status;
  }
}
