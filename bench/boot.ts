/**
 * The boot benchmark: time from "start" to the guest's `VAT-READY` line for the
 * busybox appliance (vat/demo/busybox_appliance.ts), in one run:
 *
 * (a) plain QEMU booting it from local qcow2 copies of its disks (the paper's "local"
 *     baseline), with vat's own QEMU command line (bench/boot/direct_qemu.ts);
 * (b) vat with a warm cache: a second start on a daemon that started it before;
 * (c) vat with a cold cache (a new daemon, empty state directory) over an emulated
 *     100 Mbit/s link with 20 ms RTT, the repository served by `vat serve` behind the
 *     pacing proxy of bench/nbd/link_proxy.ts; (d) the same over 1.5 Mbit/s, 40 ms;
 * (e) plain QEMU reading the raw disk images over the same links through nbdkit's curl
 *     plugin (no cache), served by the same `vat serve`.
 *
 * The cases run interleaved (every round runs each once, the order rotating) and the
 * table shows medians and ratios against (a). It is printed and written to
 * bench/out/boot.txt (the samples to bench/out/boot.json).
 *
 * Run: `deno run -A bench/boot.ts [--quick] [--rounds N] [--vat MAIN.TS]`
 * (needs qemu-system-x86, qemu-utils, nbdkit with its curl plugin, and what the
 * busybox appliance needs: linux-image-amd64, busybox-static, e2fsprogs).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { ensureBenchPeers } from "./peers.ts";
import {
  type BenchFigure,
  figureOf,
  markdownTable,
  medianRange,
  writeBenchResult,
} from "./results.ts";
import { buildBusyboxAppliance } from "../vat/demo/busybox_appliance.ts";
import { probeKvm } from "../vat/vmm/kvm_probe.ts";
import { type LinkProxy, type LinkShape, startLinkProxy } from "./nbd/link_proxy.ts";
import { runCommand, type ServerProcess, stopAllServers } from "./nbd/processes.ts";
import { VatProcess } from "./nbd/vat_process.ts";
import {
  APPLIANCE,
  bootLocal,
  bootNbdkit,
  type BootSample,
  type BootSetup,
  bootVat,
  bootVatCold,
} from "./boot/boot_cases.ts";
import { killDirectQemus } from "./boot/direct_qemu.ts";
import { formatBytes, formatTable, median } from "./boot/table.ts";
import { startVat, VatDaemon } from "./boot/vat_daemon.ts";

const _ROOT = new URL("../", import.meta.url).pathname;
const _WORK_PARENT = `${_ROOT}.cache/bench/boot`;
const _OUT_DIR = `${_ROOT}bench/out`;
const _MEMORY_MIB = 256;

const _FAST_LINK: LinkShape = { rateBitsPerSec: 100e6, rttMs: 20 };
const _SLOW_LINK: LinkShape = { rateBitsPerSec: 1.5e6, rttMs: 40 };

/** Time limits for one boot: on loopback or the fast link, and on the slow link. */
const _BOOT_TIMEOUT_MS = 120_000;
const _SLOW_BOOT_TIMEOUT_MS = 600_000;

/** How many rounds; the slow link's vat case (over a minute each) runs in fewer. */
interface Plan {
  rounds: number;
  slowVatRounds: number;
}

const _FULL: Plan = { rounds: 5, slowVatRounds: 3 };
const _QUICK: Plan = { rounds: 2, slowVatRounds: 1 };

