/**
 * What an appliance update costs and how fast publishing is, against rsync, casync,
 * zstd --patch-from and qemu-img, on the image pair of `bench/fixtures/appliance_images.ts`
 * (bookworm minbase, then an admin's apt-get install in place).
 *
 * Like for like: vat's figures are `vat publish`'s own (the CLI, into a real repository:
 * update bytes are the repository's growth from v1 to v2, every file counted), and every
 * peer runs on the same two inputs: the images as they are, and copies whose ext4-unused
 * blocks are zeroed (what `vat publish` reads by default; `--exact` publishes the images
 * as they are). `zstd -19 --long=31 --patch-from` on the zeroed images is the limit a
 * delta of these inputs reaches.
 *
 * Run: `deno run -A bench/publish.ts [--runs N] [--sizes 64K,256K] [--skip-tools]
 * [--vat MAIN.TS]` (`--vat`: another checkout's vat, e.g. one before a change), or
 * `deno run -A bench/publish.ts --speed-only [--runs N]` (publish speed only: casync make,
 * qemu-img convert, vat publish and vat publish --exact, N runs each, interleaved).
 * Results: printed, bench/out/publish.json (or publish-speed.json) and
 * bench/out/publish.result.json (bench/results.ts).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { constants, zstdCompressSync } from "node:zlib";
import { chunkKey, toHex } from "../vat/repo/chunk_codec.ts";
import { openStore } from "../vat/repo/open_store.ts";
import { Repository } from "../vat/repo/repository.ts";
import { ensureApplianceImages } from "./fixtures/appliance_images.ts";
import { findUnusedRangesInFile } from "../vat/image/ext4_unused.ts";
import { type ByteRange, totalLength } from "../vat/image/byte_ranges.ts";
import { ensureBenchPeers } from "./peers.ts";
import {
  type BenchTable,
  figureOf,
  markdownTable,
  median,
  medianRange,
  writeBenchResult,
} from "./results.ts";

const KiB = 1024;
const MiB = 1024 * KiB;
const ROOT = new URL("../", import.meta.url).pathname;
const WORK = `${ROOT}.cache/bench/publish-work`;
const OUT = `${ROOT}bench/out/publish.json`;
const SPEED_OUT = `${ROOT}bench/out/publish-speed.json`;

const { values: flags } = parseArgs({
  options: {
    "skip-tools": { type: "boolean" },
    "speed-only": { type: "boolean" },
    runs: { type: "string", default: "3" },
    sizes: { type: "string", default: "64K" },
    vat: { type: "string" },
  },
});
/** The vat measured: this tree's main.ts, or another checkout's (`--vat MAIN.TS`). */
const VAT_MAIN = flags.vat ? Deno.realPathSync(flags.vat) : `${ROOT}main.ts`;
const runs = Number(flags.runs);
if (!Number.isInteger(runs) || runs < 1) throw new Error(`--runs ${flags.runs}: not a count`);
const sizes = flags.sizes!.split(",").map((s) => s.trim());
for (const s of sizes) {
  if (!/^\d+[KM]$/i.test(s)) throw new Error(`bad size ${s}: use e.g. 64K or 1M`);
}
const started = new Date().toISOString();
// --- external tools --------------------------------------------------------------------

interface _Timed {
  wallS: number;
  userS: number;
  sysS: number;
  maxRssMiB: number;
  stdout: string;
}

/** Runs `cmd` under /usr/bin/time; throws with its stderr if it fails. */
async function _timed(cmd: string, args: string[], cwd?: string): Promise<_Timed> {
  const timeFile = await Deno.makeTempFile({ prefix: "vat-bench-time-" });
  try {
    const out = await new Deno.Command("/usr/bin/time", {
      args: ["-f", "%e %U %S %M", "-o", timeFile, cmd, ...args],
      stdout: "piped",
      stderr: "piped",
      cwd,
    }).output();
    const stdout = new TextDecoder().decode(out.stdout);
    if (!out.success) {
      throw new Error(`${cmd} ${args.join(" ")} failed: ${new TextDecoder().decode(out.stderr)}`);
    }
    const [wall, user, sys, rss] = (await Deno.readTextFile(timeFile)).trim().split("\n").pop()!
      .split(" ").map(Number);
    return { wallS: wall, userS: user, sysS: sys, maxRssMiB: rss / 1024, stdout };
  } finally {
    await Deno.remove(timeFile);
  }
}

