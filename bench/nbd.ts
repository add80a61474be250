/**
 * The NBD benchmark: how `vat nbd` serves a published disk, against nbdkit and the
 * raw file, in one run.
 *
 * 1. Warm cache: 128 KiB sequential reads at queue depth 16 and 4 KiB reads with no
 *    locality (qemu-img bench with a large coprime step, and fio's random reads) from
 *    vat's export after one full read, nbdkit's file plugin on the raw image, and the
 *    raw image itself.
 * 2. Cold cache over an emulated link (a pacing, delaying proxy on loopback, see
 *    `nbd/link_proxy.ts`) in front of `vat serve`: the time to read the first N MiB
 *    through vat with an empty cache, through nbdkit's curl plugin reading the raw
 *    image from the same server over the same link, and the link's own limits.
 * 3. Memory: the RSS of the `vat nbd` process before any read, its peak over the first
 *    full read (which fills the cache) and after the warm runs, beside nbdkit's file
 *    plugin's over the same full read of the raw image (`nbd/memory.ts` shows it over
 *    time and for a 4 GiB disk).
 * 4. First fill: a full read into an empty cache from the repository directory and over
 *    an emulated 1 Gbit/s link, against nbdkit file, `zstd -d` and `curl` through the
 *    same link (`nbd/first_fill.ts`, which also runs alone to compare two vats).
 *
 * The peers run interleaved (the order rotating every repetition) and the table shows
 * medians. It is printed and written to bench/out/nbd.txt (and the samples to
 * bench/out/nbd.json).
 *
 * Run: `deno run -A bench/nbd.ts [--quick] [--reps N] [--image RAW] [--vat MAIN.TS]`.
 * `--vat` measures another checkout's main.ts (e.g. one made with `git worktree`
 * before a change); `--image` serves another raw image instead of the synthetic one.
 * Needs qemu-img, nbdkit (with its file and curl plugins), fio, zstd and curl: Debian's
 * qemu-utils, nbdkit, fio, zstd and curl. Where vat spends its CPU: `bench/nbd/profile.ts`.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { type LinkShape, startLinkProxy } from "./nbd/link_proxy.ts";
import { fioRandomRead, nbdUri, qemuImgBench } from "./nbd/load.ts";
import { ensureBenchPeers } from "./peers.ts";
import { type BenchTable, figureOf, markdownTable, writeBenchResult } from "./results.ts";
import {
  type ProcessMemory,
  runCommand,
  type ServerProcess,
  startNbdkit,
  stopAllServers,
} from "./nbd/processes.ts";
import { type PublishedRepo, VatProcess } from "./nbd/vat_process.ts";
import { ensureTestImage } from "./nbd/test_image.ts";
import { V8_FLAGS } from "../vat/v8_flags.ts";
import { firstFillReport, type FirstFillResults, measureFirstFill } from "./nbd/first_fill.ts";

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

const _ROOT = new URL("../", import.meta.url).pathname;
const _CACHE_DIR = `${_ROOT}.cache/bench/nbd`;
const _OUT_DIR = `${_ROOT}bench/out`;

/** An emulated link and how much to read over it. */
interface LinkCase {
  label: string;
  shape: LinkShape;
  readBytes: number;
}

/** How much of everything a run does. */
interface Plan {
  imageBytes: number;
  warmReps: number;
  /** Full passes over the disk per sequential measurement. */
  seqPasses: number;
  /** 4 KiB requests per scattered measurement. */
  scatterCount: number;
  fioSeconds: number;
  coldReps: number;
  links: LinkCase[];
  /** Rounds of the first-fill cases (nbd/first_fill.ts). */
  fillRounds: number;
}

const _FAST_LINK: LinkShape = { rateBitsPerSec: 100e6, rttMs: 20 };
const _SLOW_LINK: LinkShape = { rateBitsPerSec: 1.5e6, rttMs: 40 };

