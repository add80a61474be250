/**
 * The boot benchmark's cases, each one boot of the same appliance timed from "start"
 * to the guest's ready line:
 *
 * - `bootLocal`: plain QEMU on local qcow2 copies of the disks (the paper's "local").
 * - `bootVat`: vat, warm (a daemon that started the appliance before) or cold (a new
 *   daemon with an empty state directory, the repository behind an emulated link).
 * - `bootNbdkit`: plain QEMU whose disks are nbdkit's curl plugin reading the raw
 *   images over the same link (no cache; nbdkit's cow filter keeps the guest's writes
 *   local, as vat's overlays do). Kernel and initrd are local files.
 *
 * @module
 */

import type { Accelerator } from "../../vat/vmm/qemu_args.ts";
import type { LinkProxy } from "../nbd/link_proxy.ts";
import { startServer } from "../nbd/processes.ts";
import { bootDirect, directQemuArgs, type KernelBoot } from "./direct_qemu.ts";
import { VatDaemon } from "./vat_daemon.ts";

/** The line the busybox appliance prints once it is up. */
export const READY_LINE = "VAT-READY";
/** The appliance's name in every vat state directory. */
export const APPLIANCE = "app";

/** One boot's measurements. */
export interface BootSample {
  /** From "start" to the ready line. */
  totalMs: number;
  /** From "start" until QEMU wrote its pid file. */
  toQemuMs: number;
  /** vat, cold: from "start" until the kernel and initrd were exported. */
  bootFilesMs?: number;
  /** Bytes that came down the link during the boot, and of those before QEMU started. */
  linkBytes?: number;
  linkBytesBeforeQemu?: number;
  /** vat, cold: the new daemon's start-up (before "start", not in `totalMs`). */
  daemonStartupMs?: number;
  /** vat, cold: the `add` before "start" (not in `totalMs`). */
  addMs?: number;
  /** vat, prefetched: from the `add` through the background prefetch to "start" (not in `totalMs`). */
  prefetchMs?: number;
  prefetchLinkBytes?: number;
}

/** What every case needs. */
export interface BootSetup {
  /** vat's main.ts. */
  main: string;
  boot: KernelBoot;
  accel: Accelerator;
  /** The disks as local qcow2 images (copied before each local boot). */
  qcow2: { system: string; user: string };
  /** The appliance repository's path and the raw images' paths on the HTTP server. */
  repoPath: string;
  rawPaths: { system: string; user: string };
  /** The published version (the daemon exports `VERSION-kernel`). */
  version: number;
}

/** Plain QEMU from local qcow2 images, copied afresh into `trialDir` first (untimed). */
export async function bootLocal(
  setup: BootSetup,
  trialDir: string,
  timeoutMs: number,
): Promise<BootSample> {
  await Deno.mkdir(trialDir, { recursive: true });
  const system = `${trialDir}/system.qcow2`;
  const user = `${trialDir}/user.qcow2`;
  await Deno.copyFile(setup.qcow2.system, system);
  await Deno.copyFile(setup.qcow2.user, user);
  const runDir = `${trialDir}/run`;
  const args = directQemuArgs(
    setup.boot,
    {
      system: { qcow2: system },
      user: { qcow2: user },
    },
    runDir,
    setup.accel,
  );
  const times = await bootDirect(args, runDir, READY_LINE, timeoutMs);
  return { totalMs: times.readyMs, toQemuMs: times.qemuStartedMs };
}

/**
 * One start of the appliance on `daemon`, then a stop (untimed). With `link`, its
 * counters are reset first and read as the boot goes.
 */
export async function bootVat(
  setup: BootSetup,
  daemon: VatDaemon,
  timeoutMs: number,
  link?: LinkProxy,
): Promise<BootSample> {
  link?.resetStats();
  let linkBytesBeforeQemu: number | undefined;
  const times = await daemon.start(APPLIANCE, setup.version, READY_LINE, timeoutMs, (moment) => {
    if (moment === "qemuStarted") linkBytesBeforeQemu = link?.stats().downBytes;
  });
  const linkBytes = link?.stats().downBytes;
  await daemon.stopAppliance(APPLIANCE);
  return {
    totalMs: times.readyMs,
    toQemuMs: times.qemuStartedMs,
    bootFilesMs: times.bootFilesMs,
    linkBytes,
    linkBytesBeforeQemu,
  };
}

/**
 * vat with a cold cache: a new daemon on an empty state directory in `trialDir`, the
 * appliance added from the repository behind `link` (both untimed; the add's time is
 * reported in `addMs`), then one start.
 * `daemonArgs` go to the daemon (e.g. `--prefetch-limit 0`).
 */
