/**
 * What an appliance update costs, by chunk size, against rsync, casync and zstd
 * --patch-from; and how fast publishing is. Uses the image pair of
 * `bench/fixtures/appliance_images.ts` (bookworm minbase, then an admin's apt-get install).
 *
 * The in-bench chunker mirrors vat's scheme (docs/FORMAT.md): fixed-size chunks aligned
 * to disk offsets, named by SHA-256, stored as one codec byte plus zstd level 3 or raw
 * (whichever is smaller); all-zero chunks are a marker in the index and cost nothing.
 * "Update bytes" are what a VAT holding v1 fetches for v2: v2's index plus every chunk of
 * v2 whose hash v1 lacks, counted once.
 *
 * Run: `deno run -A bench/publish.ts [--skip-tools] [--skip-experiments] [--sizes 64K,256K]`
 * or `deno run -A bench/publish.ts --speed-only` (publish speed of casync, qemu-img, vat).
 * Results: printed tables, and `bench/out/publish.json` (`publish-speed.json`).
 *
 * @module
 */

import { createHash } from "node:crypto";
import { constants, zstdCompressSync } from "node:zlib";
import { parseArgs } from "node:util";
import { ensureApplianceImages } from "./fixtures/appliance_images.ts";
import { findUnusedRangesInFile } from "../vat/image/ext4_unused.ts";
import { type ByteRange, totalLength, zeroRanges } from "../vat/image/byte_ranges.ts";

const KiB = 1024;
const MiB = 1024 * KiB;
const ALL_SIZES = [32 * KiB, 64 * KiB, 128 * KiB, 256 * KiB, 512 * KiB, 1 * MiB];
/** Read unit: a multiple of every chunk size. */
const READ_BYTES = 4 * MiB;
const ROOT = new URL("../", import.meta.url).pathname;
const WORK = `${ROOT}.cache/bench/publish-work`;
const OUT = `${ROOT}bench/out/publish.json`;
const SPEED_OUT = `${ROOT}bench/out/publish-speed.json`;

const { values: flags } = parseArgs({
  options: {
    "skip-tools": { type: "boolean" },
    "speed-only": { type: "boolean" },
    "skip-experiments": { type: "boolean" },
    sizes: { type: "string" },
    "experiment-sizes": { type: "string", default: "64K,256K,1M" },
  },
});
const sizes = flags.sizes ? _parseSizes(flags.sizes) : ALL_SIZES;
const experimentSizes = _parseSizes(flags["experiment-sizes"]!);

// --- the chunker -----------------------------------------------------------------------

function _zstd(data: Uint8Array, level = 3): Uint8Array {
  return zstdCompressSync(data, { params: { [constants.ZSTD_c_compressionLevel]: level } });
}

/** Size of a chunk object: codec byte + zstd-3 payload, or raw when that is smaller. */
function _objectBytes(plain: Uint8Array): number {
  return 1 + Math.min(plain.length, _zstd(plain).length);
}

function _isZero(data: Uint8Array): boolean {
  const words = new BigUint64Array(data.buffer, data.byteOffset, data.length >>> 3);
  for (let i = 0; i < words.length; i++) if (words[i] !== 0n) return false;
  return true;
}

interface _SizeState {
  chunkBytes: number;
  /** Hash (hex) of every non-zero chunk of v1, unique. */
  v1: Set<string>;
  v1StoredBytes: number;
  v1Chunks: number;
  /** v2 chunks not in v1 (unique): their hashes, object sizes and, if kept, plaintexts. */
  v2New: Map<string, number>;
  v2NewPlain: Uint8Array[];
  v2NewBytes: number;
  /** For the per-chunk delta experiment: v1's chunk at the same index, or null. */
  v2NewBase: Array<Uint8Array | null>;
  v2ZeroChunks: number;
  v2Chunks: number;
  /** v2's disk index as vat lays it out: 32-byte header, then 32 bytes per chunk (zero
   * for an all-zero chunk). */
  v2Index: Uint8Array;
}

