/**
 * `VirtualMachineSpec`: what the VAT asks QEMU to run — the appliance's disks (each
 * served by the VAT over NBD on a Unix socket), CPUs, memory, how it boots, and
 * whether it resumes from a memory image.
 *
 * @module
 */

import { UsageError } from "../errors.ts";
import type { AcceleratorChoice, AccelSetting } from "./accelerator.ts";

/** The disks an appliance can have, in the order the guest sees them. */
export type DiskRole = "system" | "user" | "ephemeral";

/** Every disk role, in the order they are attached (vda, vdb, vdc). */
export const DISK_ROLES: readonly DiskRole[] = ["system", "user", "ephemeral"];

/** One disk, as an NBD export on a Unix socket. */
export interface VmDisk {
  /** The NBD server's Unix socket. */
  socketPath: string;
  /** The export's name on that server. */
  exportName: string;
  /** Attach it read-only (the guest cannot write). Default false. */
  readOnly?: boolean;
}

/** Direct kernel boot, instead of the system disk's boot loader. */
export interface VmKernelBoot {
  /** A bzImage, or an uncompressed ELF `vmlinux` with a PVH entry point. */
  kernel: string;
  initrd?: string;
  /** The kernel command line. */
  append?: string;
}

/** What to run. Only `runDir` and `disks.system` are required. */
export interface VirtualMachineSpec {
  /**
   * A directory for this VM's sockets, pid file and console log; created if missing.
   * One VM at a time per directory.
   */
  runDir: string;
  /** For messages and QEMU's process title. Default: the run directory's name. */
  name?: string;
  /** The disks, attached as virtio-blk with serial numbers equal to their roles. */
  disks: { system: VmDisk; user?: VmDisk; ephemeral?: VmDisk };
  /** Virtual CPUs. Default 1. */
  cpus?: number;
  /** Guest memory. Default 512 MiB. */
  memoryMiB?: number;
  /** Boot this kernel; default: boot the system disk (BIOS). */
  boot?: VmKernelBoot;
  /**
   * `kvm` or `tcg` as they are, or `auto` (the default): what `accelerator` (default:
   * the process's `sharedAcceleratorChoice()`) decides, and a guest it puts on KVM
   * that shows no sign of life within `signOfLifeTimeoutMs` is started again on TCG.
   */
  accel?: AccelSetting;
  /** Decides `auto` and learns from hung guests; one per daemon. */
  accelerator?: AcceleratorChoice;
  /**
   * A count that grows with the guest's disk requests (the NBD server's), one of the
   * signs of life the KVM watch looks for.
   */
  activity?: () => number;
  /** How long a guest on KVM under `auto` has to show life. Default 15 s. */
  signOfLifeTimeoutMs?: number;
  /**
   * QEMU's machine type. Default `pc`. A memory image resumes only on the machine
   * type it was saved on: pass `SuspendedImage.machineType` when resuming.
   */
  machine?: string;
  /**
   * Resume from this memory image (made by `suspendTo()`) instead of booting. The rest
   * of the spec must describe the same machine: disks, CPUs, memory, boot, machine.
   */
  resumeFrom?: string;
  /**
   * Whether the VM has a screen: a VGA card shown over VNC (RFB) on the run directory's
   * Unix socket only (`RunDirPaths.vncSocket`), never on a TCP port. Default true.
   */
  display?: boolean;
  /** `none` (the default) or `user`: QEMU's user-mode NAT with a virtio NIC. */
  network?: "none" | "user";
  /** The QEMU binary. Default `qemu-system-x86_64`. */
  qemuBinary?: string;
  /** How long QEMU may take to open its control socket. Default 15 s. */
  startTimeoutMs?: number;
}

/** QEMU's limit for the pc machine. */
const _MAX_CPUS = 255;

/** Throws `UsageError` for a spec QEMU would refuse or misread. */
export function checkSpec(spec: VirtualMachineSpec): void {
  if (!spec.runDir) throw new UsageError("a VM needs a run directory");
  if (!spec.disks?.system) throw new UsageError("a VM needs a system disk");
  for (const role of DISK_ROLES) {
    const disk = spec.disks[role];
    if (!disk) continue;
    if (!disk.socketPath || disk.exportName === undefined) {
      throw new UsageError(`the ${role} disk needs an NBD socket path and an export name`);
    }
  }
  const cpus = spec.cpus ?? 1;
  if (!Number.isInteger(cpus) || cpus < 1 || cpus > _MAX_CPUS) {
    throw new UsageError(`a VM has 1 to ${_MAX_CPUS} CPUs, not ${spec.cpus}`);
  }
  const memory = spec.memoryMiB ?? 512;
  if (!Number.isInteger(memory) || memory < 16) {
    throw new UsageError(`a VM's memory is a whole number of MiB, at least 16, not ${memory}`);
  }
}
