/**
 * One running appliance: its disks served over NBD (system disk under a lockdown
 * overlay, the subscription's persistent user disk, a local ephemeral disk) and the
 * QEMU that reads them. Made by `startApplianceRun`, ended by the VM's exit, after
 * which every disk is flushed and closed and the NBD socket removed.
 *
 * @module
 */

import type { ChunkCache, ChunkFetcher } from "../cache/chunk_cache.ts";
import { AccessMap } from "../disk/access_map.ts";
import type { BlockDevice } from "../disk/block_device.ts";
import { StatsDevice } from "../disk/stats_device.ts";
import type { ChunkedDisk } from "../disk/chunked_disk.ts";
import { FileDevice } from "../disk/file_device.ts";
import { NotFoundError } from "../errors.ts";
import { openVersionDisk, type VersionDisk } from "../disk/version_disk.ts";
import { serveNbd } from "../nbd/nbd_server.ts";
import { writeFileAtomic } from "../fs_atomic.ts";
import type { Repository, Version } from "../repo/repository.ts";
import { removeStaleSocket } from "../unix_socket.ts";
import type { AcceleratorChoice } from "../vmm/accelerator.ts";
import { VirtualMachine, type VmExit } from "../vmm/virtual_machine.ts";
import type { VmDisk } from "../vmm/vm_spec.ts";
import { makeRunDir } from "../vmm/run_dir.ts";

/** Where one appliance keeps its files (under the state directory). */
export interface ApplianceDirs {
  /** Overlays, ephemeral disk, memory images, boot files, console log. */
  dir: string;
  /** Sockets and QEMU's run files. */
  runDir: string;
}

/** What to run. */
export interface RunSpec {
  repo: Repository;
  /** The version whose system disk boots. */
  version: Version;
  /** The subscription's user disk; null when the appliance has none. */
  userDisk: UserDiskSpec | null;
  cache: ChunkCache;
  dirs: ApplianceDirs;
  /** A memory image to resume from (same version) and the machine it was saved on. */
  resumeFrom?: { path: string; machineType: string };
  /** Fetches the chunks the guest reads and the cache lacks (default: the repository). */
  fetch?: ChunkFetcher;
  /** Sees each disk read through the cache as it opens, boot files too (boot traces). */
  onDisk?: (name: string, disk: ChunkedDisk) => void;
  /** Runs once the disks are open, before QEMU starts (the backup's first snapshot). */
  beforeBoot?: (disks: { user: VersionDisk | null }) => Promise<void>;
  /** Runs once QEMU exited, before the disks are closed (the backup's last snapshot). */
  beforeClose?: (run: ApplianceRun) => Promise<void>;
  /** Decides KVM or TCG (default: the process's `sharedAcceleratorChoice()`). */
  accelerator?: AcceleratorChoice;
}

/**
 * Where the user disk grows from: the user disk of `version` in `repo` (an appliance
 * version's initial user disk, or a version of the user's data repository), read
 * through `cache`, under the persistent overlay.
 */
export interface UserDiskSpec {
  repo: Repository;
  version: Version;
  cache: ChunkCache;
  /** Start the overlay afresh: the disk becomes the base (a restore, an undo). */
  discardOverlay?: boolean;
  /** Count every chunk as changed since the last snapshot (a first backup). */
  markAllDirty?: boolean;
  /** Fetches the chunks the guest reads of it and the cache lacks (default: `repo`). */
  fetch?: ChunkFetcher;
}

/** One exported disk's access heat map, and what it is read from. */
export interface DiskAccess {
  readonly map: AccessMap;
  readonly base: ChunkedDisk;
  readonly cache: ChunkCache;
}

/** A running appliance. */
export interface ApplianceRun {
  readonly vm: VirtualMachine;
  readonly version: Version;
  readonly system: VersionDisk;
  readonly user: VersionDisk | null;
  /** The system and user disks' access heat maps, by disk name. */
  readonly access: ReadonlyMap<string, DiskAccess>;
  /** Resolves once QEMU exited and every disk is flushed and closed. */
  readonly ended: Promise<VmExit>;
}

