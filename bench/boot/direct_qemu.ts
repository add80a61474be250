/**
 * QEMU without vat, for the boot benchmark's baselines: the command line is the one
 * vat builds (`qemuArgs()` from vat/vmm/qemu_args.ts: same machine, memory, devices,
 * virtio-blk serials, console chardev with its log file, VGA and VNC, pvpanic), with
 * two changes only: no `-S` (nothing needs to attach before the guest runs), and each
 * disk is either a local qcow2 file or an NBD server of the caller's (nbdkit) instead
 * of vat's.
 *
 * @module
 */

import { type Accelerator, qemuArgs } from "../../vat/vmm/qemu_args.ts";
import { QEMU_BINARY, type QemuProcess, spawnQemu } from "../../vat/vmm/qemu_process.ts";
import { type RunDirPaths, runDirPaths } from "../../vat/vmm/run_dir.ts";
import type { VmDisk } from "../../vat/vmm/vm_spec.ts";
import { waitForSerialLine } from "./serial_log.ts";
import { pathExists } from "../../vat/fs_atomic.ts";

/** How the appliance boots (as its manifest says). */
export interface KernelBoot {
  kernel: string;
  initrd: string;
  append: string;
  memoryMiB: number;
}

/** Where one disk's bytes come from. */
export type DirectDisk = { qcow2: string } | { nbdSocket: string };

/** What one boot measured, in milliseconds from its start. */
export interface DirectBootTimes {
  /** QEMU wrote its pid file (it is past option parsing and device setup has begun). */
  qemuStartedMs: number;
  /** The guest printed the ready line. */
  readyMs: number;
}

/** QEMUs running now, so a failed run can stop them. */
const _running = new Set<QemuProcess>();

/** The QEMU command line for `boot` with `disks`, its files in `runDir`. */
export function directQemuArgs(
  boot: KernelBoot,
  disks: { system: DirectDisk; user?: DirectDisk },
  runDir: string,
  accel: Accelerator,
): string[] {
  const paths = runDirPaths(runDir);
  const asNbd = (disk: DirectDisk): VmDisk => ({
    socketPath: "nbdSocket" in disk ? disk.nbdSocket : "",
    exportName: "",
  });
  const args = qemuArgs(
    {
      runDir,
      name: "bench",
      memoryMiB: boot.memoryMiB,
      disks: {
        system: asNbd(disks.system),
        ...(disks.user ? { user: asNbd(disks.user) } : {}),
      },
      boot: { kernel: boot.kernel, initrd: boot.initrd, append: boot.append },
    },
    paths,
    accel,
  );
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    if (args[i] === "-S") continue;
    if (args[i] === "-blockdev") {
      const node = JSON.parse(args[++i]);
      const disk = disks[node["node-name"] as "system" | "user"]!;
      if ("qcow2" in disk) {
        out.push(
          "-blockdev",
          JSON.stringify({
            driver: "qcow2",
            "node-name": node["node-name"],
            file: { driver: "file", filename: disk.qcow2 },
            "read-only": false,
            discard: "unmap",
          }),
        );
      } else {
        out.push("-blockdev", JSON.stringify(node));
      }
      continue;
    }
    out.push(args[i]);
  }
  return out;
}

/**
 * Runs QEMU with `args` (from `directQemuArgs()`) until the guest prints `marker` on
 * its console, then kills it. Times are from `since` (a `performance.now()`; default:
 * the call). `runDir` must hold no console log from an earlier boot.
 */
export async function bootDirect(
  args: string[],
  runDir: string,
  marker: string,
  timeoutMs: number,
  since?: number,
): Promise<DirectBootTimes> {
  const paths: RunDirPaths = runDirPaths(runDir);
  await Deno.mkdir(runDir, { recursive: true });
  const started = since ?? performance.now();
  const qemu = spawnQemu(QEMU_BINARY, args);
  _running.add(qemu);
  let qemuStartedAt: number | undefined;
  try {
    const readyAt = await waitForSerialLine(paths.consoleLog, marker, {
      timeoutMs,
      failed: () => qemu.hasExited ? `(QEMU exited: ${qemu.outputTail()})` : undefined,
      onPoll: async () => {
        if (qemuStartedAt === undefined && await pathExists(paths.pidFile)) {
          qemuStartedAt = performance.now();
        }
      },
    });
    return {
      qemuStartedMs: (qemuStartedAt ?? readyAt) - started,
      readyMs: readyAt - started,
    };
  } finally {
    qemu.kill("SIGKILL");
    await qemu.status;
    _running.delete(qemu);
  }
}

/** Kills every QEMU `bootDirect()` started and has not yet ended. */
export async function killDirectQemus(): Promise<void> {
  for (const qemu of _running) qemu.kill("SIGKILL");
  await Promise.allSettled([..._running].map((qemu) => qemu.status));
  _running.clear();
}
