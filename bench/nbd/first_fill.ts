/**
 * First fill: how fast `vat nbd` fills an empty cache on a full sequential read of a
 * published disk (qemu-img bench, 128 KiB requests at QD16, the whole disk once),
 * against peers given the same chance:
 *
 * - from the repository directory (a file repository on the same disk): each vat
 *   measured (this tree's, and others named with `--vat`, e.g. main before a change),
 *   nbdkit's file plugin on the raw image (no decompression, no hashing: the ceiling of
 *   a server), and `zstd -d` of the same image compressed as one stream (what one core
 *   decompresses, the bound of a decoder on the main thread alone);
 * - over an emulated fast link (`link_proxy.ts` in front of `vat serve`): each vat, and
 *   the link's own rate, both nominal (the bytes vat moved over the rate) and achieved
 *   (`curl` of the raw image through the same proxy: the proxy is JavaScript and shares
 *   the machine).
 *
 * Every timed vat read starts with an empty cache; its start-up (repo.json, manifest,
 * index) is kept apart, and so is the CPU time of the `vat nbd` process (user + system,
 * from /proc), which a busy machine does not inflate as it does wall time. Rounds
 * rotate the order of the cases; figures are medians with their range.
 *
 * Run alone: `deno run -A bench/nbd/first_fill.ts [--image-mib 1024] [--rounds 3]
 * [--vat MAIN.TS ...] [--link-mbit 1000] [--rtt-ms 1]`; bench/nbd.ts runs it too.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { type LinkShape, startLinkProxy } from "./link_proxy.ts";
import { nbdUri, qemuImgBench } from "./load.ts";
import { runCommand, type ServerProcess, startNbdkit, stopAllServers } from "./processes.ts";
import { ensureTestImage } from "./test_image.ts";
import { ensureBenchPeers } from "../peers.ts";
import { type PublishedRepo, VatProcess } from "./vat_process.ts";
import { type BenchFigure, figureOf, markdownTable, median, medianRange } from "../results.ts";

const MiB = 1024 * 1024;
const _ROOT = new URL("../../", import.meta.url).pathname;
const _REQUEST_BYTES = 128 * 1024;
const _DEPTH = 16;
/** Clock ticks per second of /proc/PID/stat's times (USER_HZ, 100 on Linux). */
const _TICKS_PER_SEC = 100;

/** A vat to measure, by name. */
export interface FillVat {
  name: string;
  vat: VatProcess;
}

/** What `measureFirstFill()` does. */
export interface FirstFillOptions {
  vats: FillVat[];
  /** A directory for caches and sockets (removed by the caller). */
  work: string;
  /** The published repository (`VatProcess.publish`) of `image`. */
  published: PublishedRepo;
  image: string;
  imageBytes: number;
  rounds: number;
  /** The emulated fast link; none: no link cases. */
  link?: LinkShape;
  progress?: (message: string) => void;
}

/** One vat's samples in one setting. */
export interface VatFillSamples {
  /** MB/s of the read itself (start-up left out). */
  mbps: number[];
  /** Seconds of start-up before the read. */
  startupSeconds: number[];
  /** CPU seconds (user + system) of the `vat nbd` process over the read, per GiB. */
  cpuSecondsPerGiB: number[];
  /** The same, of its main thread alone (JavaScript, NBD, SQLite). */
  mainCpuSecondsPerGiB: number[];
  /** Bytes down the link during start-up and read (link cases). */
  wireBytes: number[];
}

/** Everything `measureFirstFill()` measured. */
export interface FirstFillResults {
  imageBytes: number;
  storedChunkBytes: number;
  rounds: number;
  local: Record<string, VatFillSamples>;
  nbdkitMbps: number[];
  /** `zstd -d` of the image as one zstd stream, to /dev/null, MB/s of plaintext. */
  zstdMbps: number[];
  link?: {
    shape: LinkShape;
    vats: Record<string, VatFillSamples>;
    /** MB/s of `curl` fetching the raw image through the proxy. */
    curlMbps: number[];
  };
}

function _emptySamples(): VatFillSamples {
  return {
    mbps: [],
    startupSeconds: [],
    cpuSecondsPerGiB: [],
    mainCpuSecondsPerGiB: [],
    wireBytes: [],
  };
}

/**
 * CPU seconds (user + system) a process has used so far, or NaN once it is gone; with
 * `mainThread`, only its main thread's.
 */
