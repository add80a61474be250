/**
 * The pieces the backup benchmark runs vat's backup with, in-process and as the
 * daemon wires them (vat/backup/backups.ts): a user disk that is a `CowOverlay` over an
 * empty (all-zero) base, a `SubscriptionBackup` with its outbox, and the user's data
 * repository in a local `FileStore` behind an emulated uplink (`LinkStore`). Also the
 * process's CPU time, and copies of a prepared state so every phase starts alike.
 *
 * @module
 */

import { deriveUserKey } from "../../vat/auth/user_key.ts";
import { DataRepository } from "../../vat/backup/data_repository.ts";
import { SubscriptionBackup } from "../../vat/backup/subscription_backup.ts";
import { type ChunkSource, CowOverlay } from "../../vat/disk/cow_overlay.ts";
import { RateLimiter } from "../../vat/rate_limiter.ts";
import { DEFAULT_CHUNK_BYTES } from "../../vat/repo/repo_config.ts";
import { FileStore } from "../../vat/repo/store_file.ts";
import type { VmDescription } from "../../vat/repo/manifest.ts";
import { LinkStore } from "./link_store.ts";
import { pathExists } from "../../vat/fs_atomic.ts";

/** The user disk's chunk size: an appliance repository's default, which user disks inherit. */
export const CHUNK_BYTES = DEFAULT_CHUNK_BYTES;
export const VM: VmDescription = { memoryMiB: 1024, cpus: 1 };
const _KEY = deriveUserKey(new Uint8Array(32).fill(0x5a), "(bench key)");
/** One VAT throughout, so a copied state still holds its own lease. */
const _VAT_ID = "00000000-bench-backup-0000-000000000000";

/** A new subscription's user disk: all zeroes, in chunks of `CHUNK_BYTES`. */
export function emptyDisk(sizeBytes: number): ChunkSource {
  const refuse = () => Promise.reject(new Error("the empty base disk is read-only"));
  return {
    sizeBytes,
    readOnly: true,
    preferredBlockBytes: CHUNK_BYTES,
    readChunk: () => Promise.resolve(null),
    read: (_offset, into) => Promise.resolve(void into.fill(0)),
    write: refuse,
    flush: () => Promise.resolve(),
    trim: refuse,
    writeZeroes: refuse,
    close: () => Promise.resolve(),
  };
}

/** vat's side of one phase: the user disk, its backup, and the link to the data repository. */
export interface VatRig {
  overlay: CowOverlay;
  backup: SubscriptionBackup;
  data: DataRepository;
  link: LinkStore;
}

/**
 * Opens (creating them when absent) the user disk, data repository and outbox under
 * `dir`, the uplink capped at `linkBytesPerSecond` (0: no cap) with `rttMs` of round
 * trip per write, and starts the subscription as the daemon does.
 */
export async function openVat(
  dir: string,
  diskBytes: number,
  linkBytesPerSecond: number,
  rttMs = 0,
): Promise<VatRig> {
  const link = new LinkStore(
    new FileStore(`${dir}/repo`),
    new RateLimiter(linkBytesPerSecond),
    rttMs,
  );
  const data = await DataRepository.open(link, _KEY, { create: true });
  const backup = await SubscriptionBackup.open({
    data,
    dir: `${dir}/backup`,
    name: "desk",
    vatId: _VAT_ID,
    // The link is the bottleneck; the user set no cap of their own.
    limiter: new RateLimiter(0),
  });
  const hasDisk = await pathExists(`${dir}/user.overlay`);
  await backup.prepareStart({ hasDisk, dirty: false });
  const overlay = await CowOverlay.open({
    base: emptyDisk(diskBytes),
    path: `${dir}/user.overlay`,
  });
  return { overlay, backup, data, link };
}

/** Only the user disk under `dir` (for runs without backup). */
export function openDiskOnly(dir: string, diskBytes: number): Promise<CowOverlay> {
  return CowOverlay.open({ base: emptyDisk(diskBytes), path: `${dir}/user.overlay` });
}

export async function closeVat(rig: VatRig): Promise<void> {
  await rig.overlay.close();
  rig.backup.close();
  await rig.data.close();
}

/** Copies directory `from` to `to`, keeping sparse files sparse. */
export async function copyState(from: string, to: string): Promise<void> {
  await runChecked("cp", ["-a", "--sparse=always", from, to]);
}

/** Makes every write to the file system holding `dir` durable, so no phase pays for another's. */
export async function syncFileSystem(dir: string): Promise<void> {
  await runChecked("sync", ["-f", dir]);
}

/** Runs a command to completion; throws with its output if it fails. */
export async function runChecked(
  cmd: string,
  args: string[],
  env?: Record<string, string>,
): Promise<string> {
  const out = await new Deno.Command(cmd, { args, env, stdout: "piped", stderr: "piped" })
    .output();
  const text = new TextDecoder();
  if (!out.success) {
    throw new Error(`${cmd} ${args.join(" ")} failed: ${text.decode(out.stderr).trim()}`);
  }
  return text.decode(out.stdout);
}

let _ticksPerSecond = 0;

/** This process's CPU time so far (user + system), in seconds, from /proc/self/stat. */
export async function processCpuSeconds(): Promise<number> {
  if (!_ticksPerSecond) _ticksPerSecond = Number(await runChecked("getconf", ["CLK_TCK"]));
  const stat = await Deno.readTextFile("/proc/self/stat");
  // Fields after the command name (which may hold spaces): state is 0, utime 11, stime 12.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / _ticksPerSecond;
}

/** Bytes of the files under `dir`. */
export async function treeBytes(dir: string): Promise<number> {
  let sum = 0;
  for await (const e of Deno.readDir(dir)) {
    const path = `${dir}/${e.name}`;
    if (e.isDirectory) sum += await treeBytes(path);
    else if (e.isFile) sum += (await Deno.stat(path)).size;
  }
  return sum;
}
