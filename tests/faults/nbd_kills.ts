/**
 * Fault areas on the disk path, with real NBD clients against `vat nbd`:
 *
 * - "cache": `vat nbd` filling a chunk cache far smaller than the disk (so it evicts
 *   and reuses slots all the time) while `nbdcopy` reads the whole disk, SIGKILLed at
 *   random; after a restart on the same cache every byte served equals the published
 *   image, and the cache opens within its budget.
 * - "overlay": `vat nbd --overlay PATH --keep-overlay` written by `qemu-io` (writes of
 *   random sizes and places, a flush every few), SIGKILLed at random; after a restart
 *   every write acknowledged before a completed flush reads back exactly, bytes no
 *   write touched are unchanged, and any other byte holds either its old value or that
 *   of an unflushed write.
 *
 * @module
 */

import { ChunkCache } from "../../vat/cache/chunk_cache.ts";
import { fillRandom } from "../helpers/images.ts";
import {
  type FaultArea,
  firstDifference,
  RunLength,
  type VatChild,
} from "../helpers/fault_kill.ts";

const KiB = 1024;
const MiB = 1024 * KiB;

/** A published disk to serve: the repository and the image it came from. */
interface Published {
  repo: string;
  image: string;
}

async function publishImage(area: FaultArea, sizeBytes: number): Promise<Published> {
  const repo = `${area.dir}/apps`;
  const image = `${area.dir}/image.raw`;
  const data = new Uint8Array(sizeBytes);
  fillRandom(data, area.int(1, 1 << 30));
  // A few all-zero chunks and a repeated one, as real disks have.
  data.fill(0, 3 * 64 * KiB, 5 * 64 * KiB);
  data.copyWithin(9 * 64 * KiB, 8 * 64 * KiB, 9 * 64 * KiB);
  await Deno.writeFile(image, data);
  await area.ok(["keygen", "--out", `${area.dir}/key`]);
  await area.ok(["repo", "init", repo, "--kind", "appliance"]);
  await area.ok(["publish", repo, "--image", image, "--key", `${area.dir}/key`, "--exact"]);
  return { repo, image };
}

function nbdUri(socket: string): string {
  return `nbd+unix:///?socket=${socket}`;
}

/** Starts `vat nbd` with `extra` flags and waits until it serves. */
function serve(area: FaultArea, published: Published, extra: string[]): Promise<VatChild> {
  return area.start(
    ["nbd", published.repo, "--socket", `${area.dir}/nbd.sock`, "--retry-for", "5", ...extra],
    /serving the/,
  );
}

/** Copies the whole export to `out` with nbdcopy; whether it succeeded. */
async function nbdcopy(area: FaultArea, out: string): Promise<{ ok: boolean; stderr: string }> {
  const result = await new Deno.Command("nbdcopy", {
    args: [nbdUri(`${area.dir}/nbd.sock`), out],
    stdout: "null",
    stderr: "piped",
  }).output();
  return { ok: result.success, stderr: new TextDecoder().decode(result.stderr) };
}

/** The "cache" area. */
export async function cacheFillKills(area: FaultArea, kills: number): Promise<void> {
  const published = await publishImage(area, 4 * MiB);
  const cacheDir = `${area.dir}/cache`;
  const budgetBytes = 768 * KiB;
  const cacheFlags = ["--cache", cacheDir, "--cache-size", String(budgetBytes)];
  const out = `${area.dir}/out.raw`;

  /** Reads the whole disk through the running server and compares it with the image. */
  const readBack = async (why: string) => {
    const started = performance.now();
    await Deno.remove(out).catch(() => {});
    const copy = await nbdcopy(area, out);
    const ms = performance.now() - started;
    area.check(copy.ok, "every read served", `${why}: nbdcopy failed: ${copy.stderr}`);
    const diff = await firstDifference(published.image, out);
    area.check(diff === null, "no chunk served is wrong", `${why}: byte ${diff} differs`);
    return ms;
  };

  // Each server first reads the whole disk back (checking what the previous kill left
  // in the cache), then is killed somewhere in a second whole-disk read.
  let server = await serve(area, published, cacheFlags);
  const length = new RunLength(await readBack("a first fill"));
  while (area.kills < kills) {
    const copying = nbdcopy(area, `${area.dir}/killed.raw`);
    await area.killAfter(server, area.between(0, 0.9) * length.typicalMs);
    const copy = await copying;
    area.killedAt(copy.ok ? "after the read" : "mid-read");
    if (copy.ok) {
      const diff = await firstDifference(published.image, `${area.dir}/killed.raw`);
      area.check(diff === null, "no chunk served is wrong", `before kill: byte ${diff} differs`);
    }
    // The cache as the killed process left it opens within its budget.
    const cache = await ChunkCache.open({ dir: cacheDir, budgetBytes });
    const used = cache.stats().usedBytes;
    await cache.close();
    area.check(used <= budgetBytes, "cache within budget", `${used} bytes used`);
    server = await serve(area, published, cacheFlags);
    length.observe(await readBack(`after kill ${area.kills}`));
  }
  await server.stop();
}

