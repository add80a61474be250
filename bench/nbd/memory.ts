/**
 * Where `vat nbd`'s memory goes: its RSS (VmRSS, VmHWM) while one full sequential read of
 * a published disk fills an empty cache, with Deno's default V8 heap settings and with
 * the V8 flags given (`--v8 FLAGS`, comma-separated like Deno's `--v8-flags`), one
 * server per setting on the same repository.
 *
 * Run: `deno run -A bench/nbd/memory.ts [--size-mib 1024] [--v8 --max-old-space-size=64]
 * [--v8 ...]`. Results: printed.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { nbdUri, qemuImgBench } from "./load.ts";
import { stopAllServers } from "./processes.ts";
import { ensureTestImage } from "./test_image.ts";
import { VatProcess } from "./vat_process.ts";
import { ensureBenchPeers } from "../peers.ts";

const MiB = 1024 * 1024;
const _ROOT = new URL("../../", import.meta.url).pathname;
const _CACHE_DIR = `${_ROOT}.cache/bench/nbd`;

const { values } = parseArgs({
  options: {
    "size-mib": { type: "string", default: "1024" },
    v8: { type: "string", multiple: true, default: [] },
  },
});
const sizeBytes = Number(values["size-mib"]) * MiB;

async function main(): Promise<void> {
  await ensureBenchPeers(["qemu-img"]);
  await Deno.mkdir(_CACHE_DIR, { recursive: true });
  const image = await ensureTestImage(`${_CACHE_DIR}/test-${sizeBytes / MiB}m.raw`, sizeBytes);
  const work = await Deno.makeTempDir({ dir: _CACHE_DIR, prefix: "mem-" });
  try {
    await new VatProcess(`${_ROOT}main.ts`).publish(work, image);
    for (const flags of ["", ...values.v8!]) {
      const vat = new VatProcess(`${_ROOT}main.ts`, flags ? [`--v8-flags=${flags}`] : []);
      const socket = `${work}/vat-${Math.random().toString(36).slice(2)}.sock`;
      const cache = `${work}/cache`;
      const server = await vat.startNbd(`${work}/www/repo`, socket, cache, 2 * sizeBytes);
      try {
        const before = await server.memory();
        let peak = 0;
        const sampler = setInterval(async () => {
          const m = await server.memory();
          if (m) peak = Math.max(peak, m.rssBytes);
        }, 200);
        const seconds = await qemuImgBench(nbdUri(socket), {
          count: sizeBytes / (128 * 1024),
          depth: 16,
          requestBytes: 128 * 1024,
        });
        clearInterval(sampler);
        const after = await server.memory();
        const f = (n: number | undefined) => `${((n ?? 0) / MiB).toFixed(0)} MiB`;
        console.log(
          `v8 flags "${flags || "(default)"}": before ${f(before?.rssBytes)}, after the full ` +
            `read ${f(after?.rssBytes)}, peak (VmHWM) ${f(after?.peakRssBytes)}; fill ` +
            `${(sizeBytes / 1e6 / seconds).toFixed(0)} MB/s`,
        );
      } finally {
        await server.stop();
        await Deno.remove(cache, { recursive: true }).catch(() => {});
      }
    }
  } finally {
    await stopAllServers();
    await Deno.remove(work, { recursive: true });
  }
}

if (import.meta.main) await main();