/** Streams an image through every chunk size at once, optionally zeroing `ranges` first. */
async function _chunkImage(
  path: string,
  ranges: ByteRange[] | null,
  states: _SizeState[],
  which: "v1" | "v2",
  keepPlain: Set<number>,
  v1ForBase: string | null,
): Promise<{ staleBytes: number }> {
  using file = await Deno.open(path);
  using base = v1ForBase ? await Deno.open(v1ForBase) : null;
  const size = (await file.stat()).size;
  const buf = new Uint8Array(READ_BYTES);
  const baseBuf = new Uint8Array(READ_BYTES);
  let staleBytes = 0;
  for (let off = 0; off < size; off += READ_BYTES) {
    const len = Math.min(READ_BYTES, size - off);
    await _readFull(file, buf.subarray(0, len));
    const data = buf.subarray(0, len);
    if (ranges) staleBytes += _staleIn(data, off, ranges);
    if (ranges) zeroRanges(data, off, ranges);
    if (base) await _readFull(base, baseBuf.subarray(0, len));
    for (const st of states) {
      for (let at = 0; at < len; at += st.chunkBytes) {
        const chunk = data.subarray(at, Math.min(at + st.chunkBytes, len));
        const index = (off + at) / st.chunkBytes;
        if (_isZero(chunk)) {
          if (which === "v2") {
            st.v2ZeroChunks++;
            st.v2Chunks++;
          }
          continue;
        }
        const digest = createHash("sha256").update(chunk).digest();
        const id = digest.toString("hex");
        if (which === "v2") st.v2Index.set(digest, 32 + 32 * index);
        if (which === "v1") {
          if (!st.v1.has(id)) {
            st.v1.add(id);
            st.v1StoredBytes += _objectBytes(chunk);
            st.v1Chunks++;
          }
          continue;
        }
        st.v2Chunks++;
        if (st.v1.has(id) || st.v2New.has(id)) continue;
        const bytes = _objectBytes(chunk);
        st.v2New.set(id, bytes);
        st.v2NewBytes += bytes;
        if (keepPlain.has(st.chunkBytes)) {
          st.v2NewPlain.push(chunk.slice());
          const b = baseBuf.subarray(at, at + chunk.length);
          st.v2NewBase.push(base && !_isZero(b) ? b.slice() : null);
        }
      }
    }
  }
  return { staleBytes };
}

/** Non-zero bytes (counted in 4 KiB blocks) that `ranges` would zero in `data`. */
function _staleIn(data: Uint8Array, offset: number, ranges: ByteRange[]): number {
  const copy = data.slice();
  zeroRanges(copy, offset, ranges);
  let stale = 0;
  for (let at = 0; at < data.length; at += 4096) {
    const a = copy.subarray(at, at + 4096);
    const b = data.subarray(at, at + 4096);
    if (_isZero(a) && !_isZero(b)) stale += b.length;
  }
  return stale;
}

async function _readFull(file: Deno.FsFile, into: Uint8Array): Promise<void> {
  let filled = 0;
  while (filled < into.length) {
    const n = await file.read(into.subarray(filled));
    if (n === null) throw new Error("image ended early");
    filled += n;
  }
}

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