export async function bootVatCold(
  setup: BootSetup,
  link: LinkProxy,
  trialDir: string,
  timeoutMs: number,
  daemonArgs: string[] = [],
): Promise<BootSample> {
  const daemon = await VatDaemon.start(setup.main, `${trialDir}/state`, daemonArgs);
  try {
    const added = performance.now();
    await daemon.add(`${_linkUrl(link)}/${setup.repoPath}`, APPLIANCE);
    const addMs = performance.now() - added;
    const sample = await bootVat(setup, daemon, timeoutMs, link);
    return { ...sample, daemonStartupMs: daemon.startupMs, addMs };
  } finally {
    await daemon.stop();
  }
}

/**
 * vat after the paper's background prefetch: a new daemon on an empty state directory
 * (prefetch on, `daemonArgs` added), the appliance added from the repository behind
 * `link`, then nothing until the prefetcher has fetched `prefetchBytes` of the
 * version (its `prefetch` operation says so), as while a subscribed appliance waits
 * unused; then one start. The wait is reported in `prefetchMs` and `prefetchLinkBytes`,
 * not in `totalMs`. The status is asked once a second: each one looks up the newest
 * version over the same link (five small requests), which at four a second took 5% of
 * a 1.5 Mbit/s link from the prefetch it waits for.
 */
export async function bootVatPrefetched(
  setup: BootSetup,
  link: LinkProxy,
  trialDir: string,
  timeoutMs: number,
  prefetchBytes: number,
  daemonArgs: string[] = [],
): Promise<BootSample> {
  const daemon = await VatDaemon.start(setup.main, `${trialDir}/state`, daemonArgs);
  try {
    link.resetStats();
    const started = performance.now();
    await daemon.add(`${_linkUrl(link)}/${setup.repoPath}`, APPLIANCE);
    for (;;) {
      const status = await daemon.status(APPLIANCE);
      const prefetch = status.operations.find((op) => op.kind === "prefetch");
      if (prefetch && prefetch.doneBytes >= prefetchBytes) break;
      if (!prefetch && status.cachedBytes !== null && status.cachedBytes >= prefetchBytes) break;
      if (performance.now() - started > timeoutMs) {
        throw new Error(
          `the prefetch did not reach ${prefetchBytes} bytes: ${JSON.stringify(status)}`,
        );
      }
      await new Promise((r) => setTimeout(r, 1000));
    }
    const prefetchMs = performance.now() - started;
    const prefetchLinkBytes = link.stats().downBytes;
    const sample = await bootVat(setup, daemon, timeoutMs, link);
    return { ...sample, daemonStartupMs: daemon.startupMs, prefetchMs, prefetchLinkBytes };
  } finally {
    await daemon.stop();
  }
}

/**
 * Plain QEMU on two nbdkit curl servers reading the raw images over `link`; timed from
 * spawning nbdkit.
 */
export async function bootNbdkit(
  setup: BootSetup,
  link: LinkProxy,
  trialDir: string,
  timeoutMs: number,
): Promise<BootSample> {
  await Deno.mkdir(trialDir, { recursive: true });
  link.resetStats();
  const started = performance.now();
  const servers = await Promise.allSettled(
    (["system", "user"] as const).map((disk) =>
      startServer("nbdkit", "nbdkit", [
        "--foreground",
        "--exit-with-parent",
        "-U",
        `${trialDir}/${disk}.sock`,
        "--filter=cow",
        "curl",
        `url=${_linkUrl(link)}/${setup.rawPaths[disk]}`,
      ], { unixSocket: `${trialDir}/${disk}.sock` })
    ),
  );
  try {
    const failed = servers.find((s) => s.status === "rejected");
    if (failed) throw (failed as PromiseRejectedResult).reason;
    const runDir = `${trialDir}/run`;
    const args = directQemuArgs(
      setup.boot,
      {
        system: { nbdSocket: `${trialDir}/system.sock` },
        user: { nbdSocket: `${trialDir}/user.sock` },
      },
      runDir,
      setup.accel,
    );
    const times = await bootDirect(args, runDir, READY_LINE, timeoutMs, started);
    return {
      totalMs: times.readyMs,
      toQemuMs: times.qemuStartedMs,
      linkBytes: link.stats().downBytes,
    };
  } finally {
    for (const s of servers) if (s.status === "fulfilled") await s.value.stop();
  }
}

function _linkUrl(link: LinkProxy): string {
  return `http://127.0.0.1:${link.port}`;
}