async function _treeBytes(dir: string): Promise<number> {
  let sum = 0;
  for await (const e of Deno.readDir(dir)) {
    const p = `${dir}/${e.name}`;
    if (e.isDirectory) sum += await _treeBytes(p);
    else if (e.isFile) sum += (await Deno.stat(p)).size;
  }
  return sum;
}

async function _fresh(dir: string): Promise<string> {
  await Deno.remove(dir, { recursive: true }).catch((err) => {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  });
  await Deno.mkdir(dir, { recursive: true });
  return dir;
}

async function _rsync(v1: string, v2: string, tag: string) {
  const dest = await _fresh(`${WORK}/rsync-${tag}`);
  // rsync pairs files by name: the receiver's copy of v1 must be called like the source.
  const src = await _fresh(`${WORK}/rsync-src-${tag}`);
  await Deno.symlink(v2, `${src}/disk.raw`);
  await _timed("cp", ["--sparse=always", v1, `${dest}/disk.raw`]);
  const t = await _timed("rsync", [
    "--no-whole-file",
    "-z",
    "--stats",
    "--copy-links",
    `${src}/disk.raw`,
    `${dest}/`,
  ]);
  const sent = Number(t.stdout.match(/Total bytes sent: ([\d,]+)/)![1].replaceAll(",", ""));
  await Deno.remove(dest, { recursive: true });
  await Deno.remove(src, { recursive: true });
  return { sentBytes: sent, wallS: t.wallS };
}

async function _casync(v1: string, v2: string, tag: string) {
  const store = await _fresh(`${WORK}/casync-${tag}`);
  const first = await _timed("casync", ["make", `--store=${store}/store`, `${store}/v1.caibx`, v1]);
  const v1Bytes = await _treeBytes(`${store}/store`);
  await _timed("casync", ["make", `--store=${store}/store`, `${store}/v2.caibx`, v2]);
  const v2Bytes = await _treeBytes(`${store}/store`);
  const indexBytes = (await Deno.stat(`${store}/v2.caibx`)).size;
  await Deno.remove(store, { recursive: true });
  return { v1StoreBytes: v1Bytes, growthBytes: v2Bytes - v1Bytes, indexBytes, make: first };
}

async function _zstdPatch(v1: string, v2: string, tag: string) {
  const out = `${WORK}/patch-${tag}.zst`;
  const t = await _timed("zstd", [
    "-19",
    "--long=31",
    "-q",
    "-f",
    `--patch-from=${v1}`,
    v2,
    "-o",
    out,
  ]);
  const bytes = (await Deno.stat(out)).size;
  await Deno.remove(out);
  return { bytes, wallS: t.wallS };
}

async function _qemuImg(v1: string) {
  const out = `${WORK}/v1.qcow2`;
  const t = await _timed("qemu-img", ["convert", "-c", "-O", "qcow2", v1, out]);
  const bytes = (await Deno.stat(out)).size;
  await Deno.remove(out);
  return { bytes, ...t };
}

/**
 * `vat publish` (the CLI) of v1, then (unless `v2` is null) v2, into a fresh repository
 * with `chunk`-sized chunks; `exact` publishes every byte (no unused-block zeroing).
 */
