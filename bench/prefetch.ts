/**
 * The prefetch benchmark: time from "start" to the guest's `VAT-READY` with an empty
 * cache over emulated links (bench/nbd/link_proxy.ts: 1.5 Mbit/s with 40 ms, the
 * paper's DSL, and 10 Mbit/s with 40 ms). The appliance (`--appliance`):
 *
 * - `debian` (default): Debian bookworm booting with its own kernel, initramfs-tools
 *   initrd and systemd up to multi-user (bench/fixtures/debian_appliance.ts; built
 *   once with debootstrap, needs root and the Debian mirror);
 * - `busybox`: the busybox demo appliance with 8 MiB of incompressible "libraries" on
 *   its system disk that a boot script reads before the guest says it is up.
 *
 * Cases, each on a new daemon with an empty state directory:
 *
 * - vat, no trace and no prefetch (`--prefetch-limit 0`, a repository without trace);
 * - vat, trace replay (`vat trace record` ran on the repository; `--prefetch-limit 0`);
 * - vat, trace + prefetch: the paper's setup (391 s to 127 s "when 200 MB of data is
 *   prefetched"): the appliance is added and left unused while the background
 *   prefetcher fetches its access profile (the boot trace's chunks, most read first);
 *   then the start, with trace replay. The prefetch's own time and bytes are printed
 *   apart;
 * - QEMU reading the raw images through nbdkit's curl plugin over the same link (kernel
 *   and initrd as local files);
 * - and, as the baseline, QEMU on local qcow2 copies, and vat with a warm cache.
 *
 * Ratios are printed against "no trace, no prefetch" and against local. Written to
 * bench/out/prefetch.txt and prefetch.result.json. Every round runs each case once, the
 * order rotating; nothing runs in the background while a case is timed (the warm
 * daemon has `--prefetch-limit 0`). Run: `deno run -A bench/prefetch.ts [--rounds N]
 * [--appliance debian|busybox]` (default 3 rounds; installs its peers, bench/peers.ts).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { buildBusyboxAppliance, ext4ImageOf } from "../vat/demo/busybox_appliance.ts";
import { readBootTrace } from "../vat/repo/boot_trace.ts";
import { toHex } from "../vat/repo/chunk_codec.ts";
import { openStore } from "../vat/repo/open_store.ts";
import { Repository } from "../vat/repo/repository.ts";
import { probeKvm } from "../vat/vmm/kvm_probe.ts";
import { fillRandom } from "../tests/helpers/images.ts";
import { ensureDebianAppliance } from "./fixtures/debian_appliance.ts";
import { type LinkProxy, type LinkShape, startLinkProxy } from "./nbd/link_proxy.ts";
import { runCommand, stopAllServers } from "./nbd/processes.ts";
import { VatProcess } from "./nbd/vat_process.ts";
import {
  APPLIANCE,
  bootLocal,
  bootNbdkit,
  type BootSample,
  type BootSetup,
  bootVat,
  bootVatCold,
  bootVatPrefetched,
} from "./boot/boot_cases.ts";
import { type KernelBoot, killDirectQemus } from "./boot/direct_qemu.ts";
import { formatTable, median } from "./boot/table.ts";
import { ensureBenchPeers } from "./peers.ts";
import {
  type BenchFigure,
  figureOf,
  markdownTable,
  medianRange,
  writeBenchResult,
} from "./results.ts";
import { startVat, VatDaemon } from "./boot/vat_daemon.ts";

const _ROOT = new URL("../", import.meta.url).pathname;
const _WORK_PARENT = `${_ROOT}.cache/bench/prefetch`;
const _OUT_DIR = `${_ROOT}bench/out`;
const _LIBRARY_FILES = 32;
const _LIBRARY_BYTES = 256 * 1024;
const _TIMEOUT_MS = 1_800_000;

const _LINKS: [string, LinkShape][] = [
  ["10 Mbit/s 40 ms", { rateBitsPerSec: 10e6, rttMs: 40 }],
  ["1.5 Mbit/s 40 ms", { rateBitsPerSec: 1.5e6, rttMs: 40 }],
];

/** The appliance booted: raw disk images on the HTTP server, boot files, and what it is. */
interface BenchAppliance {
  boot: KernelBoot;
  /** Writes the raw system and user images to these paths. */
  write(system: string, user: string, work: string): Promise<void>;
  describe: string;
}