/** One case of the table. */
interface BootCase {
  label: string;
  rounds: number;
  run(trialDir: string): Promise<BootSample>;
  samples: BootSample[];
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      quick: { type: "boolean" },
      rounds: { type: "string" },
      vat: { type: "string" },
      help: { type: "boolean" },
    },
  });
  if (values.help) {
    console.log("deno run -A bench/boot.ts [--quick] [--rounds N] [--vat MAIN.TS]");
    return 0;
  }
  const plan = { ...(values.quick ? _QUICK : _FULL) };
  if (values.rounds) {
    const rounds = Number(values.rounds);
    if (!Number.isInteger(rounds) || rounds < 1) {
      throw new Error(`--rounds ${values.rounds}: not a count`);
    }
    plan.rounds = rounds;
    plan.slowVatRounds = Math.min(plan.slowVatRounds, rounds);
  }
  const main = values.vat ? await Deno.realPath(values.vat) : `${_ROOT}main.ts`;
  await ensureBenchPeers(["qemu-system-x86_64", "qemu-img", "nbdkit"]);
  const startedAt = new Date().toISOString();
  const tools: [string, string[]][] = [
    ["qemu-system-x86_64", ["--version"]],
    ["qemu-img", ["--version"]],
    ["nbdkit", ["--filter=cow", "curl", "--version"]],
  ];
  for (const [tool, args] of tools) {
    await runCommand(tool, args).catch((err) => {
      throw new Error(
        `${tool} is missing or lacks a plugin (apt-get install qemu-system-x86 qemu-utils ` +
          `nbdkit nbdkit-plugin-curl): ${err.message}`,
      );
    });
  }

  const runStarted = performance.now();
  const loadAtStart = await _loadAverage();
  await Deno.mkdir(_WORK_PARENT, { recursive: true });
  const work = await Deno.makeTempDir({ dir: _WORK_PARENT, prefix: "run-" });
  const links: LinkProxy[] = [];
  let warmDaemon: VatDaemon | undefined;
  // Runs once, from the signal handler or the finally below, whichever comes first.
  let cleaning: Promise<void> | undefined;
  const cleanUp = () =>
    cleaning ??= (async () => {
      await killDirectQemus();
      await warmDaemon?.stop().catch(() => {});
      await stopAllServers();
      for (const link of links) await link.close().catch(() => {});
      await Deno.remove(work, { recursive: true }).catch(() => {});
    })();
  const onSignal = () => {
    _progress("interrupted: stopping everything");
    cleanUp().finally(() => Deno.exit(130));
  };
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  try {
    const probeStarted = performance.now();
    const kvm = (await probeKvm()).works;
    const probeMs = performance.now() - probeStarted;
    _progress(`KVM probe: ${kvm ? "works" : "no"} (${(probeMs / 1000).toFixed(1)} s)`);
    const app = await buildBusyboxAppliance();

    _progress(`publishing the busybox appliance to a repository in ${work}`);
    const vat = new VatProcess(main);
    const www = `${work}/www`;
    await Deno.mkdir(www, { recursive: true });
    await vat.run(["keygen", "--out", `${work}/key`]);
    await vat.run(["repo", "init", `${www}/apps`, "--kind", "appliance"]);
    const published = JSON.parse(
      (await vat.run([
        "publish",
        `${www}/apps`,
        "--key",
        `${work}/key`,
        "--image",
        app.systemImage,
        "--user-disk",
        app.userImage,
        "--kernel",
        app.kernel,
        "--initrd",
        app.initrd,
        "--append",
        app.append,
        "--memory",
        String(_MEMORY_MIB),
        "--json",
      ])).stdout,
    ) as { version: number; newStoredBytes: number; totalBytes: number };
    await Deno.link(app.systemImage, `${www}/system.raw`);
    await Deno.link(app.userImage, `${www}/user.raw`);
    await Deno.mkdir(`${work}/local`);
    for (const disk of ["system", "user"]) {
      await runCommand("qemu-img", [
        "convert",
        "-f",
        "raw",
        "-O",
        "qcow2",
        `${www}/${disk}.raw`,
        `${work}/local/${disk}.qcow2`,
      ]);
    }
    const setup: BootSetup = {
      main,
      boot: {
        kernel: app.kernel,
        initrd: app.initrd,
        append: app.append,
        memoryMiB: _MEMORY_MIB,
      },
      accel: kvm ? "kvm" : "tcg",
      qcow2: { system: `${work}/local/system.qcow2`, user: `${work}/local/user.qcow2` },
      repoPath: "apps",
      rawPaths: { system: "system.raw", user: "user.raw" },
      version: published.version,
    };

    const serve: ServerProcess = await startVat(
      "vat serve",
      main,
      ["serve", "--root", www, "--listen", "127.0.0.1:0"],
      /serving .* at http:\/\/[^\s]+:\d+\//,
    );
    const servePort = Number(/at http:\/\/[^\s]+:(\d+)\//.exec(serve.output())![1]);
    const fast = startLinkProxy({ hostname: "127.0.0.1", port: servePort }, _FAST_LINK);
    links.push(fast);
    const slow = startLinkProxy({ hostname: "127.0.0.1", port: servePort }, _SLOW_LINK);
    links.push(slow);

    _progress("warm daemon: first start of the appliance (fills its cache)");
    warmDaemon = await VatDaemon.start(main, `${work}/warm`);
    await warmDaemon.add(`http://127.0.0.1:${servePort}/apps`, APPLIANCE);
    const warmDaemonRef = warmDaemon;
    const firstStart = await bootVat(setup, warmDaemonRef, _BOOT_TIMEOUT_MS);

    const cases: BootCase[] = [
      {
        label: "(a) local: QEMU, local qcow2",
        rounds: plan.rounds,
        run: (dir) => bootLocal(setup, dir, _BOOT_TIMEOUT_MS),
        samples: [],
      },
      {
        label: "(b) vat, warm cache",
        rounds: plan.rounds,
        run: () => bootVat(setup, warmDaemonRef, _BOOT_TIMEOUT_MS),
        samples: [],
      },
      {
        label: "(c) vat, cold, 100 Mbit/s 20 ms",
        rounds: plan.rounds,
        run: (dir) => bootVatCold(setup, fast, dir, _BOOT_TIMEOUT_MS),
        samples: [],
      },
      {
        label: "(d) vat, cold, 1.5 Mbit/s 40 ms",
        rounds: plan.slowVatRounds,
        run: (dir) => bootVatCold(setup, slow, dir, _SLOW_BOOT_TIMEOUT_MS),
        samples: [],
      },
      {
        label: "(e) QEMU+nbdkit curl, 100 Mbit/s 20 ms",
        rounds: plan.rounds,
        run: (dir) => bootNbdkit(setup, fast, dir, _BOOT_TIMEOUT_MS),
        samples: [],
      },
      {
        label: "(e) QEMU+nbdkit curl, 1.5 Mbit/s 40 ms",
        rounds: plan.rounds,
        run: (dir) => bootNbdkit(setup, slow, dir, _SLOW_BOOT_TIMEOUT_MS),
        samples: [],
      },
    ];
    let trial = 0;
    for (let round = 0; round < plan.rounds; round++) {
      const order = _rotate(cases, round).filter((c) => round < c.rounds);
      for (const c of order) {
        const dir = `${work}/t${trial++}`;
        const sample = await c.run(dir);
        c.samples.push(sample);
        _progress(
          `round ${round + 1}/${plan.rounds}: ${c.label}: ${(sample.totalMs / 1000).toFixed(2)} s`,
        );
        await Deno.remove(dir, { recursive: true }).catch(() => {});
      }
    }

    const header = await _describeRun(
      main,
      setup,
      probeMs,
      loadAtStart,
      app.kernel,
      app.initrd,
      published,
    );
    const report = [
      ...header,
      "",
      ..._report(plan, cases, firstStart),
      "",
      `total run time ${((performance.now() - runStarted) / 1000).toFixed(0)} s`,
    ];
    console.log(report.join("\n"));
    await Deno.mkdir(_OUT_DIR, { recursive: true });
    await Deno.writeTextFile(`${_OUT_DIR}/boot.txt`, report.join("\n") + "\n");
    await Deno.writeTextFile(
      `${_OUT_DIR}/boot.json`,
      JSON.stringify(
        {
          command: header[0],
          plan,
          firstStart,
          cases: cases.map((c) => ({ label: c.label, samples: c.samples })),
        },
        null,
        2,
      ) + "\n",
    );
    const local = median(cases[0].samples.map((s) => s.totalMs)) / 1000;
    const rows = [["case", "boot s, median (range)", "vs local"]];
    const figures: Record<string, BenchFigure> = {};
    for (const c of cases) {
      const s = c.samples.map((x) => x.totalMs / 1000);
      figures[c.label] = figureOf(s, "s");
      rows.push([c.label, medianRange(s, 2), `${(median(s) / local).toFixed(2)}x`]);
    }
    await writeBenchResult({
      bench: "boot",
      command: header[0].replace(/^command: /, ""),
      startedAt,
      finishedAt: new Date().toISOString(),
      short: !!values.quick,
      figures,
      tables: [{
        title: "Boot",
        method: `the busybox demo appliance from "start" to its VAT-READY line; ${plan.rounds} ` +
          `rounds (the slow vat case ${plan.slowVatRounds}), the order rotating, median (range); ` +
          `${setup.accel.toUpperCase()}; cold cases on a new daemon with an empty cache, the ` +
          "kernel and initrd fetched whole before QEMU starts (nbdkit's case reads them from " +
          "local files); leaves out TCP slow start and loss on the emulated link.",
        markdown: markdownTable(rows),
      }],
    });
    console.log("\nwritten to bench/out/boot.txt, boot.json and boot.result.json");
    return 0;
  } finally {
    Deno.removeSignalListener("SIGINT", onSignal);
    Deno.removeSignalListener("SIGTERM", onSignal);
    await cleanUp();
  }
}