const _FULL: Plan = {
  imageBytes: 1 * GiB,
  warmReps: 5,
  seqPasses: 2,
  scatterCount: 40_000,
  fioSeconds: 3,
  coldReps: 2,
  links: [
    { label: "100 Mbit/s, 20 ms RTT", shape: _FAST_LINK, readBytes: 256 * MiB },
    { label: "1.5 Mbit/s, 40 ms RTT", shape: _SLOW_LINK, readBytes: 8 * MiB },
  ],
  fillRounds: 3,
};

const _QUICK: Plan = {
  imageBytes: 256 * MiB,
  warmReps: 3,
  seqPasses: 2,
  scatterCount: 10_000,
  fioSeconds: 2,
  coldReps: 2,
  links: [
    { label: "100 Mbit/s, 20 ms RTT", shape: _FAST_LINK, readBytes: 32 * MiB },
    { label: "1.5 Mbit/s, 40 ms RTT", shape: _SLOW_LINK, readBytes: 1 * MiB },
  ],
  fillRounds: 1,
};

/** The fast link of the first-fill cases: gigabit on a LAN. */
const _FILL_LINK: LinkShape = { rateBitsPerSec: 1e9, rttMs: 1 };

/** The benchmark's request shapes. */
const _SEQ_REQUEST_BYTES = 128 * KiB;
const _SMALL_REQUEST_BYTES = 4 * KiB;
const _DEPTH = 16;
/**
 * The scattered test's step: an odd number of 4 KiB pages, so coprime with any
 * power-of-two disk size, and far larger than a chunk, so every request lands in a
 * different chunk than the one before.
 */
const _SCATTER_STEP_BYTES = 1943 * _SMALL_REQUEST_BYTES;

/** Goals from the issue. */
const _GOAL_SEQ_VS_NBDKIT = 0.8;
const _GOAL_SMALL_VS_NBDKIT = 0.5;
const _GOAL_COLD_VS_LINK = 1.3;

interface WarmResults {
  /** Seconds for the first full read, from the repository directory into the cache. */
  fillSeconds: number;
  /** Per test, per peer: samples (MB/s or IOPS). */
  samples: Record<string, Record<string, number[]>>;
  /** vat nbd when it started serving, after the first full read, and at the end. */
  vatMemory: {
    started: ProcessMemory | null;
    filled: ProcessMemory | null;
    end: ProcessMemory | null;
  };
  /** nbdkit when it started serving, after one full read, and at the end. */
  nbdkitMemory: {
    started: ProcessMemory | null;
    filled: ProcessMemory | null;
    end: ProcessMemory | null;
  };
}