interface Case {
  label: string;
  link: string | null;
  run(dir: string): Promise<BootSample>;
  samples: BootSample[];
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    args: Deno.args,
    options: { rounds: { type: "string" }, appliance: { type: "string", default: "debian" } },
  });
  const rounds = Number(values.rounds ?? 3);
  if (!Number.isInteger(rounds) || rounds < 1) {
    throw new Error(`--rounds ${values.rounds}: not a count`);
  }
  await ensureBenchPeers(["qemu-system-x86_64", "qemu-img", "nbdkit"]);
  const startedAt = new Date().toISOString();
  const main = `${_ROOT}main.ts`;
  const started = performance.now();
  await Deno.mkdir(_WORK_PARENT, { recursive: true });
  const work = await Deno.makeTempDir({ dir: _WORK_PARENT, prefix: "run-" });
  const links: LinkProxy[] = [];
  let warm: VatDaemon | undefined;
  try {
    const kvm = (await probeKvm()).works;
    const app = values.appliance === "busybox"
      ? await _busyboxAppliance()
      : values.appliance === "debian"
      ? await _debianAppliance()
      : null;
    if (!app) throw new Error(`--appliance is debian or busybox, not ${values.appliance}`);
    const www = `${work}/www`;
    await Deno.mkdir(www, { recursive: true });
    await app.write(`${www}/system.raw`, `${www}/user.raw`, work);

    _progress("publishing; recording the boot trace");
    const vat = new VatProcess(main);
    await vat.run(["keygen", "--out", `${work}/key`]);
    await vat.run(["repo", "init", `${www}/plain`, "--kind", "appliance"]);
    await vat.run([
      "publish",
      `${www}/plain`,
      "--key",
      `${work}/key`,
      "--image",
      `${www}/system.raw`,
      "--user-disk",
      `${www}/user.raw`,
      "--kernel",
      app.boot.kernel,
      "--initrd",
      app.boot.initrd,
      "--append",
      app.boot.append,
      "--memory",
      String(app.boot.memoryMiB),
    ]);
    await runCommand("cp", ["-a", `${www}/plain`, `${www}/traced`]);
    const traced = JSON.parse(
      (await vat.run([
        "trace",
        "record",
        `${www}/traced`,
        "--key",
        `${work}/key`,
        "--until",
        "VAT-READY",
        "--timeout",
        String(_TIMEOUT_MS / 1000),
        "--json",
      ])).stdout,
    );
    const profileBytes = await _profileBytes(`${www}/traced`);
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
      boot: app.boot,
      accel: kvm ? "kvm" : "tcg",
      qcow2: { system: `${work}/local/system.qcow2`, user: `${work}/local/user.qcow2` },
      repoPath: "plain",
      rawPaths: { system: "system.raw", user: "user.raw" },
      version: 1,
    };
    const withTrace = { ...setup, repoPath: "traced" };
    const serve = await startVat(
      "vat serve",
      main,
      ["serve", "--root", www, "--listen", "127.0.0.1:0"],
      /serving .* at http:\/\/[^\s]+:\d+\//,
    );
    const port = Number(/at http:\/\/[^\s]+:(\d+)\//.exec(serve.output())![1]);

    // No background work while anything is timed: the warm daemon never prefetches (its
    // cache holds what the first boot read), and every case runs alone.
    warm = await VatDaemon.start(main, `${work}/warm`, ["--prefetch-limit", "0"]);
    await warm.add(`http://127.0.0.1:${port}/plain`, APPLIANCE);
    await bootVat(setup, warm, _TIMEOUT_MS);
    const warmDaemon = warm;
    const cases: Case[] = [
      {
        label: "QEMU, local qcow2",
        link: null,
        run: (dir) => bootLocal(setup, dir, _TIMEOUT_MS),
        samples: [],
      },
      {
        label: "vat, warm cache",
        link: null,
        run: () => bootVat(setup, warmDaemon, _TIMEOUT_MS),
        samples: [],
      },
    ];
    for (const [name, shape] of _LINKS) {
      const link = startLinkProxy({ hostname: "127.0.0.1", port }, shape);
      links.push(link);
      const off = ["--prefetch-limit", "0"];
      cases.push(
        {
          label: "vat, no trace, no prefetch",
          link: name,
          run: (dir) => bootVatCold(setup, link, dir, _TIMEOUT_MS, off),
          samples: [],
        },
        {
          label: "vat, trace replay",
          link: name,
          run: (dir) => bootVatCold(withTrace, link, dir, _TIMEOUT_MS, off),
          samples: [],
        },
        {
          label: "vat, trace + prefetch",
          link: name,
          run: (dir) => bootVatPrefetched(withTrace, link, dir, _TIMEOUT_MS, profileBytes),
          samples: [],
        },
        {
          label: "QEMU + nbdkit curl",
          link: name,
          run: (dir) => bootNbdkit(setup, link, dir, _TIMEOUT_MS),
          samples: [],
        },
      );
    }
    let trial = 0;
    for (let round = 0; round < rounds; round++) {
      // The order rotates every round, so no case always runs first or after another.
      const k = round % cases.length;
      for (const c of [...cases.slice(k), ...cases.slice(0, k)]) {
        const dir = `${work}/t${trial++}`;
        const sample = await c.run(dir);
        c.samples.push(sample);
        _progress(
          `round ${round + 1}/${rounds}: ${c.label}${c.link ? `, ${c.link}` : ""}: ` +
            `${(sample.totalMs / 1000).toFixed(2)} s` +
            (sample.prefetchMs === undefined
              ? ""
              : ` (after a prefetch of ${(sample.prefetchMs / 1000).toFixed(1)} s)`),
        );
        await Deno.remove(dir, { recursive: true }).catch(() => {});
      }
    }

    const seconds = (c: Case) => median(c.samples.map((s) => s.totalMs)) / 1000;
    const range = (c: Case) => medianRange(c.samples.map((s) => s.totalMs / 1000), 2);
    /** From `vat add` to ready: the add (and any background prefetch), then the boot. */
    const addToReady = (c: Case) =>
      c.samples.map((s) => ((s.prefetchMs ?? s.addMs ?? 0) + s.totalMs) / 1000);
    const local = seconds(cases[0]);
    const rows = [[
      "link",
      "case",
      "start to ready s, median (range)",
      "vs none",
      "vs local",
      "add to ready s",
      "MB down",
      "before the start",
    ]];
    for (const c of cases) {
      const none = cases.find((o) => o.link === c.link && o.label.includes("no trace"));
      const down = median(c.samples.map((s) => s.linkBytes ?? NaN));
      const prefetch = c.samples[0].prefetchMs;
      rows.push([
        c.link ?? "-",
        c.label,
        range(c),
        none ? `${(seconds(none) / seconds(c)).toFixed(2)}x` : "",
        `${(seconds(c) / local).toFixed(2)}x`,
        c.link && !c.label.startsWith("QEMU") ? median(addToReady(c)).toFixed(1) : "",
        Number.isNaN(down) ? "" : (down / 1e6).toFixed(1),
        prefetch === undefined
          ? ""
          : `${(median(c.samples.map((s) => s.prefetchMs!)) / 1000).toFixed(0)} s prefetching (${
            (c.samples[0].prefetchLinkBytes! / 1e6).toFixed(1)
          } MB down)`,
      ]);
    }
    const report = [
      `bench/prefetch.ts, ${new Date().toISOString()}, ${rounds} round(s), ${
        kvm ? "KVM" : "TCG"
      }; ${app.describe}; trace: ${traced.chunks} chunks, ${
        (traced.bytes / 2 ** 20).toFixed(1)
      } MiB; access profile ${(profileBytes / 2 ** 20).toFixed(1)} MiB as stored`,
      '"vs none": how many times faster than vat with no trace and no prefetch on that link;',
      '"before the start": the background prefetch of the access profile before the start ' +
      '(not in "start to ready"; "add to ready" counts it)',
      ...formatTable(rows),
      `total run time ${((performance.now() - started) / 1000).toFixed(0)} s`,
    ];
    console.log(report.join("\n"));
    await Deno.mkdir(_OUT_DIR, { recursive: true });
    await Deno.writeTextFile(`${_OUT_DIR}/prefetch.txt`, report.join("\n") + "\n");
    const figures: Record<string, BenchFigure> = {};
    for (const c of cases) {
      const key = `${c.label}${c.link ? `, ${c.link}` : ""}`;
      figures[`startToReady: ${key}`] = figureOf(c.samples.map((s) => s.totalMs / 1000), "s");
      if (c.link && !c.label.startsWith("QEMU")) {
        figures[`addToReady: ${key}`] = figureOf(addToReady(c), "s");
      }
    }
    await writeBenchResult({
      bench: "prefetch",
      command: `deno run -A bench/prefetch.ts ${Deno.args.join(" ")}`.trimEnd(),
      startedAt,
      finishedAt: new Date().toISOString(),
      short: rounds < 3 || values.appliance !== "debian",
      figures,
      tables: [{
        title: "Prefetch",
        method: `${app.describe}; ${rounds} rounds, the case order rotating, median (range); ` +
          `${kvm ? "KVM" : "TCG"} on a shared 2-core machine; each vat case on a new daemon ` +
          "with an empty cache, the warm one a daemon with --prefetch-limit 0 (no background " +
          'work during any timed case); "trace + prefetch" is timed from the start after ' +
          'an untimed background prefetch ("add to ready" includes it); leaves out TCP ' +
          "slow start and loss on the emulated link.",
        markdown: markdownTable(rows),
      }],
    });
    return 0;
  } finally {
    await killDirectQemus();
    await warm?.stop().catch(() => {});
    await stopAllServers();
    for (const link of links) await link.close().catch(() => {});
    await Deno.remove(work, { recursive: true }).catch(() => {});
  }
}