async function _cpuSeconds(pid: number, mainThread = false): Promise<number> {
  try {
    const stat = await Deno.readTextFile(
      mainThread ? `/proc/${pid}/task/${pid}/stat` : `/proc/${pid}/stat`,
    );
    // Fields after the command name (which is in parentheses and may hold spaces).
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / _TICKS_PER_SEC;
  } catch {
    return NaN;
  }
}

/** One timed full read through a fresh `vat nbd` with an empty cache. */
async function _vatFill(
  vat: VatProcess,
  repo: string,
  work: string,
  tag: string,
  imageBytes: number,
  samples: VatFillSamples,
  wireBytes?: () => number,
): Promise<void> {
  const socket = `${work}/fill-${tag}.sock`;
  const cacheDir = `${work}/fill-cache-${tag}`;
  let server: ServerProcess | undefined;
  try {
    server = await vat.startNbd(repo, socket, cacheDir, 2 * imageBytes);
    const cpuBefore = await _cpuSeconds(server.pid);
    const mainBefore = await _cpuSeconds(server.pid, true);
    const seconds = await qemuImgBench(nbdUri(socket), {
      count: imageBytes / _REQUEST_BYTES,
      depth: _DEPTH,
      requestBytes: _REQUEST_BYTES,
    });
    const cpu = (await _cpuSeconds(server.pid)) - cpuBefore;
    const mainCpu = (await _cpuSeconds(server.pid, true)) - mainBefore;
    samples.mbps.push(imageBytes / seconds / 1e6);
    samples.startupSeconds.push(server.startupMs / 1000);
    samples.cpuSecondsPerGiB.push(cpu / (imageBytes / (1024 * MiB)));
    samples.mainCpuSecondsPerGiB.push(mainCpu / (imageBytes / (1024 * MiB)));
    if (wireBytes) samples.wireBytes.push(wireBytes());
  } finally {
    await server?.stop();
    await Deno.remove(cacheDir, { recursive: true }).catch(() => {});
    await Deno.remove(socket).catch(() => {});
  }
}

/** `items` rotated left by `by`. */
function _rotate<T>(items: T[], by: number): T[] {
  const k = by % items.length;
  return [...items.slice(k), ...items.slice(0, k)];
}

/** Runs every case of the first-fill benchmark, `options.rounds` times. */
export async function measureFirstFill(options: FirstFillOptions): Promise<FirstFillResults> {
  const { work, published, image, imageBytes } = options;
  const progress = options.progress ?? ((m: string) => console.error(`[first fill] ${m}`));
  const results: FirstFillResults = {
    imageBytes,
    storedChunkBytes: published.storedChunkBytes,
    rounds: options.rounds,
    local: Object.fromEntries(options.vats.map((v) => [v.name, _emptySamples()])),
    nbdkitMbps: [],
    zstdMbps: [],
  };
  // The image as one zstd stream (level 3, as chunks are stored), made once, untimed.
  const zst = `${work}/image.zst`;
  await runCommand("zstd", ["-q", "-3", "-f", "-T1", image, "-o", zst]);

  const localCases = [...options.vats.map((v) => v.name), "nbdkit file", "zstd -d"];
  for (let round = 0; round < options.rounds; round++) {
    for (const name of _rotate(localCases, round)) {
      progress(`local, round ${round + 1} of ${options.rounds}: ${name}`);
      const tag = `${round}-${name.replace(/\W+/g, "_")}`;
      if (name === "nbdkit file") {
        results.nbdkitMbps.push(await _nbdkitFill(work, tag, image, imageBytes));
      } else if (name === "zstd -d") {
        const { elapsedMs } = await runCommand("sh", [
          "-c",
          `zstd -q -d -c "$1" > /dev/null`,
          "zstd",
          zst,
        ]);
        results.zstdMbps.push(imageBytes / (elapsedMs / 1000) / 1e6);
      } else {
        const vat = options.vats.find((v) => v.name === name)!.vat;
        await _vatFill(vat, published.repo, work, tag, imageBytes, results.local[name]);
      }
    }
  }
  await Deno.remove(zst);
  if (options.link) results.link = await _overLink(options, options.link, progress);
  return results;
}