interface ColdResults {
  link: LinkCase;
  vatSeconds: number[];
  vatWireBytes: number[];
  vatStartupSeconds: number[];
  vatStartupWireBytes: number[];
  vatPeakRssBytes: number[];
  curlSeconds: number[];
  curlWireBytes: number[];
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      quick: { type: "boolean" },
      reps: { type: "string" },
      image: { type: "string" },
      vat: { type: "string" },
      help: { type: "boolean" },
    },
  });
  if (values.help) {
    console.log("deno run -A bench/nbd.ts [--quick] [--reps N] [--image RAW] [--vat MAIN.TS]");
    return 0;
  }
  const plan = structuredClone(values.quick ? _QUICK : _FULL);
  if (values.reps) {
    const reps = Number(values.reps);
    if (!Number.isInteger(reps) || reps < 1) throw new Error(`--reps ${values.reps}: not a count`);
    plan.warmReps = reps;
    plan.coldReps = reps;
    plan.fillRounds = reps;
  }
  // The vat that is measured: this tree's, unless --vat names another main.ts.
  const vat = new VatProcess(values.vat ? await Deno.realPath(values.vat) : `${_ROOT}main.ts`);
  await ensureBenchPeers(["qemu-img", "nbdkit", "fio", "zstd", "curl"]);

  const started = performance.now();
  const header = await _describeRun(vat, plan, values.image);
  for (const line of header) console.log(line);

  await Deno.mkdir(_CACHE_DIR, { recursive: true });
  const work = await Deno.makeTempDir({ dir: _CACHE_DIR, prefix: "run-" });
  const onSignal = () => {
    stopAllServers()
      .then(() => Deno.remove(work, { recursive: true }))
      .finally(() => Deno.exit(130));
  };
  Deno.addSignalListener("SIGINT", onSignal);
  try {
    const image = values.image ??
      await ensureTestImage(`${_CACHE_DIR}/test-${plan.imageBytes / MiB}m.raw`, plan.imageBytes);
    plan.imageBytes = (await Deno.stat(image)).size;
    for (const link of plan.links) link.readBytes = Math.min(link.readBytes, plan.imageBytes);
    _progress(`publishing ${image} to a repository in ${work}`);
    const published = await vat.publish(work, image);
    const warm = await _warmCache(vat, plan, work, image);
    const cold = await _coldCache(vat, plan, work);
    const fill = await measureFirstFill({
      vats: [{ name: "vat", vat }],
      work,
      published,
      image,
      imageBytes: plan.imageBytes,
      rounds: plan.fillRounds,
      link: _FILL_LINK,
      progress: (m) => _progress(`first fill: ${m}`),
    });
    const report = _report(header, plan, published, warm, cold);
    report.push(...firstFillReport(fill).lines);
    report.push("", `total run time ${((performance.now() - started) / 1000).toFixed(0)} s`);
    console.log("\n" + report.slice(header.length).join("\n"));
    await Deno.mkdir(_OUT_DIR, { recursive: true });
    await Deno.writeTextFile(`${_OUT_DIR}/nbd.txt`, report.join("\n") + "\n");
    await Deno.writeTextFile(
      `${_OUT_DIR}/nbd.json`,
      JSON.stringify({ command: header[0], plan, published, warm, cold, fill }, null, 2) + "\n",
    );
    await writeBenchResult({
      bench: "nbd",
      command: header[0].replace(/^command: /, ""),
      startedAt: new Date(Date.now() - (performance.now() - started)).toISOString(),
      finishedAt: new Date().toISOString(),
      short: !!values.quick || plan.warmReps < 5,
      ..._benchTables(plan, warm, cold, fill),
    });
    console.log(`\nwritten to bench/out/nbd.txt, nbd.json and nbd.result.json`);
    return 0;
  } finally {
    Deno.removeSignalListener("SIGINT", onSignal);
    await stopAllServers();
    await Deno.remove(work, { recursive: true });
  }
}

/** The lines that head the report: what ran, where, on what. */
async function _describeRun(
  vat: VatProcess,
  plan: Plan,
  image: string | undefined,
): Promise<string[]> {
  const version = async (cmd: string, args: string[]) => {
    try {
      return (await runCommand(cmd, args)).stdout.split("\n")[0].trim();
    } catch {
      return "?";
    }
  };
  const vatDir = vat.main.slice(0, vat.main.lastIndexOf("/"));
  let commit = await version("git", ["-C", vatDir, "describe", "--always", "--dirty"]);
  if (commit === "?") commit = "not a git checkout";
  const cpu = /model name\s*:\s*(.*)/.exec(await Deno.readTextFile("/proc/cpuinfo"))?.[1];
  return [
    `command: deno run -A bench/nbd.ts ${Deno.args.join(" ")}`.trimEnd(),
    `date: ${new Date().toISOString()}, vat ${vatDir} (${commit}), deno ${Deno.version.deno}`,
    `machine: ${navigator.hardwareConcurrency} x ${cpu ?? "?"}; ${await version("qemu-img", [
      "--version",
    ])}; ${await version("nbdkit", ["--version"])}; ${await version("fio", ["--version"])}`,
    `image: ${image ?? `synthetic, ${_bytes(plan.imageBytes)}, no zero or duplicate chunks`}`,
  ];
}

const _WARM_TESTS = {
  seq: "128 KiB sequential, QD16 (MB/s)",
  scatter: "4 KiB scattered, QD16 (IOPS)",
  fio: "4 KiB random, fio, QD16 (IOPS)",
} as const;