/**
 * Bytes (as stored, what the prefetcher's progress counts) of the distinct chunks in
 * the access profile of version 1 in the repository at `path`: what the prefetcher
 * fetches first.
 */
async function _profileBytes(path: string): Promise<number> {
  const store = await openStore(path);
  try {
    const repo = await Repository.open(store);
    const version = await repo.readVersion(1);
    const trace = await readBootTrace(repo, version);
    if (!trace) throw new Error(`${path} has no boot trace`);
    const seen = new Set<string>();
    let bytes = 0;
    for (const [disk, chunk] of trace.profile) {
      const index = await repo.readDiskIndex(version.manifest.disks[trace.disks[disk]].index);
      const hash = chunk < index.count ? index.hash(chunk) : null;
      if (!hash || seen.has(toHex(hash))) continue;
      seen.add(toHex(hash));
      bytes += index.chunkLength(chunk);
    }
    return bytes;
  } finally {
    await store.close();
  }
}

async function _debianAppliance(): Promise<BenchAppliance> {
  const debian = await ensureDebianAppliance();
  return {
    boot: debian,
    describe: `Debian bookworm with systemd (kernel ${_mib(debian.kernel)}, initrd ${
      _mib(debian.initrd)
    })`,
    write: async (system, user, work) => {
      await runCommand("cp", ["--sparse=always", debian.system, system]);
      await Deno.mkdir(`${work}/home`);
      await ext4ImageOf(`${work}/home`, user, "user", 64 * 2 ** 20);
    },
  };
}