/** Starts the disks, the NBD server and QEMU. */
export async function startApplianceRun(spec: RunSpec): Promise<ApplianceRun> {
  const { repo, version, dirs } = spec;
  await Deno.mkdir(dirs.dir, { recursive: true });
  // 0700 before the NBD socket is made in it: QEMU's sockets go there too.
  await makeRunDir(dirs.runDir);
  const devices: BlockDevice[] = [];
  const exports = new Map<string, BlockDevice>();
  const access = new Map<string, DiskAccess>();
  const unobserve: (() => void)[] = [];
  // The guest's requests are counted on top of each disk's stack; its fetches below.
  const counted = (name: string, disk: VersionDisk, cache: ChunkCache): BlockDevice => {
    const map = new AccessMap(disk.device.sizeBytes, disk.base.index.chunkBytes);
    unobserve.push(disk.base.observe((chunk, missed) => missed && map.countFetch(chunk)));
    access.set(name, { map, base: disk.base, cache });
    return new StatsDevice(disk.device, map);
  };
  const guestDisks: { system?: VmDisk; user?: VmDisk; ephemeral?: VmDisk } = {};
  const socketPath = `${dirs.runDir}/nbd.sock`;
  let server: ReturnType<typeof serveNbd> | null = null;
  try {
    const system = await openVersionDisk(repo, version, "system", spec.cache, {
      overlayPath: `${dirs.dir}/system.overlay`,
      // Lockdown: a cold boot starts from the published system disk. Resuming a
      // memory image needs the disk as the suspended guest left it.
      discardOverlay: !spec.resumeFrom,
      fetch: spec.fetch,
    });
    spec.onDisk?.("system", system.base);
    devices.push(system.device);
    exports.set("system", counted("system", system, spec.cache));
    guestDisks.system = { socketPath, exportName: "system" };
    let user: VersionDisk | null = null;
    const userDisk = spec.userDisk;
    if (userDisk?.version.manifest.disks.user) {
      user = await openVersionDisk(userDisk.repo, userDisk.version, "user", userDisk.cache, {
        overlayPath: `${dirs.dir}/user.overlay`,
        discardOverlay: userDisk.discardOverlay,
        fetch: userDisk.fetch,
      });
      if (userDisk.markAllDirty) {
        user.overlay?.markDirty(Array.from({ length: user.base.index.count }, (_, i) => i));
      }
      // A boot trace knows the appliance's initial user disk, not a data repository's.
      if (userDisk.repo === repo) spec.onDisk?.("user", user.base);
      devices.push(user.device);
      exports.set("user", counted("user", user, userDisk.cache));
      guestDisks.user = { socketPath, exportName: "user" };
    }
    const ephemeralBytes = version.manifest.vm.ephemeralSizeBytes ?? 0;
    if (ephemeralBytes > 0) {
      const path = `${dirs.dir}/ephemeral.raw`;
      const ephemeral = await _openOrCreate(path, ephemeralBytes);
      devices.push(ephemeral);
      exports.set("ephemeral", ephemeral);
      guestDisks.ephemeral = { socketPath, exportName: "ephemeral" };
    }
    const boot = await _bootFiles(spec);
    await spec.beforeBoot?.({ user });
    await removeStaleSocket(socketPath);
    server = serveNbd({ exports, socketPath });
    const vm = await VirtualMachine.start({
      name: dirs.dir.split("/").pop(),
      runDir: dirs.runDir,
      memoryMiB: version.manifest.vm.memoryMiB,
      cpus: version.manifest.vm.cpus,
      disks: { ...guestDisks, system: guestDisks.system },
      boot: boot.kernel
        ? { kernel: boot.kernel, initrd: boot.initrd, append: version.manifest.vm.append }
        : undefined,
      resumeFrom: spec.resumeFrom?.path,
      machine: spec.resumeFrom?.machineType,
      accelerator: spec.accelerator,
      activity: () => server!.requests,
    });
    const nbd = server;
    let run: ApplianceRun | null = null;
    const ended = vm.exited.then(async (exit) => {
      await nbd.close();
      if (run && spec.beforeClose) {
        await spec.beforeClose(run).catch((err) => {
          console.error(`after ${dirs.dir}: ${(err as Error).message}`);
        });
      }
      for (const stop of unobserve) stop();
      for (const device of devices) await device.close().catch(() => {});
      return exit;
    });
    run = { vm, version, system, user, access, ended };
    return run;
  } catch (err) {
    await server?.close();
    for (const stop of unobserve) stop();
    for (const device of devices) await device.close().catch(() => {});
    throw err;
  }
}

async function _openOrCreate(path: string, sizeBytes: number): Promise<FileDevice> {
  try {
    const device = await FileDevice.open(path);
    if (device.sizeBytes === sizeBytes) return device;
    await device.close();
  } catch (err) {
    if (!(err instanceof NotFoundError || err instanceof Deno.errors.NotFound)) throw err;
  }
  return await FileDevice.create(path, sizeBytes);
}

/**
 * The version's kernel and initrd as files (QEMU's -kernel and -initrd read files),
 * written once per version, read through the chunk cache so that a cached or hoarded
 * version needs no repository.
 */
async function _bootFiles(spec: RunSpec): Promise<{ kernel?: string; initrd?: string }> {
  const { repo, version, cache } = spec;
  const dir = spec.dirs.dir;
  const out: { kernel?: string; initrd?: string } = {};
  for (const role of ["kernel", "initrd"] as const) {
    const name = version.manifest.vm[role];
    if (!name) continue;
    const path = `${dir}/boot/${version.number}-${role}`;
    try {
      await Deno.stat(path);
    } catch {
      await Deno.mkdir(`${dir}/boot`, { recursive: true });
      const { device, base } = await openVersionDisk(repo, version, name, cache, {
        fetch: spec.fetch,
      });
      spec.onDisk?.(name, base);
      const data = new Uint8Array(device.sizeBytes);
      await device.read(0, data);
      await writeFileAtomic(path, data);
    }
    out[role] = path;
  }
  return out;
}