/** The lines that head the report: what ran, where, on what. */
async function _describeRun(
  main: string,
  setup: BootSetup,
  probeMs: number,
  loadAtStart: string,
  kernel: string,
  initrd: string,
  published: { newStoredBytes: number; totalBytes: number },
): Promise<string[]> {
  const firstLine = async (cmd: string, args: string[]) => {
    try {
      return (await runCommand(cmd, args)).stdout.split("\n")[0].trim();
    } catch {
      return "?";
    }
  };
  const vatDir = main.slice(0, main.lastIndexOf("/"));
  let commit = await firstLine("git", ["-C", vatDir, "describe", "--always", "--dirty"]);
  if (commit === "?") commit = "not a git checkout";
  const cpu = /model name\s*:\s*(.*)/.exec(await Deno.readTextFile("/proc/cpuinfo"))?.[1];
  const size = async (path: string) => formatBytes((await Deno.stat(path)).size);
  return [
    `command: deno run -A bench/boot.ts ${Deno.args.join(" ")}`.trimEnd(),
    `date: ${new Date().toISOString()}, vat ${vatDir} (${commit}), deno ${Deno.version.deno}`,
    `machine: ${navigator.hardwareConcurrency} x ${cpu ?? "?"}; ${await firstLine(
      "qemu-system-x86_64",
      ["--version"],
    )}; ${await firstLine("nbdkit", ["--version"])}`,
    `load average (1, 5, 15 min) at the start: ${loadAtStart}, at the end: ${await _loadAverage()} ` +
    "(other processes share this machine; the cases are interleaved so they share it alike)",
    `accelerator: ${setup.accel} (vat's KVM probe answered ${
      setup.accel === "kvm" ? "yes" : "no"
    } in ${(probeMs / 1000).toFixed(1)} s)`,
    `appliance: busybox (vat/demo/busybox_appliance.ts), ${setup.boot.memoryMiB} MiB, ` +
    `kernel ${await size(kernel)} (uncompressed ELF, PVH boot), initrd ${await size(initrd)}, ` +
    `system and user disks 32 MiB ext4 each; append "${setup.boot.append}"`,
    `repository: ${formatBytes(published.totalBytes)} of disks and boot files stored as ` +
    `${formatBytes(published.newStoredBytes)} of zstd chunks (64 KiB), served by vat serve`,
    "links: one FIFO wire per direction at the rate, then half the RTT; a new connection " +
    "waits one RTT; no loss or slow start (bench/nbd/link_proxy.ts)",
  ];
}