async function _busyboxAppliance(): Promise<BenchAppliance> {
  const app = await buildBusyboxAppliance();
  return {
    boot: { kernel: app.kernel, initrd: app.initrd, append: app.append, memoryMiB: 256 },
    describe: `busybox appliance with ${
      (_LIBRARY_FILES * _LIBRARY_BYTES) / 2 ** 20
    } MiB of userland read at boot`,
    write: async (system, user, work) => {
      await _userlandImage(`${work}/userland`, system);
      await Deno.link(app.userImage, user);
    },
  };
}

/** A 64 MiB ext4 image with `/boot.sh` reading `/usr/lib/*` (random, so incompressible). */
async function _userlandImage(staging: string, path: string): Promise<void> {
  await Deno.mkdir(`${staging}/usr/lib`, { recursive: true });
  for (let i = 0; i < _LIBRARY_FILES; i++) {
    const data = new Uint8Array(_LIBRARY_BYTES);
    fillRandom(data, 1000 + i);
    await Deno.writeFile(`${staging}/usr/lib/lib${String(i).padStart(2, "0")}.so`, data);
  }
  await Deno.writeTextFile(`${staging}/boot.sh`, "cat /mnt/system/usr/lib/* >/dev/null\n");
  await Deno.writeTextFile(`${staging}/marker`, "prefetch-bench\n");
  await ext4ImageOf(staging, path, "system", 64 * 2 ** 20);
}

function _mib(path: string): string {
  return `${(Deno.statSync(path).size / 2 ** 20).toFixed(1)} MiB`;
}

function _progress(line: string): void {
  console.error(`[prefetch bench] ${line}`);
}

if (import.meta.main) Deno.exit(await main());