async function _nbdkitFill(
  work: string,
  tag: string,
  image: string,
  imageBytes: number,
): Promise<number> {
  const socket = `${work}/kit-${tag}.sock`;
  const kit = await startNbdkit(socket, ["file", image]);
  try {
    const seconds = await qemuImgBench(nbdUri(socket), {
      count: imageBytes / _REQUEST_BYTES,
      depth: _DEPTH,
      requestBytes: _REQUEST_BYTES,
    });
    return imageBytes / seconds / 1e6;
  } finally {
    await kit.stop();
  }
}

async function _overLink(
  options: FirstFillOptions,
  shape: LinkShape,
  progress: (message: string) => void,
): Promise<NonNullable<FirstFillResults["link"]>> {
  const { work, published, imageBytes } = options;
  const serve = await options.vats[0].vat.start(
    "vat serve",
    ["serve", "--root", published.www, "--listen", "127.0.0.1:0"],
    /serving .* at http:\/\/[^\s]+:\d+\//m,
  );
  const port = Number(/at http:\/\/[^\s]+:(\d+)\//.exec(serve.output())![1]);
  const proxy = startLinkProxy({ hostname: "127.0.0.1", port }, shape);
  const base = `http://127.0.0.1:${proxy.port}`;
  const link = {
    shape,
    vats: Object.fromEntries(options.vats.map((v) => [v.name, _emptySamples()])),
    curlMbps: [] as number[],
  };
  try {
    const cases = [...options.vats.map((v) => v.name), "curl"];
    for (let round = 0; round < options.rounds; round++) {
      for (const name of _rotate(cases, round)) {
        progress(`link, round ${round + 1} of ${options.rounds}: ${name}`);
        proxy.resetStats();
        if (name === "curl") {
          const { elapsedMs } = await runCommand("curl", [
            "-sf",
            "-o",
            "/dev/null",
            `${base}/${published.rawInWww.slice(published.www.length + 1)}`,
          ]);
          link.curlMbps.push(imageBytes / (elapsedMs / 1000) / 1e6);
        } else {
          const vat = options.vats.find((v) => v.name === name)!.vat;
          const tag = `link-${round}-${name.replace(/\W+/g, "_")}`;
          await _vatFill(
            vat,
            `${base}/repo`,
            work,
            tag,
            imageBytes,
            link.vats[name],
            () => proxy.stats().downBytes,
          );
        }
      }
    }
  } finally {
    await proxy.close();
    await serve.stop();
  }
  return link;
}

/** The report's lines and the figures and table for bench/results.ts. */
export function firstFillReport(r: FirstFillResults): {
  lines: string[];
  markdown: string;
  method: string;
  notes: string[];
  figures: Record<string, BenchFigure>;
} {
  const figures: Record<string, BenchFigure> = {};
  const key = (name: string) => name.replace(/\W+/g, "_");
  const rows: string[][] = [[
    "first fill, full sequential read, empty cache",
    "MB/s, median (range)",
    "start-up s",
    "vat CPU s/GiB",
    "main thread CPU s/GiB",
  ]];
  for (const [name, s] of Object.entries(r.local)) {
    rows.push([
      `${name}, from the repository directory`,
      medianRange(s.mbps, 0),
      medianRange(s.startupSeconds, 1),
      medianRange(s.cpuSecondsPerGiB, 1),
      medianRange(s.mainCpuSecondsPerGiB, 1),
    ]);
    figures[`fill_local_${key(name)}`] = figureOf(s.mbps, "MB/s");
    figures[`fill_local_${key(name)}_cpu`] = figureOf(s.cpuSecondsPerGiB, "s/GiB");
  }
  rows.push([
    "nbdkit file plugin, raw image (page cache)",
    medianRange(r.nbdkitMbps, 0),
    "",
    "",
    "",
  ]);
  rows.push([
    "`zstd -d` of the image as one stream (one core)",
    medianRange(r.zstdMbps, 0),
    "",
    "",
    "",
  ]);
  figures.fill_local_nbdkit = figureOf(r.nbdkitMbps, "MB/s");
  figures.fill_local_zstd = figureOf(r.zstdMbps, "MB/s");
  const notes: string[] = [];
  if (r.link) {
    const rate = r.link.shape.rateBitsPerSec;
    const label = `${rate / 1e6} Mbit/s, ${r.link.shape.rttMs} ms RTT`;
    for (const [name, s] of Object.entries(r.link.vats)) {
      // The link's nominal limit for what this vat moved: its wire bytes at the rate.
      const wireLimitMbps = s.wireBytes.map((w) => r.imageBytes / (w / (rate / 8)) / 1e6);
      rows.push([
        `${name}, over ${label}`,
        medianRange(s.mbps, 0),
        medianRange(s.startupSeconds, 1),
        medianRange(s.cpuSecondsPerGiB, 1),
        medianRange(s.mainCpuSecondsPerGiB, 1),
      ]);
      figures[`fill_link_${key(name)}`] = figureOf(s.mbps, "MB/s");
      notes.push(
        `${name} over ${label}: ${medianRange(s.mbps, 0)} MB/s of disk; the link at its ` +
          `nominal rate moves vat's ${(median(s.wireBytes) / MiB).toFixed(0)} MiB (start-up ` +
          `included) at ${median(wireLimitMbps).toFixed(0)} MB/s of disk: vat reaches ` +
          `${(median(s.mbps) / median(wireLimitMbps) * 100).toFixed(0)}% of it`,
      );
    }
    rows.push([
      `\`curl\` of the raw image over ${label} (the proxy's achieved rate)`,
      medianRange(r.link.curlMbps, 0),
      "",
      "",
      "",
    ]);
    figures.fill_link_curl = figureOf(r.link.curlMbps, "MB/s");
  }
  const method = `${(r.imageBytes / MiB).toFixed(0)} MiB synthetic image (chunks stored at ` +
    `${(r.storedChunkBytes / r.imageBytes * 100).toFixed(0)}% of it), qemu-img bench 128 KiB ` +
    `sequential QD16 over the whole disk, each vat read from a fresh \`vat nbd\` with an empty ` +
    `cache; ${r.rounds} rounds, order rotating, median (range); MB/s leaves out start-up ` +
    `(its own column); CPU = user + system time of the \`vat nbd\` process (and of its main thread) during the read.`;
  const markdown = markdownTable(rows);
  const lines = [
    "",
    `4. First fill (${r.rounds} rounds, order rotating, median (range))`,
    ...markdown.split("\n").map((l) => `   ${l}`),
    ...notes.map((n) => `   ${n}`),
  ];
  return { lines, markdown, method, notes, figures };
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      "image-mib": { type: "string", default: "1024" },
      rounds: { type: "string", default: "3" },
      vat: { type: "string", multiple: true },
      "link-mbit": { type: "string", default: "1000" },
      "rtt-ms": { type: "string", default: "1" },
      "no-link": { type: "boolean" },
    },
  });
  const imageBytes = Number(values["image-mib"]) * MiB;
  const rounds = Number(values.rounds);
  if (!Number.isInteger(rounds) || rounds < 1) {
    throw new Error(`--rounds ${values.rounds}: not a count`);
  }
  const vats: FillVat[] = [{ name: "vat (this tree)", vat: new VatProcess(`${_ROOT}main.ts`) }];
  for (const path of values.vat ?? []) {
    const main = await Deno.realPath(path);
    vats.push({ name: `vat ${main.replace(/\/main\.ts$/, "")}`, vat: new VatProcess(main) });
  }
  await ensureBenchPeers(["qemu-img", "nbdkit", "zstd", "curl"]);
  const cacheDir = `${_ROOT}.cache/bench/nbd`;
  await Deno.mkdir(cacheDir, { recursive: true });
  const image = await ensureTestImage(`${cacheDir}/test-${imageBytes / MiB}m.raw`, imageBytes);
  const work = await Deno.makeTempDir({ dir: cacheDir, prefix: "fill-" });
  try {
    const published = await vats[0].vat.publish(work, image);
    const results = await measureFirstFill({
      vats,
      work,
      published,
      image,
      imageBytes,
      rounds,
      link: values["no-link"] ? undefined : {
        rateBitsPerSec: Number(values["link-mbit"]) * 1e6,
        rttMs: Number(values["rtt-ms"]),
      },
    });
    const report = firstFillReport(results);
    console.log(report.lines.join("\n"));
    console.log(`\n   method: ${report.method}`);
    await Deno.mkdir(`${_ROOT}bench/out`, { recursive: true });
    await Deno.writeTextFile(
      `${_ROOT}bench/out/first_fill.json`,
      JSON.stringify(results, null, 2) + "\n",
    );
    return 0;
  } finally {
    await stopAllServers();
    await Deno.remove(work, { recursive: true });
  }
}

if (import.meta.main) Deno.exit(await main());