function _report(plan: Plan, cases: BootCase[], firstStart: BootSample): string[] {
  const local = median(cases[0].samples.map((s) => s.totalMs));
  const seconds = (ms: number) => Number.isFinite(ms) ? (ms / 1000).toFixed(2) : "-";
  const bytes = (n: number) => Number.isNaN(n) ? "-" : formatBytes(n);
  const values = (c: BootCase, pick: (s: BootSample) => number | undefined) =>
    c.samples.map(pick).filter((x): x is number => x !== undefined);
  const of = (c: BootCase, pick: (s: BootSample) => number | undefined) => median(values(c, pick));
  const rows = [[
    "case",
    "n",
    "boot s",
    "min s",
    "vs local",
    "to QEMU s",
    "boot files s",
    "files->QEMU s",
    "QEMU->ready s",
    "link down",
    "after QEMU",
  ]];
  for (const c of cases) {
    const total = of(c, (s) => s.totalMs);
    rows.push([
      c.label,
      String(c.samples.length),
      seconds(total),
      seconds(Math.min(...values(c, (s) => s.totalMs))),
      `${(total / local).toFixed(2)}x`,
      seconds(of(c, (s) => s.toQemuMs)),
      seconds(of(c, (s) => s.bootFilesMs)),
      seconds(of(c, (s) => s.bootFilesMs === undefined ? undefined : s.toQemuMs - s.bootFilesMs)),
      seconds(of(c, (s) => s.totalMs - s.toQemuMs)),
      bytes(of(c, (s) => s.linkBytes)),
      bytes(of(c, (s) => s.linkBytes! - (s.linkBytesBeforeQemu ?? 0))),
    ]);
  }
  const daemonStartup = median(
    cases.flatMap((c) => values(c, (s) => s.daemonStartupMs)),
  );
  return [
    `Boot time, "start" to VAT-READY: medians of interleaved runs (${plan.rounds} rounds, ` +
    `(d) in ${plan.slowVatRounds} of them); vs local = median / median of (a)`,
    ...formatTable(rows),
    "",
    '  boot s: from "start" to VAT-READY in the console log (polled every 10 ms). For vat',
    "    \"start\" is the daemon API's POST /api/appliances/NAME/start (vat's typed client,",
    "    no CLI process); for (a) spawning QEMU; for (e) spawning nbdkit, then QEMU.",
    "  to QEMU s: until QEMU wrote its pid file. In vat: opening the repository, reading the",
    "    disk indexes, exporting kernel and initrd to files (boot files s; cold only, warm",
    "    starts reuse the files), then (files->QEMU s) the KVM probe at a daemon's first",
    "    start and the NBD server. QEMU->ready s: QEMU's start-up (vat: QMP, then cont),",
    "    the kernel's boot and the init, with the disk reads (vat: chunks fetched on demand;",
    "    nbdkit: HTTP range requests).",
    "  link down: bytes the link carried down during the boot; after QEMU: of those, after",
    "    QEMU started, i.e. the guest's disk reads (before it, vat fetched kernel and initrd).",
    "  min s: the machine is shared; the guest's TCG boot is CPU-bound and slows down when",
    "    other processes run, so the minimum shows the undisturbed time.",
    "  (b): a second start on the daemon of the first; the repository on loopback (vat serve,",
    `    no emulated link). That first start (cold cache, loopback, KVM probe) took ${
      seconds(firstStart.totalMs)
    } s,`,
    `    ${seconds(firstStart.toQemuMs)} s of it before QEMU.`,
    `  (c), (d): a new daemon each time (its start-up, ${seconds(daemonStartup)} s, and adding the`,
    "    appliance are not counted), so each start is that daemon's first: with the KVM probe.",
    "  (e): kernel and initrd are local files (QEMU's -kernel and -initrd need files); only",
    "    the disks cross the link. nbdkit's cow filter keeps the guest's writes local.",
    "  Not measured: a larger appliance. The busybox init only mounts its disks; a bigger",
    "    system disk (e.g. the 1 GiB Debian image of bench/fixtures) would not be read more",
    "    at boot without changing the init, so the boot would be the same as here.",
  ];
}

/** The first three fields of /proc/loadavg. */
async function _loadAverage(): Promise<string> {
  const text = await Deno.readTextFile("/proc/loadavg").catch(() => "? ? ?");
  return text.split(" ").slice(0, 3).join(" ");
}

/** `items` rotated left by `by`, so each round starts with another case. */
function _rotate<T>(items: T[], by: number): T[] {
  const k = by % items.length;
  return [...items.slice(k), ...items.slice(0, k)];
}

function _progress(message: string): void {
  console.error(`[boot bench] ${message}`);
}

if (import.meta.main) Deno.exit(await main());