async function _warmCache(
  vat: VatProcess,
  plan: Plan,
  work: string,
  image: string,
): Promise<WarmResults> {
  const vatSocket = `${work}/vat.sock`;
  const kitSocket = `${work}/nbdkit.sock`;
  const servers: ServerProcess[] = [];
  try {
    _progress("warm: starting vat nbd on the repository directory");
    const vatNbd = await vat.startNbd(
      `${work}/www/repo`,
      vatSocket,
      `${work}/cache-warm`,
      2 * plan.imageBytes,
    );
    servers.push(vatNbd);
    const vatStarted = await vatNbd.memory();
    const seqCount = Math.floor(plan.imageBytes / _SEQ_REQUEST_BYTES);
    const fillSeconds = await qemuImgBench(nbdUri(vatSocket), {
      count: seqCount,
      depth: _DEPTH,
      requestBytes: _SEQ_REQUEST_BYTES,
    });
    _progress(`warm: filled the cache in ${fillSeconds.toFixed(1)} s`);
    const vatFilled = await vatNbd.memory();
    const kit = await startNbdkit(kitSocket, ["file", image]);
    servers.push(kit);
    // nbdkit's memory over the same first full read, untimed (the page cache holds the image).
    const kitStarted = await kit.memory();
    await qemuImgBench(nbdUri(kitSocket), {
      count: seqCount,
      depth: _DEPTH,
      requestBytes: _SEQ_REQUEST_BYTES,
    });
    const kitFilled = await kit.memory();

    const peers = [
      { name: "vat", target: nbdUri(vatSocket) },
      { name: "nbdkit", target: nbdUri(kitSocket) },
      { name: "raw file", target: image },
    ];
    const samples: WarmResults["samples"] = {};
    for (const test of Object.keys(_WARM_TESTS)) {
      samples[test] = Object.fromEntries(peers.map((p) => [p.name, []]));
    }
    for (let rep = 0; rep < plan.warmReps; rep++) {
      _progress(`warm: repetition ${rep + 1} of ${plan.warmReps}`);
      for (const peer of _rotate(peers, rep)) {
        const seconds = await qemuImgBench(peer.target, {
          count: seqCount * plan.seqPasses,
          depth: _DEPTH,
          requestBytes: _SEQ_REQUEST_BYTES,
        });
        samples.seq[peer.name].push(seqCount * plan.seqPasses * _SEQ_REQUEST_BYTES / seconds / 1e6);
      }
      for (const peer of _rotate(peers, rep)) {
        const seconds = await qemuImgBench(peer.target, {
          count: plan.scatterCount,
          depth: _DEPTH,
          requestBytes: _SMALL_REQUEST_BYTES,
          stepBytes: _SCATTER_STEP_BYTES,
        });
        samples.scatter[peer.name].push(plan.scatterCount / seconds);
      }
      for (const peer of _rotate(peers, rep)) {
        samples.fio[peer.name].push(
          await fioRandomRead(peer.target, {
            requestBytes: _SMALL_REQUEST_BYTES,
            depth: _DEPTH,
            runtimeSec: plan.fioSeconds,
          }),
        );
      }
    }
    return {
      fillSeconds,
      samples,
      vatMemory: { started: vatStarted, filled: vatFilled, end: await vatNbd.memory() },
      nbdkitMemory: { started: kitStarted, filled: kitFilled, end: await kit.memory() },
    };
  } finally {
    for (const server of servers) await server.stop();
  }
}

