/**
 * `qemuArgs()`: the `qemu-system-x86_64` command line for a `VirtualMachineSpec`.
 * A pure function, so the exact command line is tested without QEMU.
 *
 * Choices, and why:
 *
 * - `-S`: QEMU starts paused, so the VAT connects to QMP and the console before the
 *   guest prints its first byte, then sends `cont`.
 * - `-no-reboot`: a guest reboot ends QEMU (exit reason `reboot`) instead of
 *   resetting it in place. The VAT then starts the appliance again, which is what a
 *   boot means here: the newest system disk with a fresh overlay (lockdown).
 * - Disks are `-blockdev` NBD clients of the VAT's server on Unix sockets, given as
 *   JSON (no comma escaping), with `discard=unmap` so guest TRIMs reach the VAT.
 *   The virtio-blk serial numbers are the roles, which is how the guest finds them.
 * - The console is a socket chardev with a log file: the VAT reads and types into
 *   the socket, and the log keeps everything even while nobody is connected.
 * - VNC listens on a Unix socket in the run directory (mode 0700) and nowhere else: no
 *   TCP port, no websocket. QEMU's VNC has no authentication of its own (security type
 *   None), so whoever reaches the listener has the screen and keyboard; only the VAT
 *   can reach this one, and it relays the browser's authenticated WebSocket to it.
 * - A pvpanic device, so a guest kernel's panic ends QEMU with reason `panic`
 *   (QEMU's default panic action is to shut down) instead of going unnoticed.
 * - No default devices (`-nodefaults`): what the guest sees is what is listed here,
 *   which a memory image needs to match exactly when resuming.
 *
 * @module
 */

import type { RunDirPaths } from "./run_dir.ts";
import { DISK_ROLES, type VirtualMachineSpec } from "./vm_spec.ts";

/** The accelerator QEMU runs the guest with. */
export type Accelerator = "kvm" | "tcg";

/** The command line (without the binary) for `spec`, using the files of `paths`. */
export function qemuArgs(
  spec: VirtualMachineSpec,
  paths: RunDirPaths,
  accel: Accelerator,
): string[] {
  const name = spec.name ?? paths.dir.slice(paths.dir.lastIndexOf("/") + 1);
  const args = [
    "-name",
    _escape(name),
    "-machine",
    spec.machine ?? "pc",
    "-accel",
    accel,
    "-smp",
    String(spec.cpus ?? 1),
    "-m",
    String(spec.memoryMiB ?? 512),
    "-nodefaults",
    "-no-user-config",
    "-no-reboot",
    "-S",
    "-pidfile",
    paths.pidFile,
    "-chardev",
    `socket,id=console,path=${_escape(paths.consoleSocket)},server=on,wait=off,` +
    `logfile=${_escape(paths.consoleLog)},logappend=on`,
    "-serial",
    "chardev:console",
    "-chardev",
    `socket,id=qmp,path=${_escape(paths.qmpSocket)},server=on,wait=off`,
    "-mon",
    "chardev=qmp,mode=control",
    "-display",
    "none",
    "-device",
    "pvpanic",
  ];
  if (spec.display !== false) {
    args.push("-device", "VGA", "-vnc", `unix:${_escape(paths.vncSocket)}`);
  }
  for (const role of DISK_ROLES) {
    const disk = spec.disks[role];
    if (!disk) continue;
    args.push(
      "-blockdev",
      JSON.stringify({
        driver: "nbd",
        "node-name": role,
        server: { type: "unix", path: disk.socketPath },
        export: disk.exportName,
        "read-only": disk.readOnly ?? false,
        discard: "unmap",
      }),
      "-device",
      JSON.stringify({
        driver: "virtio-blk-pci",
        id: `${role}-disk`,
        drive: role,
        serial: role,
        ...(role === "system" && !spec.boot ? { bootindex: 0 } : {}),
      }),
    );
  }
  if (spec.boot) {
    args.push("-kernel", spec.boot.kernel);
    if (spec.boot.initrd !== undefined) args.push("-initrd", spec.boot.initrd);
    if (spec.boot.append !== undefined) args.push("-append", spec.boot.append);
  }
  if (spec.network === "user") {
    args.push("-nic", "user,model=virtio-net-pci");
  } else {
    args.push("-nic", "none");
  }
  if (spec.resumeFrom !== undefined) args.push("-incoming", "defer");
  return args;
}

/**
 * A value inside QEMU's `key=value,...` option syntax: commas are doubled. (File
 * names given as separate arguments, like `-kernel`'s, need no escaping.)
 */
function _escape(value: string): string {
  return value.replaceAll(",", ",,");
}