async function _vatPublish(
  v1: string,
  v2: string | null,
  chunk: string,
  exact: boolean,
  inspect?: (repo: string) => Promise<void>,
) {
  const dir = await _fresh(`${WORK}/vat-${chunk}${exact ? "-exact" : ""}`);
  const cwd = VAT_MAIN.slice(0, VAT_MAIN.lastIndexOf("/"));
  const vat = (args: string[]) => _timed("deno", ["run", "-A", VAT_MAIN, ...args], cwd);
  const publish = (image: string) =>
    vat([
      "publish",
      `${dir}/repo`,
      "--image",
      image,
      "--key",
      `${dir}/key`,
      "--json",
      ...(exact ? ["--exact"] : []),
    ]);
  try {
    await vat(["repo", "init", `${dir}/repo`, "--kind", "appliance", "--chunk-size", chunk]);
    await vat(["keygen", "--out", `${dir}/key`]);
    const repoBefore = await _treeBytes(`${dir}/repo`);
    const first = await publish(v1);
    const repoV1Bytes = await _treeBytes(`${dir}/repo`) - repoBefore;
    if (!v2) return { v1: { ...first, result: JSON.parse(first.stdout) }, repoV1Bytes };
    const second = await publish(v2);
    await inspect?.(`${dir}/repo`);
    return {
      v1: { ...first, result: JSON.parse(first.stdout) },
      v2: { ...second, result: JSON.parse(second.stdout) },
      repoV1Bytes,
      repoGrowthBytes: await _treeBytes(`${dir}/repo`) - repoBefore - repoV1Bytes,
    };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function _writeZeroed(src: string, ranges: ByteRange[], dst: string) {
  await _timed("cp", ["--sparse=always", src, dst]);
  using f = await Deno.open(dst, { write: true });
  const zeros = new Uint8Array(MiB);
  for (const r of ranges) {
    for (let at = r.offset; at < r.offset + r.length; at += MiB) {
      await f.seek(at, Deno.SeekMode.Start);
      const n = Math.min(MiB, r.offset + r.length - at);
      let done = 0;
      while (done < n) done += await f.write(zeros.subarray(done, n));
    }
  }
}

const mb = (n: number) => (n / 1e6).toFixed(1);

function _log(msg: string) {
  console.error(`[publish bench] ${msg}`);
}

/** `runs` interleaved runs of each publisher of v1, the order rotating. */
async function _speed(v1: string, imageBytes: number) {
  const samples: Record<string, _Timed[]> = {};
  const stored: Record<string, number> = {};
  const casync = async () => {
    const store = await _fresh(`${WORK}/casync-speed`);
    const t = await _timed("casync", ["make", `--store=${store}/store`, `${store}/v1.caibx`, v1]);
    stored["casync make"] = await _treeBytes(`${store}/store`);
    await Deno.remove(store, { recursive: true });
    return t;
  };
  const qemu = async () => {
    const q = await _qemuImg(v1);
    stored["qemu-img convert -c -O qcow2"] = q.bytes;
    return q;
  };
  const vatOf = (exact: boolean) => async () => {
    const p = await _vatPublish(v1, null, "64K", exact);
    stored[exact ? "vat publish --exact" : "vat publish"] = p.repoV1Bytes;
    return { ...p.v1, ownS: p.v1.result.elapsedMs / 1000 };
  };
  const peers: [string, () => Promise<_Timed & { ownS?: number }>][] = [
    ["vat publish", vatOf(false)],
    ["vat publish --exact", vatOf(true)],
    ["casync make", casync],
    ["qemu-img convert -c -O qcow2", qemu],
  ];
  for (let run = 0; run < runs; run++) {
    const k = run % peers.length;
    for (const [name, fn] of [...peers.slice(k), ...peers.slice(0, k)]) {
      _log(`speed run ${run + 1} of ${runs}: ${name}`);
      (samples[name] ??= []).push(await fn());
    }
  }
  const rows: (string | number)[][] = [[
    `publishing version 1 (1 GiB virtual), median (range) of ${runs}`,
    "wall s",
    "MB/s of virtual disk",
    "cores used",
    "stored MB",
  ]];
  for (const [name, xs] of Object.entries(samples)) {
    const wall = xs.map((x) => x.wallS);
    const cores = median(xs.map((x) => (x.userS + x.sysS) / x.wallS));
    rows.push([
      `\`${name}\``,
      medianRange(wall),
      (imageBytes / 1e6 / median(wall)).toFixed(0),
      cores.toFixed(2),
      mb(stored[name]),
    ]);
  }
  const vatWall = median(samples["vat publish"].map((x) => x.wallS));
  const exactWall = median(samples["vat publish --exact"].map((x) => x.wallS));
  const casyncWall = median(samples["casync make"].map((x) => x.wallS));
  const table: BenchTable = {
    title: "Publish and update: publish speed",
    method: `wall time of each command under /usr/bin/time on a 1 GiB raw image (v1), ${runs} ` +
      "interleaved runs (order rotating), median and range; vat's time includes Deno's start-up " +
      "and its durability barrier; `vat publish` skips chunks lying wholly in ext4-unused blocks (never reads " +
      "them), `--exact` reads every byte; casync and qemu-img read the whole image; page cache " +
      "warm for all (the image was read before).",
    markdown: markdownTable(rows),
    notes: [
      `vat publish / casync make: ${(casyncWall / vatWall).toFixed(2)}x as fast; ` +
      `vat publish --exact: ${(casyncWall / exactWall).toFixed(2)}x as fast.`,
    ],
  };
  const figures = {
    vatPublishWallS: figureOf(samples["vat publish"].map((x) => x.wallS), "s"),
    vatPublishExactWallS: figureOf(samples["vat publish --exact"].map((x) => x.wallS), "s"),
    casyncMakeWallS: figureOf(samples["casync make"].map((x) => x.wallS), "s"),
    qemuImgWallS: figureOf(samples["qemu-img convert -c -O qcow2"].map((x) => x.wallS), "s"),
  };
  return { samples, stored, table, figures };
}

/** Bytes of version 2's new chunks, stored as vat stores them and in ways it does not. */
interface _UpdateIdeas {
  newChunks: number;
  plainBytes: number;
  storedBytes: number;
  level19Bytes: number;
  packed: { frameBytes: number; bytes: number }[];
}

/**
 * What would shrink the update, measured on the chunks version 2 added to `location`
 * (in v2's indexes, not in v1's): each chunk compressed alone at zstd level 19 instead
 * of 3, and the chunks packed in order into frames of 1 and 4 MiB at level 19 (one
 * frame per fetch, so a demand read of one chunk would fetch its whole frame). Nothing
 * of this is built; the figures say what each idea is worth.
 */
async function _updateIdeas(location: string): Promise<_UpdateIdeas> {
  const store = await openStore(location);
  try {
    const repo = await Repository.open(store);
    const hashesOf = async (n: number) => {
      const { manifest } = await repo.readVersion(n);
      const out = new Map<string, Uint8Array>();
      for (const entry of Object.values(manifest.disks)) {
        const index = await repo.readDiskIndex(entry.index);
        for (let i = 0; i < index.count; i++) {
          const hash = index.hash(i);
          if (hash) out.set(toHex(hash), hash.slice());
        }
      }
      return out;
    };
    const old = await hashesOf(1);
    const plains: Uint8Array[] = [];
    let storedBytes = 0;
    for (const [id, hash] of await hashesOf(2)) {
      if (old.has(id)) continue;
      storedBytes += (await store.get(chunkKey(id))).length;
      plains.push(await repo.readChunk(hash));
    }
    const level19 = { params: { [constants.ZSTD_c_compressionLevel]: 19 } };
    let level19Bytes = 0;
    for (const p of plains) {
      level19Bytes += 1 + Math.min(p.length, zstdCompressSync(p, level19).length);
    }
    const all = new Uint8Array(plains.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of plains) {
      all.set(p, at);
      at += p.length;
    }
    const packed = [MiB, 4 * MiB].map((frameBytes) => {
      let bytes = 0;
      for (let i = 0; i < all.length; i += frameBytes) {
        bytes += zstdCompressSync(all.subarray(i, i + frameBytes), level19).length;
      }
      return { frameBytes, bytes };
    });
    return { newChunks: plains.length, plainBytes: all.length, storedBytes, level19Bytes, packed };
  } finally {
    await store.close();
  }
}

async function main() {
  await ensureBenchPeers(["casync", "rsync", "zstd", "qemu-img", "/usr/bin/time"]);
  const { v1, v2 } = await ensureApplianceImages();
  await Deno.mkdir(WORK, { recursive: true });
  const imageBytes = (await Deno.stat(v1)).size;
  const command = `deno run -A bench/publish.ts ${Deno.args.join(" ")}`.trimEnd();
  const short = runs < 3;
  const results: Record<string, unknown> = { images: { v1, v2, imageBytes } };

  const speed = await _speed(v1, imageBytes);
  results.speed = { samples: speed.samples, stored: speed.stored };
  if (flags["speed-only"]) {
    await Deno.mkdir(`${ROOT}bench/out`, { recursive: true });
    await Deno.writeTextFile(SPEED_OUT, JSON.stringify(results, null, 2) + "\n");
    _print([speed.table]);
    await writeBenchResult({
      bench: "publish",
      command,
      startedAt: started,
      finishedAt: new Date().toISOString(),
      short,
      figures: speed.figures,
      tables: [speed.table],
    });
    return;
  }

  _log("finding ext4-unused blocks; writing the zeroed copies");
  const unused1 = await findUnusedRangesInFile(v1);
  const unused2 = await findUnusedRangesInFile(v2);
  results.unused = { v1Bytes: totalLength(unused1), v2Bytes: totalLength(unused2) };
  const v1z = `${WORK}/v1z.raw`;
  const v2z = `${WORK}/v2z.raw`;
  await _writeZeroed(v1, unused1, v1z);
  await _writeZeroed(v2, unused2, v2z);

  const vat: Record<string, { asis: number; zeroed: number; v1Stored: number }> = {};
  let ideas: _UpdateIdeas | null = null;
  for (const size of sizes) {
    _log(`vat publish v1, v2 at ${size} (default: unused blocks zeroed; and --exact)`);
    const zeroed = await _vatPublish(v1, v2, size, false, async (repo) => {
      if (size !== "64K") return;
      _log("what would shrink the update: v2's new chunks at zstd 19, and packed; takes minutes");
      ideas = await _updateIdeas(repo);
    });
    const asis = await _vatPublish(v1, v2, size, true);
    vat[size] = {
      asis: asis.repoGrowthBytes!,
      zeroed: zeroed.repoGrowthBytes!,
      v1Stored: zeroed.repoV1Bytes,
    };
  }
  results.vatUpdate = vat;

  const tools: Record<string, { asis: number; zeroed: number }> = {};
  if (!flags["skip-tools"]) {
    const run: Record<string, Record<string, number>> = { asis: {}, zeroed: {} };
    for (const [tag, a, b] of [["asis", v1, v2], ["zeroed", v1z, v2z]] as const) {
      _log(`rsync (${tag})`);
      run[tag].rsync = (await _rsync(a, b, tag)).sentBytes;
      _log(`casync (${tag})`);
      run[tag].casync = (await _casync(a, b, tag)).growthBytes;
      _log(`zstd -19 --long=31 --patch-from (${tag}); takes minutes`);
      run[tag].zstd = (await _zstdPatch(a, b, tag)).bytes;
    }
    for (const k of ["rsync", "casync", "zstd"]) {
      tools[k] = { asis: run.asis[k], zeroed: run.zeroed[k] };
    }
  }
  results.tools = tools;
  await Deno.remove(v1z);
  await Deno.remove(v2z);

  const limit = tools.zstd?.zeroed;
  const rows: (string | number)[][] = [[
    "what a VAT holding version 1 fetches for version 2",
    "MB, images as is",
    "MB, unused blocks zeroed",
    "zeroed vs the limit",
  ]];
  const add = (name: string, x: { asis: number; zeroed: number }) =>
    rows.push([
      name,
      mb(x.asis),
      mb(x.zeroed),
      limit ? `${(x.zeroed / limit).toFixed(2)}x` : "",
    ]);
  for (const size of sizes) {
    add(`\`vat publish\`, ${size}iB chunks (as is: \`--exact\`), repository growth`, vat[size]);
  }
  if (tools.rsync) {
    add("`rsync --no-whole-file -z` (bytes sent)", tools.rsync);
    add("casync store growth", tools.casync);
    add("`zstd -19 --long=31 --patch-from` (the limit: a whole-image delta)", tools.zstd);
  }
  const update: BenchTable = {
    title: "Publish and update: update bytes",
    method: "v1 then v2 published into a fresh repository by the `vat publish` CLI (growth of " +
      "every file of the repository: chunks, index, manifest, signatures); each peer on the " +
      "same two inputs, the images as is and copies with ext4-unused blocks zeroed (vat's " +
      "default reads the as-is image and zeroes them itself, so its figure sits in the zeroed " +
      "column; `--exact` is its as-is figure); leaves out protocol overhead (HTTP requests, " +
      "rsync's checksums back from the receiver are not counted) and time.",
    markdown: markdownTable(rows),
    notes: [
      `ext4-unused blocks: v1 ${mb(totalLength(unused1))} MB, v2 ${mb(totalLength(unused2))} MB.`,
      `version 1 stored (repository size after it, unused blocks zeroed): ${
        sizes.map((s) => `${s}iB ${mb(vat[s].v1Stored)} MB`).join(", ")
      }.`,
    ],
  };
  const tables = [update, speed.table];
  const idea = ideas as _UpdateIdeas | null;
  if (idea) {
    const ideaRows: (string | number)[][] = [[
      `version 2's ${idea.newChunks} new 64 KiB chunks (${mb(idea.plainBytes)} MB plain)`,
      "MB",
      "vs the limit",
    ]];
    const row = (name: string, bytes: number) =>
      ideaRows.push([name, mb(bytes), limit ? `${(bytes / limit).toFixed(2)}x` : ""]);
    row("each chunk alone, zstd level 3 (what vat stores)", idea.storedBytes);
    row("each chunk alone, zstd level 19", idea.level19Bytes);
    for (const p of idea.packed) {
      row(`packed in order, ${p.frameBytes / MiB} MiB frames, level 19`, p.bytes);
    }
    tables.push({
      title: "Publish and update: what would shrink the update (measured, not built)",
      method: "the chunks in v2's indexes and not in v1's, from the 64 KiB repository above " +
        "(unused blocks zeroed), compressed again in other ways; chunk objects only (the " +
        "update's index and manifest are left out); the limit is zstd --patch-from on the " +
        "zeroed images. Packing makes a demand read fetch a whole frame.",
      markdown: markdownTable(ideaRows),
    });
  }
  await Deno.mkdir(`${ROOT}bench/out`, { recursive: true });
  await Deno.writeTextFile(OUT, JSON.stringify(results, null, 2) + "\n");
  _print(tables);
  const figures: Record<string, ReturnType<typeof figureOf>> = { ...speed.figures };
  for (const size of sizes) {
    figures[`vatUpdate${size}ZeroedBytes`] = figureOf([vat[size].zeroed], "B");
    figures[`vatUpdate${size}ExactBytes`] = figureOf([vat[size].asis], "B");
  }
  for (const [k, x] of Object.entries(tools)) {
    figures[`${k}UpdateAsIsBytes`] = figureOf([x.asis], "B");
    figures[`${k}UpdateZeroedBytes`] = figureOf([x.zeroed], "B");
  }
  if (idea) {
    figures.updateNewChunksLevel3Bytes = figureOf([idea.storedBytes], "B");
    figures.updateNewChunksLevel19Bytes = figureOf([idea.level19Bytes], "B");
    for (const p of idea.packed) {
      figures[`updateNewChunksPacked${p.frameBytes / MiB}MiBBytes`] = figureOf([p.bytes], "B");
    }
  }
  await writeBenchResult({
    bench: "publish",
    command,
    startedAt: started,
    finishedAt: new Date().toISOString(),
    short,
    figures,
    tables,
  });
  console.log(`\nraw results: ${OUT}`);
}

function _print(tables: BenchTable[]) {
  for (const t of tables) {
    console.log(`\n${t.title}\n${t.markdown}`);
    for (const n of t.notes ?? []) console.log(n);
  }
}

if (import.meta.main) await main();