/** One write of the overlay area: `pattern` over [offset, offset + length). */
interface Write {
  offset: number;
  length: number;
  pattern: number;
}

/** The "overlay" area. */
export async function overlayKills(area: FaultArea, kills: number): Promise<void> {
  const sizeBytes = 4 * MiB;
  const published = await publishImage(area, sizeBytes);
  const overlay = `${area.dir}/disk.overlay`;
  const flags = [
    "--overlay",
    overlay,
    "--keep-overlay",
    "--cache",
    `${area.dir}/cache`,
    "--cache-size",
    "1M",
  ];
  const out = `${area.dir}/out.raw`;
  // What the disk holds before each round: the image, then each round's read-back.
  let baseline = await Deno.readFile(published.image);
  const length = new RunLength(400);

  // Each server serves a round of writes and is killed in it; the next one first
  // reads the whole disk back, then serves the next round.
  let server = await serve(area, published, flags);
  for (let round = 0; area.kills < kills; round++) {
    if (round >= kills * 3) area.fail(`only ${area.kills} kills in ${round} rounds`);
    // A round: writes (512-byte aligned, 512 B to 192 KiB, often across chunks), a
    // flush after every few, each flush followed by a read at an offset of its own
    // that marks in qemu-io's output that the flush completed.
    const commands: string[] = [];
    const steps: ({ write: Write } | { flush: number })[] = [];
    for (let i = 0, flushes = 0; i < 48; i++) {
      const length = 512 * area.int(1, 385);
      const offset = 512 * area.int(0, (sizeBytes - length) / 512 + 1);
      const write = { offset, length, pattern: area.int(1, 256) };
      steps.push({ write });
      commands.push("-c", `write -P ${write.pattern} ${offset} ${length}`);
      if (area.random() < 0.25) {
        steps.push({ flush: flushes });
        commands.push("-c", "flush", "-c", `read ${flushes * 512} 512`);
        flushes++;
      }
    }
    const started = performance.now();
    const client = new Deno.Command("qemu-io", {
      args: ["-f", "raw", nbdUri(`${area.dir}/nbd.sock`), ...commands],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const killed = await area.killAfter(server, area.between(0, 1.1) * length.typicalMs);
    const result = await client;
    if (!killed) length.observe(performance.now() - started);
    const said = new TextDecoder().decode(result.stdout) + new TextDecoder().decode(result.stderr);

    // What qemu-io acknowledged, in order: "wrote L/L bytes at offset O" per write,
    // "read 512/512 bytes at offset F*512" after flush F completed.
    const acked = new Set<string>();
    for (const m of said.matchAll(/^(wrote|read) (\d+)\/\d+ bytes at offset (\d+)$/gm)) {
      acked.add(`${m[1]} ${m[3]} ${m[2]}`);
    }
    const flushFailed = /flush failed/.test(said);
    // Steps up to the last completed flush are durable; the writes after it (and the
    // one in flight at the kill) may or may not have landed.
    let durableUpTo = -1;
    let firstUnacked = steps.length;
    for (let s = 0; s < steps.length; s++) {
      const step = steps[s];
      if ("write" in step) {
        if (!acked.has(`wrote ${step.write.offset} ${step.write.length}`)) {
          firstUnacked = Math.min(firstUnacked, s);
        }
      } else if (!flushFailed && s < firstUnacked && acked.has(`read ${step.flush * 512} 512`)) {
        durableUpTo = s;
      }
    }
    const model = baseline.slice();
    const maybe: Write[] = [];
    for (let s = 0; s < steps.length && s <= firstUnacked; s++) {
      const step = steps[s];
      if (!("write" in step)) continue;
      const w = step.write;
      if (s < durableUpTo) model.fill(w.pattern, w.offset, w.offset + w.length);
      else maybe.push(w);
    }

    // Restart on the same overlay and read the whole disk back.
    server = await serve(area, published, flags);
    await Deno.remove(out).catch(() => {});
    const copy = await nbdcopy(area, out);
    area.check(copy.ok, "restart serves the overlay", `nbdcopy failed: ${copy.stderr}`);
    const got = await Deno.readFile(out);
    for (let b = 0; b < sizeBytes; b++) {
      if (got[b] === model[b]) continue;
      const covering = maybe.filter((w) => b >= w.offset && b < w.offset + w.length);
      if (covering.some((w) => got[b] === w.pattern)) continue;
      const from = covering[0];
      const before = steps.slice(0, durableUpTo + 1).filter((s) => "write" in s).length;
      area.fail(
        `round ${round}: byte ${b} reads ${got[b]}, expected ${model[b]}` +
          (from ? ` or ${from.pattern} (unflushed write at ${from.offset}+${from.length})` : "") +
          `; ${before} writes were flushed, ${maybe.length} were not` +
          `\nqemu-io said:\n${said.slice(-2000)}`,
      );
    }
    for (let s = 0; s < durableUpTo; s++) {
      if ("write" in steps[s]) area.checked("flushed writes read back");
    }
    area.checked("untouched bytes unchanged");
    baseline = got;
  }
  await server.stop();
}