async function _coldCache(vat: VatProcess, plan: Plan, work: string): Promise<ColdResults[]> {
  _progress("cold: starting vat serve");
  const serve = await vat.start(
    "vat serve",
    ["serve", "--root", `${work}/www`, "--listen", "127.0.0.1:0"],
    /serving .* at http:\/\/[^\s]+:\d+\//m,
  );
  try {
    const port = Number(/at http:\/\/[^\s]+:(\d+)\//.exec(serve.output())![1]);
    const results: ColdResults[] = [];
    for (const link of plan.links) {
      results.push(await _coldOverLink(vat, plan, work, port, link));
    }
    return results;
  } finally {
    await serve.stop();
  }
}

async function _coldOverLink(
  vat: VatProcess,
  plan: Plan,
  work: string,
  serverPort: number,
  link: LinkCase,
): Promise<ColdResults> {
  const proxy = startLinkProxy({ hostname: "127.0.0.1", port: serverPort }, link.shape);
  const base = `http://127.0.0.1:${proxy.port}`;
  const result: ColdResults = {
    link,
    vatSeconds: [],
    vatWireBytes: [],
    vatStartupSeconds: [],
    vatStartupWireBytes: [],
    vatPeakRssBytes: [],
    curlSeconds: [],
    curlWireBytes: [],
  };
  const read = {
    count: Math.floor(link.readBytes / _SEQ_REQUEST_BYTES),
    depth: _DEPTH,
    requestBytes: _SEQ_REQUEST_BYTES,
  };
  try {
    for (let rep = 0; rep < plan.coldReps; rep++) {
      for (const peer of _rotate(["vat", "nbdkit curl"], rep)) {
        _progress(`cold over ${link.label}: ${peer}, repetition ${rep + 1} of ${plan.coldReps}`);
        proxy.resetStats();
        // nbdkit leaves its socket behind: every server gets a fresh path.
        const socket = `${work}/cold-${link.shape.rateBitsPerSec}-${rep}-${
          peer.split(" ")[0]
        }.sock`;
        if (peer === "vat") {
          const cacheDir = `${work}/cache-cold`;
          const server = await vat.startNbd(`${base}/repo`, socket, cacheDir, 2 * plan.imageBytes);
          try {
            // Start-up (repo.json, manifest, disk index over the link) is inside the
            // timed read, as nbdkit curl's is: its own share is kept apart too.
            result.vatStartupSeconds.push(server.startupMs / 1000);
            result.vatStartupWireBytes.push(proxy.stats().downBytes);
            const readSeconds = await qemuImgBench(nbdUri(socket), read);
            result.vatSeconds.push(server.startupMs / 1000 + readSeconds);
            result.vatWireBytes.push(proxy.stats().downBytes);
            result.vatPeakRssBytes.push((await server.memory())?.peakRssBytes ?? 0);
          } finally {
            await server.stop();
            await Deno.remove(cacheDir, { recursive: true });
          }
        } else {
          const t0 = performance.now();
          const server = await startNbdkit(socket, ["curl", `url=${base}/disk.raw`]);
          try {
            const startSeconds = (performance.now() - t0) / 1000;
            result.curlSeconds.push(startSeconds + await qemuImgBench(nbdUri(socket), read));
            result.curlWireBytes.push(proxy.stats().downBytes);
          } finally {
            await server.stop();
          }
        }
      }
    }
  } finally {
    await proxy.close();
  }
  return result;
}

/** The report's lines: `header`, then one table per part. */
function _report(
  header: string[],
  plan: Plan,
  published: PublishedRepo,
  warm: WarmResults,
  cold: ColdResults[],
): string[] {
  const lines = [...header];
  const ratio = published.storedChunkBytes / plan.imageBytes;
  lines.push(
    `repository: chunks stored as ${_bytes(published.storedChunkBytes)} ` +
      `(${(ratio * 100).toFixed(0)}% of the disk), published in ` +
      `${published.publishSeconds.toFixed(1)} s`,
  );

  lines.push(
    "",
    `1. Warm cache (median of ${plan.warmReps} interleaved runs; cache filled by one full ` +
      `read from the repository directory in ${warm.fillSeconds.toFixed(1)} s = ` +
      `${(plan.imageBytes / warm.fillSeconds / 1e6).toFixed(0)} MB/s)`,
  );
  const goals: Record<string, number> = {
    seq: _GOAL_SEQ_VS_NBDKIT,
    scatter: _GOAL_SMALL_VS_NBDKIT,
    fio: _GOAL_SMALL_VS_NBDKIT,
  };
  const warmRows: string[][] = [[
    "test",
    "vat",
    "nbdkit file",
    "raw file",
    "vat/nbdkit",
    "vat/raw",
    "goal",
  ]];
  for (const [test, label] of Object.entries(_WARM_TESTS)) {
    const s = warm.samples[test];
    const vat = _median(s["vat"]);
    const kit = _median(s["nbdkit"]);
    const raw = _median(s["raw file"]);
    warmRows.push([
      label,
      _number(vat),
      _number(kit),
      _number(raw),
      `${(vat / kit).toFixed(2)}x`,
      `${(vat / raw).toFixed(2)}x`,
      `>= ${goals[test]}x ${vat / kit >= goals[test] ? "met" : "MISSED"}`,
    ]);
  }
  lines.push(..._table(warmRows));
  lines.push(
    `   scattered: qemu-img bench -s 4k -S ${_SCATTER_STEP_BYTES} (offsets wrap; every page ` +
      `once, no two requests in one chunk); raw file rows: page cache, fio with psync at QD1`,
  );

  lines.push(
    "",
    `2. Cold cache over an emulated link (median of ${plan.coldReps} interleaved runs; ` +
      "qemu-img bench 128 KiB sequential QD16 from offset 0; vat serve behind a pacing proxy)",
  );
  lines.push(
    "   link: one FIFO wire per direction at the rate, then half the RTT; a new connection " +
      "waits one RTT; no loss, slow start or header bytes (bench/nbd/link_proxy.ts)",
  );
  const coldRows: string[][] = [[
    "link",
    "read",
    "vat s",
    "vat wire",
    "nbdkit curl s",
    "limit raw s",
    "limit wire s",
    "vat/wire limit",
    "vat/raw limit",
    "vat/curl",
    "goal",
  ]];
  for (const c of cold) {
    const bytesPerSec = c.link.shape.rateBitsPerSec / 8;
    const vat = _median(c.vatSeconds);
    const wire = _median(c.vatWireBytes);
    const curl = _median(c.curlSeconds);
    const rawLimit = c.link.readBytes / bytesPerSec;
    const wireLimit = wire / bytesPerSec;
    coldRows.push([
      c.link.label,
      _bytes(c.link.readBytes),
      vat.toFixed(1),
      _bytes(wire),
      curl.toFixed(1),
      rawLimit.toFixed(1),
      wireLimit.toFixed(1),
      `${(vat / wireLimit).toFixed(2)}x`,
      `${(vat / rawLimit).toFixed(2)}x`,
      `${(vat / curl).toFixed(2)}x`,
      `<= ${_GOAL_COLD_VS_LINK}x wire ${vat / wireLimit <= _GOAL_COLD_VS_LINK ? "met" : "MISSED"}`,
    ]);
  }
  lines.push(..._table(coldRows));
  for (const c of cold) {
    lines.push(
      `   ${c.link.label}: vat startup (repo.json, manifest, disk index) ` +
        `${_median(c.vatStartupSeconds).toFixed(1)} s, ${
          _bytes(_median(c.vatStartupWireBytes))
        } over the link, inside "vat s" and its wire bytes; nbdkit curl moved ${
          _bytes(_median(c.curlWireBytes))
        } (its plugin serializes requests)`,
    );
  }

  lines.push("", "3. Memory of the serving process (VmRSS, and VmHWM for the peak)");
  const diskGiB = plan.imageBytes / GiB;
  const base = warm.vatMemory.started?.rssBytes ?? 0;
  const memRows: string[][] = [[
    "process, when",
    "RSS",
    "peak",
    "peak/GiB disk",
    "growth/GiB disk",
  ]];
  const memRow = (name: string, m: ProcessMemory | null, growth = true) => {
    memRows.push([
      name,
      m ? _bytes(m.rssBytes) : "?",
      m ? _bytes(m.peakRssBytes) : "?",
      m ? `${_bytes(m.peakRssBytes / diskGiB)}` : "?",
      m && growth ? `${_bytes((m.peakRssBytes - base) / diskGiB)}` : "",
    ]);
  };
  memRow("vat nbd, serving, before any read", warm.vatMemory.started, false);
  memRow("vat nbd, after the first full read", warm.vatMemory.filled);
  memRow("vat nbd, after all warm runs", warm.vatMemory.end);
  const coldPeak = Math.max(...cold.flatMap((c) => c.vatPeakRssBytes));
  memRows.push(["vat nbd, cold runs (largest peak)", "", _bytes(coldPeak), "", ""]);
  memRow("nbdkit file, serving, before any read", warm.nbdkitMemory.started, false);
  memRow("nbdkit file, after one full read", warm.nbdkitMemory.filled, false);
  memRow("nbdkit file, after all warm runs", warm.nbdkitMemory.end, false);
  lines.push(..._table(memRows));
  lines.push(
    "   growth: peak minus the RSS before any read, per GiB of disk (compare a --quick run, " +
      "a 256 MiB disk, to see whether it scales with the disk)",
  );
  return lines;
}

/** The README's NBD tables and the figures behind them (bench/results.ts). */
function _benchTables(plan: Plan, warm: WarmResults, cold: ColdResults[], fill: FirstFillResults) {
  const figures: Record<string, ReturnType<typeof figureOf>> = {};
  const warmRows: string[][] = [[
    "warm cache, against nbdkit's file plugin on the same raw image",
    "vat",
    "nbdkit",
    "ratio",
    "goal",
  ]];
  const goals: Record<string, number> = {
    seq: _GOAL_SEQ_VS_NBDKIT,
    scatter: _GOAL_SMALL_VS_NBDKIT,
    fio: _GOAL_SMALL_VS_NBDKIT,
  };
  const names: Record<string, [string, string]> = {
    seq: ["128 KiB sequential, QD16 (`qemu-img bench`)", "MB/s"],
    scatter: ["4 KiB scattered, QD16 (`qemu-img bench`)", "IOPS"],
    fio: ["4 KiB random, QD16 (fio, nbd engine)", "IOPS"],
  };
  for (const test of Object.keys(_WARM_TESTS)) {
    const [label, unit] = names[test];
    const vat = figureOf(warm.samples[test]["vat"], unit);
    const kit = figureOf(warm.samples[test]["nbdkit"], unit);
    figures[`warm_${test}_vat`] = vat;
    figures[`warm_${test}_nbdkit`] = kit;
    warmRows.push([
      label,
      `${_number(vat.value)} ${unit}`,
      `${_number(kit.value)} ${unit}`,
      `${(vat.value / kit.value).toFixed(2)}x`,
      `>= ${goals[test]}x`,
    ]);
  }
  const coldRows: string[][] = [[
    "cold cache over an emulated link (loopback pacing proxy)",
    "vat",
    "nbdkit curl",
    "vat / link limit",
    "goal",
  ]];
  for (const c of cold) {
    const vat = figureOf(c.vatSeconds, "s");
    const curl = figureOf(c.curlSeconds, "s");
    const key = `cold_${c.link.shape.rateBitsPerSec / 1e6}mbit`;
    figures[`${key}_vat`] = vat;
    figures[`${key}_vat_startup`] = figureOf(c.vatStartupSeconds, "s");
    figures[`${key}_curl`] = curl;
    const wireLimit = _median(c.vatWireBytes) / (c.link.shape.rateBitsPerSec / 8);
    coldRows.push([
      `${_bytes(c.link.readBytes)} over ${c.link.label}`,
      `${vat.value.toFixed(1)} s`,
      `${curl.value.toFixed(1)} s`,
      `${(vat.value / wireLimit).toFixed(2)}x`,
      `<= ${_GOAL_COLD_VS_LINK}x`,
    ]);
  }
  const started = warm.vatMemory.started;
  const filled = warm.vatMemory.filled;
  const end = warm.vatMemory.end;
  const kit = warm.nbdkitMemory;
  const tables: BenchTable[] = [
    {
      title: "NBD reads: warm cache",
      method: `${_bytes(plan.imageBytes)} synthetic image, cache filled by one full read, then ` +
        `${plan.warmReps} rounds with the peers' order rotating, median; qemu-img bench and fio ` +
        "on the same host as the server (Unix socket); leaves out the guest and QEMU's block layer.",
      markdown: markdownTable(warmRows),
    },
    {
      title: "NBD reads: cold cache",
      method: `${plan.coldReps} rounds, order rotating, median; every timed read includes its ` +
        "server's start-up (vat: repo.json, manifest and disk index over the link; nbdkit curl: " +
        "its size probe); link limit = the bytes vat moved (start-up included) over the rate; " +
        "the emulated link has no loss, slow start or header bytes.",
      markdown: markdownTable(coldRows),
      notes: cold.map((c) =>
        `${c.link.label}: vat start-up ${_median(c.vatStartupSeconds).toFixed(1)} s of it ` +
        `(${_bytes(_median(c.vatStartupWireBytes))}); nbdkit curl moved ` +
        `${_bytes(_median(c.curlWireBytes))}.`
      ),
    },
    {
      title: "NBD reads: memory",
      method: "VmRSS, and VmHWM for the peak, of the `vat nbd` process (run with vat's V8 " +
        `flags, ${V8_FLAGS}, as \`deno task start\` runs it) and of nbdkit's file plugin, side ` +
        "by side: before any read, over one full " +
        `sequential read of the ${_bytes(plan.imageBytes)} disk (vat's fills its cache from ` +
        "the repository directory; nbdkit's reads the raw image from the page cache), and " +
        "after the warm runs; leaves out the daemon's other parts (UI, QEMU supervision, backup).",
      markdown: markdownTable([
        ["when", "vat nbd RSS", "vat nbd peak", "nbdkit RSS", "nbdkit peak"],
        ...([
          ["before any read", started, kit.started],
          ["over the first full read", filled, kit.filled],
          ["after all warm runs", end, kit.end],
        ] as const).map(([when, v, k]) => [
          when,
          _bytes(v?.rssBytes ?? 0),
          _bytes(v?.peakRssBytes ?? 0),
          _bytes(k?.rssBytes ?? 0),
          _bytes(k?.peakRssBytes ?? 0),
        ]),
      ]),
    },
  ];
  if (filled) figures.vat_fill_peak_rss = { value: filled.peakRssBytes, unit: "B" };
  if (kit.filled) figures.nbdkit_fill_peak_rss = { value: kit.filled.peakRssBytes, unit: "B" };
  if (end) figures.vat_peak_rss = { value: end.peakRssBytes, unit: "B" };
  const fillReport = firstFillReport(fill);
  Object.assign(figures, fillReport.figures);
  tables.push({
    title: "NBD reads: first fill",
    method: fillReport.method,
    markdown: fillReport.markdown,
    notes: fillReport.notes,
  });
  return { figures, tables };
}

function _table(rows: string[][]): string[] {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return rows.map((r, ri) =>
    "   " +
    r.map((cell, i) => i === 0 || ri === 0 ? cell.padEnd(widths[i]) : cell.padStart(widths[i]))
      .join("  ").trimEnd()
  );
}

function _median(xs: number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

/** `items` rotated left by `by`, so each repetition starts with another peer. */
function _rotate<T>(items: T[], by: number): T[] {
  const k = by % items.length;
  return [...items.slice(k), ...items.slice(0, k)];
}

function _number(x: number): string {
  return x >= 100 ? Math.round(x).toLocaleString("en-US") : x.toFixed(1);
}

function _bytes(n: number): string {
  if (n >= GiB) return `${(n / GiB).toFixed(2)} GiB`;
  if (n >= MiB) return `${(n / MiB).toFixed(1)} MiB`;
  return `${(n / KiB).toFixed(0)} KiB`;
}

function _progress(message: string): void {
  console.error(`[nbd bench] ${message}`);
}

if (import.meta.main) Deno.exit(await main());
