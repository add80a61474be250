/**
 * Where `vat nbd` spends its CPU: publishes the benchmark's test image, serves it
 * with the inspector on, and takes one V8 CPU profile per load: the first full read
 * (filling the cache from the repository directory), then on the warm cache 128 KiB
 * sequential at QD16 and 4 KiB scattered at QD16. Prints the functions with the most
 * self and total time. The profiles are also written to
 * bench/out/nbd-*.cpuprofile (open them in Chrome DevTools).
 *
 * Run: `deno run -A bench/nbd/profile.ts [--image-mib 256] [--vat MAIN.TS]`
 *
 * @module
 */

import { parseArgs } from "node:util";
import { inspectorUrl, startCpuProfile, summarize } from "./cpu_profile.ts";
import { nbdUri, qemuImgBench, type QemuImgBenchOptions } from "./load.ts";
import { stopAllServers } from "./processes.ts";
import { ensureTestImage } from "./test_image.ts";
import { VatProcess } from "./vat_process.ts";

const MiB = 1024 * 1024;
const _ROOT = new URL("../../", import.meta.url).pathname;
const _TOP = 25;

async function main(): Promise<number> {
  const { values } = parseArgs({
    args: Deno.args,
    options: { "image-mib": { type: "string", default: "256" }, vat: { type: "string" } },
  });
  const imageBytes = Number(values["image-mib"]) * MiB;
  const cacheDir = `${_ROOT}.cache/bench/nbd`;
  await Deno.mkdir(cacheDir, { recursive: true });
  const image = await ensureTestImage(`${cacheDir}/test-${imageBytes / MiB}m.raw`, imageBytes);
  const main = values.vat ? await Deno.realPath(values.vat) : `${_ROOT}main.ts`;
  const vat = new VatProcess(main, ["--inspect=127.0.0.1:0"]);
  const work = await Deno.makeTempDir({ dir: cacheDir, prefix: "profile-" });
  try {
    const published = await vat.publish(work, image);
    const socket = `${work}/vat.sock`;
    const server = await vat.startNbd(published.repo, socket, `${work}/cache`, 2 * imageBytes);
    const url = inspectorUrl(server.output());
    if (!url) throw new Error(`vat nbd printed no inspector address:\n${server.output()}`);
    const seq: QemuImgBenchOptions = {
      count: imageBytes / (128 * 1024),
      depth: 16,
      requestBytes: 128 * 1024,
    };
    const loads: [string, QemuImgBenchOptions][] = [
      ["fill", seq],
      ["seq128k", { ...seq, count: 3 * seq.count }],
      ["scatter4k", { count: 30_000, depth: 16, requestBytes: 4096, stepBytes: 1943 * 4096 }],
    ];
    await Deno.mkdir(`${_ROOT}bench/out`, { recursive: true });
    for (const [name, load] of loads) {
      const profiler = await startCpuProfile(url);
      const seconds = await qemuImgBench(nbdUri(socket), load);
      const profile = await profiler.stop();
      profiler.close();
      const path = `${_ROOT}bench/out/nbd-${name}.cpuprofile`;
      await Deno.writeTextFile(path, JSON.stringify(profile));
      const rate = name !== "scatter4k"
        ? `${(load.count * load.requestBytes / seconds / 1e6).toFixed(0)} MB/s`
        : `${(load.count / seconds).toFixed(0)} IOPS`;
      console.log(`\n== ${name}: ${rate} (under the profiler); ${path}`);
      const rows = summarize(profile);
      console.log("  self%  total%  function");
      for (const r of rows.slice(0, _TOP)) {
        console.log(
          `  ${(r.self * 100).toFixed(1).padStart(5)}  ${
            (r.total * 100).toFixed(1).padStart(6)
          }  ${r.name}`,
        );
      }
      console.log("  -- by total time --");
      for (const r of [...rows].sort((a, b) => b.total - a.total).slice(0, _TOP)) {
        console.log(
          `  ${(r.self * 100).toFixed(1).padStart(5)}  ${
            (r.total * 100).toFixed(1).padStart(6)
          }  ${r.name}`,
        );
      }
    }
    await server.stop();
    return 0;
  } finally {
    await stopAllServers();
    await Deno.remove(work, { recursive: true });
  }
}

if (import.meta.main) Deno.exit(await main());