/** vat publish of v1, then v2, into a fresh repository; null when it does not work yet. */
async function _vatPublish(v1: string, v2: string, chunk: string) {
  const dir = await _fresh(`${WORK}/vat-${chunk}`);
  const vat = (args: string[]) => _timed("deno", ["run", "-A", `${ROOT}main.ts`, ...args], ROOT);
  try {
    await vat(["repo", "init", `${dir}/repo`, "--kind", "appliance", "--chunk-size", chunk]);
    await vat(["keygen", "--out", `${dir}/key`]);
    const first = await vat([
      "publish",
      `${dir}/repo`,
      "--image",
      v1,
      "--key",
      `${dir}/key`,
      "--json",
    ]);
    const storeV1 = await _treeBytes(`${dir}/repo`);
    const second = await vat([
      "publish",
      `${dir}/repo`,
      "--image",
      v2,
      "--key",
      `${dir}/key`,
      "--json",
    ]);
    const storeV2 = await _treeBytes(`${dir}/repo`);
    return {
      v1: { ...first, result: JSON.parse(first.stdout) },
      v2: { ...second, result: JSON.parse(second.stdout) },
      repoV1Bytes: storeV1,
      repoGrowthBytes: storeV2 - storeV1,
    };
  } catch (err) {
    return { unavailable: `vat publish not available: ${(err as Error).message.slice(0, 400)}` };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

// --- experiments on the new chunks -----------------------------------------------------

/** zstd CLI over many small files: sum of object sizes (codec byte + min(raw, zstd)). */
async function _cliCompress(dir: string, files: Uint8Array[], extra: string[]): Promise<number> {
  const inDir = await _fresh(`${dir}/in`);
  const outDir = await _fresh(`${dir}/out`);
  const names: string[] = [];
  for (let i = 0; i < files.length; i++) {
    names.push(`${i}`);
    await Deno.writeFile(`${inDir}/${i}`, files[i]);
  }
  await _timed("zstd", [
    "-3",
    "--no-check",
    "-q",
    "-f",
    ...extra,
    "--output-dir-flat",
    outDir,
    "-r",
    inDir,
  ]);
  let sum = 0;
  for (let i = 0; i < files.length; i++) {
    sum += 1 + Math.min(files[i].length, (await Deno.stat(`${outDir}/${i}.zst`)).size);
  }
  return sum;
}

async function _dictionaryExperiment(st: _SizeState, v1Samples: Uint8Array[]) {
  const dir = await _fresh(`${WORK}/dict-${st.chunkBytes}`);
  try {
    const train = await _fresh(`${dir}/train`);
    for (let i = 0; i < v1Samples.length; i++) {
      await Deno.writeFile(`${train}/${i}`, v1Samples[i]);
    }
    const plain = await _cliCompress(dir, st.v2NewPlain, []);
    const out: Record<string, number> = { cliNoDictionary: plain };
    for (const maxdict of [112640, 1024 * 1024]) {
      await _timed("zstd", [
        "--train",
        "-q",
        "-f",
        `--maxdict=${maxdict}`,
        "-r",
        train,
        "-o",
        `${dir}/dict`,
      ]);
      const dictBytes = (await Deno.stat(`${dir}/dict`)).size;
      const withDict = await _cliCompress(dir, st.v2NewPlain, ["-D", `${dir}/dict`]);
      out[`dict${maxdict}`] = withDict;
      out[`dict${maxdict}Size`] = dictBytes;
    }
    return out;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Each new chunk compressed on its own at a higher zstd level, and how fast. */
function _levelExperiment(st: _SizeState) {
  const out: Record<string, number> = {};
  let plainBytes = 0;
  for (const p of st.v2NewPlain) plainBytes += p.length;
  for (const level of [3, 9, 19]) {
    const t0 = performance.now();
    let sum = 0;
    for (const p of st.v2NewPlain) sum += 1 + Math.min(p.length, _zstd(p, level).length);
    out[`zstd${level}`] = sum;
    out[`zstd${level}MBps`] = plainBytes / 1e6 / ((performance.now() - t0) / 1000);
  }
  return out;
}

/** New chunks grouped into packs of `packBytes` (disk order), each compressed whole. */
function _packExperiment(st: _SizeState) {
  const out: Record<string, number> = {};
  for (const packBytes of [1 * MiB, 4 * MiB, 16 * MiB]) {
    for (const level of [3, 19]) {
      let sum = 0;
      let packs = 0;
      for (let i = 0; i < st.v2NewPlain.length;) {
        const parts: Uint8Array[] = [];
        let len = 0;
        while (
          i < st.v2NewPlain.length && (len === 0 || len + st.v2NewPlain[i].length <= packBytes)
        ) {
          parts.push(st.v2NewPlain[i]);
          len += st.v2NewPlain[i].length;
          i++;
        }
        const joined = new Uint8Array(len);
        let at = 0;
        for (const p of parts) {
          joined.set(p, at);
          at += p.length;
        }
        sum += _zstd(joined, level).length + 8 + 16 * parts.length; // + pack header and table
        packs++;
      }
      out[`pack${packBytes / MiB}MiB_zstd${level}`] = sum;
      out[`pack${packBytes / MiB}MiB_count`] = packs;
    }
  }
  return out;
}

/** Each new chunk compressed with v1's chunk at the same disk offset as its dictionary. */
async function _deltaExperiment(st: _SizeState) {
  const dir = await _fresh(`${WORK}/delta-${st.chunkBytes}`);
  try {
    let sum = 0;
    let withBase = 0;
    for (let i = 0; i < st.v2NewPlain.length; i++) {
      const base = st.v2NewBase[i];
      if (!base) {
        sum += st.v2New.get(createHash("sha256").update(st.v2NewPlain[i]).digest("hex"))!;
        continue;
      }
      withBase++;
      await Deno.writeFile(`${dir}/base`, base);
      await Deno.writeFile(`${dir}/new`, st.v2NewPlain[i]);
      await _timed("zstd", [
        "-3",
        "--no-check",
        "-q",
        "-f",
        `--patch-from=${dir}/base`,
        `${dir}/new`,
        "-o",
        `${dir}/out`,
      ]);
      sum += 1 + Math.min(st.v2NewPlain[i].length, (await Deno.stat(`${dir}/out`)).size);
    }
    return { bytes: sum, chunksWithBase: withBase };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

// --- main ------------------------------------------------------------------------------

function _parseSizes(s: string): number[] {
  return s.split(",").map((t) => {
    const m = t.trim().match(/^(\d+)([KM])$/i);
    if (!m) throw new Error(`bad size ${t}: use e.g. 64K or 1M`);
    return Number(m[1]) * (m[2].toUpperCase() === "K" ? KiB : MiB);
  });
}

function _label(bytes: number): string {
  return bytes >= MiB ? `${bytes / MiB}M` : `${bytes / KiB}K`;
}

const mb = (n: number) => (n / 1e6).toFixed(1);

function _table(rows: (string | number)[][]): string {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => String(r[c]).length)));
  return rows.map((r, i) =>
    r.map((cell, c) => c === 0 ? String(cell).padEnd(widths[c]) : String(cell).padStart(widths[c]))
      .join("  ") + (i === 0 ? "\n" + widths.map((w) => "-".repeat(w)).join("  ") : "")
  ).join("\n");
}

function _log(msg: string) {
  console.error(`[publish bench] ${msg}`);
}

async function main() {
  const { v1, v2 } = await ensureApplianceImages();
  await Deno.mkdir(WORK, { recursive: true });
  const imageBytes = (await Deno.stat(v1)).size;
  const results: Record<string, unknown> = { images: { v1, v2, imageBytes } };
  if (flags["speed-only"]) {
    _log("casync make, qemu-img convert, vat publish");
    const store = await _fresh(`${WORK}/casync-speed`);
    const make = await _timed("casync", [
      "make",
      `--store=${store}/store`,
      `${store}/v1.caibx`,
      v1,
    ]);
    results.tools = {
      casync_asis: { make, v1StoreBytes: await _treeBytes(`${store}/store`) },
      qemuImg: await _qemuImg(v1),
    };
    await Deno.remove(store, { recursive: true });
    results.vatPublish = await _vatPublish(v1, v2, "64K");
    await Deno.mkdir(`${ROOT}bench/out`, { recursive: true });
    await Deno.writeTextFile(SPEED_OUT, JSON.stringify(results, null, 2) + "\n");
    _report(results);
    return;
  }

  _log("finding ext4-unused blocks");
  const unused1 = await findUnusedRangesInFile(v1);
  const unused2 = await findUnusedRangesInFile(v2);
  results.unused = { v1Bytes: totalLength(unused1), v2Bytes: totalLength(unused2) };

  const chunking: Record<string, unknown>[] = [];
  const kept = new Map<number, _SizeState>();
  let stale = { v1: 0, v2: 0 };
  for (const zero of [false, true]) {
    const states: _SizeState[] = sizes.map((chunkBytes) => ({
      chunkBytes,
      v1: new Set(),
      v1StoredBytes: 0,
      v1Chunks: 0,
      v2New: new Map(),
      v2NewPlain: [],
      v2NewBytes: 0,
      v2NewBase: [],
      v2ZeroChunks: 0,
      v2Chunks: 0,
      v2Index: new Uint8Array(32 + 32 * Math.ceil(imageBytes / chunkBytes)),
    }));
    const keep = new Set(zero && !flags["skip-experiments"] ? experimentSizes : []);
    const t0 = performance.now();
    _log(`chunking v1 (${zero ? "unused blocks zeroed" : "as is"})`);
    const s1 = await _chunkImage(v1, zero ? unused1 : null, states, "v1", keep, null);
    _log(`chunking v2 (${zero ? "unused blocks zeroed" : "as is"})`);
    const s2 = await _chunkImage(
      v2,
      zero ? unused2 : null,
      states,
      "v2",
      keep,
      keep.size ? `${WORK}/v1z.raw` : null,
    );
    _log(`  ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    if (zero) stale = { v1: s1.staleBytes, v2: s2.staleBytes };
    for (const st of states) {
      chunking.push({
        chunkBytes: st.chunkBytes,
        zeroUnused: zero,
        v1StoredBytes: st.v1StoredBytes,
        v1Chunks: st.v1Chunks,
        v2NewChunks: st.v2New.size,
        v2NewChunkBytes: st.v2NewBytes,
        v2IndexBytes: _objectBytes(st.v2Index),
        v2ZeroChunks: st.v2ZeroChunks,
        v2Chunks: st.v2Chunks,
      });
      if (keep.has(st.chunkBytes)) kept.set(st.chunkBytes, st);
    }
    if (!zero) await _writeZeroed(v1, unused1, `${WORK}/v1z.raw`);
  }
  await _writeZeroed(v2, unused2, `${WORK}/v2z.raw`);
  results.staleBytesInUnused = stale;
  results.chunking = chunking;

  if (!flags["skip-tools"]) {
    const tools: Record<string, unknown> = {};
    for (
      const [tag, a, b] of [["asis", v1, v2], ["zeroed", `${WORK}/v1z.raw`, `${WORK}/v2z.raw`]]
    ) {
      _log(`rsync (${tag})`);
      tools[`rsync_${tag}`] = await _rsync(a, b, tag);
      _log(`casync (${tag})`);
      tools[`casync_${tag}`] = await _casync(a, b, tag);
      _log(`zstd -19 --long=31 --patch-from (${tag}); takes minutes`);
      tools[`zstdPatch_${tag}`] = await _zstdPatch(a, b, tag);
    }
    _log("qemu-img convert -c -O qcow2");
    tools.qemuImg = await _qemuImg(v1);
    results.tools = tools;
  }

  _log("vat publish");
  results.vatPublish = await _vatPublish(v1, v2, "64K");

  if (!flags["skip-experiments"]) {
    const experiments: Record<string, unknown> = {};
    for (const [chunkBytes, st] of kept) {
      _log(`experiments at ${_label(chunkBytes)}: dictionary, packs, per-chunk delta`);
      const samples = await _v1Samples(`${WORK}/v1z.raw`, chunkBytes, 2000);
      experiments[_label(chunkBytes)] = {
        newChunks: st.v2NewPlain.length,
        newChunkBytes: st.v2NewBytes,
        dictionary: await _dictionaryExperiment(st, samples),
        levels: _levelExperiment(st),
        packs: _packExperiment(st),
        perChunkDelta: await _deltaExperiment(st),
      };
    }
    results.experiments = experiments;
  }

  await Deno.mkdir(`${ROOT}bench/out`, { recursive: true });
  await Deno.writeTextFile(OUT, JSON.stringify(results, null, 2) + "\n");
  _report(results);
  console.log(`\nraw results: ${OUT}`);
}

/** Up to `count` non-zero chunks of `path`, evenly spread: training samples. */
async function _v1Samples(path: string, chunkBytes: number, count: number): Promise<Uint8Array[]> {
  using file = await Deno.open(path);
  const size = (await file.stat()).size;
  const all: number[] = [];
  const buf = new Uint8Array(chunkBytes);
  for (let off = 0; off < size; off += chunkBytes) {
    await file.seek(off, Deno.SeekMode.Start);
    await _readFull(file, buf);
    if (!_isZero(buf)) all.push(off);
  }
  const step = Math.max(1, all.length / count);
  const out: Uint8Array[] = [];
  for (let i = 0; i < all.length; i += step) {
    await file.seek(all[Math.floor(i)], Deno.SeekMode.Start);
    const b = new Uint8Array(chunkBytes);
    await _readFull(file, b);
    out.push(b);
  }
  return out;
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

// deno-lint-ignore no-explicit-any
function _report(r: any) {
  const tools = r.tools;
  const rsync = tools?.rsync_asis?.sentBytes as number | undefined;
  if (r.chunking) _reportChunking(r, rsync);
  if (tools?.rsync_asis) _reportTools(tools, rsync!);
  _reportSpeed(r);
  if (r.experiments) _reportExperiments(r.experiments);
}

// deno-lint-ignore no-explicit-any
function _reportChunking(r: any, rsync: number | undefined) {
  console.log(
    `\nImages: 1 GiB ext4; ext4-unused: v1 ${mb(r.unused.v1Bytes)} MB, ` +
      `v2 ${mb(r.unused.v2Bytes)} MB; stale (non-zero) data in unused blocks: ` +
      `v1 ${mb(r.staleBytesInUnused.v1)} MB, v2 ${mb(r.staleBytesInUnused.v2)} MB`,
  );
  console.log("\nUpdate v1 -> v2 with vat's fixed chunks (MB = 10^6 bytes)\n");
  const rows: (string | number)[][] = [[
    "chunk",
    "unused",
    "v1 stored",
    "v1 chunks",
    "new chunks",
    "new MB",
    "index MB",
    "update MB",
    rsync ? "vs rsync" : "",
  ]];
  for (const c of r.chunking) {
    const update = c.v2NewChunkBytes + c.v2IndexBytes;
    rows.push([
      _label(c.chunkBytes),
      c.zeroUnused ? "zeroed" : "as is",
      mb(c.v1StoredBytes),
      c.v1Chunks,
      c.v2NewChunks,
      mb(c.v2NewChunkBytes),
      mb(c.v2IndexBytes),
      mb(update),
      rsync ? (update / rsync).toFixed(2) : "",
    ]);
  }
  console.log(_table(rows));
}

// deno-lint-ignore no-explicit-any
function _reportTools(tools: any, rsync: number) {
  console.log("\nOther tools (update v1 -> v2)\n");
  const t: (string | number)[][] = [["tool", "as is MB", "zeroed MB", "as is vs rsync"]];
  const add = (name: string, a: number, z: number) =>
    t.push([name, mb(a), mb(z), rsync ? (a / rsync).toFixed(2) : ""]);
  add(
    "rsync --no-whole-file -z (bytes sent)",
    tools.rsync_asis.sentBytes,
    tools.rsync_zeroed.sentBytes,
  );
  add("casync store growth", tools.casync_asis.growthBytes, tools.casync_zeroed.growthBytes);
  add("casync v2 .caibx", tools.casync_asis.indexBytes, tools.casync_zeroed.indexBytes);
  add(
    "zstd -19 --long=31 --patch-from",
    tools.zstdPatch_asis.bytes,
    tools.zstdPatch_zeroed.bytes,
  );
  console.log(_table(t));
}

// deno-lint-ignore no-explicit-any
function _reportSpeed(r: any) {
  const tools = r.tools;
  console.log("\nPublish speed (v1.raw, 1 GiB virtual disk)\n");
  const s: (string | number)[][] = [[
    "tool",
    "wall s",
    "user s",
    "sys s",
    "MB/s",
    "cores",
    "stored MB",
  ]];
  // deno-lint-ignore no-explicit-any
  const addSpeed = (name: string, x: any, stored: number) =>
    s.push([
      name,
      x.wallS.toFixed(1),
      x.userS.toFixed(1),
      x.sysS.toFixed(1),
      (r.images.imageBytes / 1e6 / x.wallS).toFixed(0),
      ((x.userS + x.sysS) / x.wallS).toFixed(2),
      mb(stored),
    ]);
  if (tools) {
    addSpeed("casync make", tools.casync_asis.make, tools.casync_asis.v1StoreBytes);
    addSpeed("qemu-img convert -c -O qcow2", tools.qemuImg, tools.qemuImg.bytes);
  }
  if (r.vatPublish.unavailable) {
    console.log(_table(s));
    console.log(`\n${r.vatPublish.unavailable}`);
  } else {
    addSpeed("vat publish (64K)", r.vatPublish.v1, r.vatPublish.repoV1Bytes);
    addSpeed("vat publish v2 (update)", r.vatPublish.v2, r.vatPublish.repoGrowthBytes);
    console.log(_table(s));
    const own = (x: { result: { elapsedMs: number } }) =>
      `${(x.result.elapsedMs / 1000).toFixed(1)} s, ` +
      `${(r.images.imageBytes / 1e6 / (x.result.elapsedMs / 1000)).toFixed(0)} MB/s`;
    console.log(
      `\nvat's own timing (without deno start-up): v1 ${own(r.vatPublish.v1)}; ` +
        `v2 ${own(r.vatPublish.v2)}`,
    );
  }
}

// deno-lint-ignore no-explicit-any
function _reportExperiments(experiments: any) {
  console.log("\nExperiments on v2's new chunks (unused blocks zeroed)\n");
  const e: (string | number)[][] = [["chunk", "variant", "MB", "vs per-chunk zstd-3"]];
  // deno-lint-ignore no-explicit-any
  for (const [label, x] of Object.entries<any>(experiments)) {
    const baseline = x.newChunkBytes;
    const add = (v: string, n: number) => e.push([label, v, mb(n), (n / baseline).toFixed(3)]);
    add("per-chunk zstd-3 (vat today)", baseline);
    add("zstd CLI -3, no dictionary", x.dictionary.cliNoDictionary);
    add(`dictionary 110 KB (trained on v1)`, x.dictionary.dict112640);
    add(`dictionary 1 MB (trained on v1)`, x.dictionary.dict1048576);
    for (const level of [9, 19]) {
      add(
        `per-chunk zstd-${level} (compresses at ${
          x.levels[`zstd${level}MBps`].toFixed(0)
        } MB/s; zstd-3: ${x.levels.zstd3MBps.toFixed(0)})`,
        x.levels[`zstd${level}`],
      );
    }
    for (const [k, v] of Object.entries<number>(x.packs)) if (!k.endsWith("count")) add(k, v);
    add(
      `per-chunk delta vs v1 same offset (${x.perChunkDelta.chunksWithBase} of ${x.newChunks})`,
      x.perChunkDelta.bytes,
    );
  }
  console.log(_table(e));
}

if (import.meta.main) await main();
