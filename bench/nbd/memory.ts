/**
 * Where `vat nbd`'s memory goes: its RSS (VmRSS, VmHWM) while one full sequential read
 * (128 KiB requests, queue depth 16) of a published disk fills an empty cache, for each
 * disk size given (default 1 GiB and 4 GiB: a figure that grows with the disk shows a
 * per-chunk structure that is not bounded), beside nbdkit's file plugin doing the same
 * read of the raw image. vat runs with its own V8 flags (vat/v8_flags.ts); with `--v8=
 * FLAGS` (comma-separated like Deno's `--v8-flags`; `--max-semi-space-size=0` is V8's
 * default) it is also run with those instead, one server per setting on the same repository.
 *
 * Run: `deno run -A bench/nbd/memory.ts [--size-mib 1024] [--size-mib 4096]
 * [--v8=--max-semi-space-size=0]`. Results: printed. The 4 GiB image takes 4 GiB in
 * .cache/bench/nbd/ (kept for the next run) and its repository 2.3 GiB while it runs.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { nbdUri, qemuImgBench } from "./load.ts";
import { type ServerProcess, startNbdkit, stopAllServers } from "./processes.ts";
import { ensureTestImage } from "./test_image.ts";
import { VatProcess } from "./vat_process.ts";
import { V8_FLAGS } from "../../vat/v8_flags.ts";
import { ensureBenchPeers } from "../peers.ts";

const MiB = 1024 * 1024;
const _ROOT = new URL("../../", import.meta.url).pathname;
const _CACHE_DIR = `${_ROOT}.cache/bench/nbd`;
const _REQUEST_BYTES = 128 * 1024;
const _SAMPLE_MS = 100;

/** What one server did over one full read. */
interface ReadMemory {
  beforeBytes: number;
  peakBytes: number;
  afterBytes: number;
  /** VmRSS sampled every `_SAMPLE_MS` during the read. */
  samples: number[];
  seconds: number;
}

/** Reads all of `socket`'s export once, sampling `server`'s memory meanwhile. */
async function measureFullRead(
  server: ServerProcess,
  socket: string,
  sizeBytes: number,
): Promise<ReadMemory> {
  const before = await server.memory();
  const samples: number[] = [];
  const sampler = setInterval(async () => {
    const m = await server.memory();
    if (m) samples.push(m.rssBytes);
  }, _SAMPLE_MS);
  let seconds: number;
  try {
    seconds = await qemuImgBench(nbdUri(socket), {
      count: sizeBytes / _REQUEST_BYTES,
      depth: 16,
      requestBytes: _REQUEST_BYTES,
    });
  } finally {
    clearInterval(sampler);
  }
  const after = await server.memory();
  return {
    beforeBytes: before?.rssBytes ?? 0,
    // VmHWM: the peak since the process started, so between two samples too.
    peakBytes: after?.peakRssBytes ?? 0,
    afterBytes: after?.rssBytes ?? 0,
    samples,
    seconds,
  };
}

function _mib(n: number): string {
  return `${(n / MiB).toFixed(0)} MiB`;
}

/** RSS at every tenth of the read, in MiB. */
function _curve(samples: number[]): string {
  if (samples.length === 0) return "(no samples)";
  const points: string[] = [];
  for (let tenth = 0; tenth <= 10; tenth++) {
    const i = Math.min(samples.length - 1, Math.round((samples.length - 1) * tenth / 10));
    points.push((samples[i] / MiB).toFixed(0));
  }
  return points.join(" ");
}

function _report(label: string, sizeBytes: number, m: ReadMemory): void {
  console.log(
    `${label.padEnd(34)} before ${_mib(m.beforeBytes).padStart(8)}, peak ${
      _mib(m.peakBytes).padStart(8)
    }, after ${_mib(m.afterBytes).padStart(8)}; ${
      (sizeBytes / 1e6 / m.seconds).toFixed(0)
    } MB/s; RSS (MiB) at each tenth of the read: ${_curve(m.samples)}`,
  );
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      "size-mib": { type: "string", multiple: true },
      v8: { type: "string", multiple: true, default: [] },
    },
  });
  const sizes = (values["size-mib"] ?? ["1024", "4096"]).map((s) => {
    const mib = Number(s);
    if (!Number.isInteger(mib) || mib <= 0 || mib % 16 !== 0) {
      throw new Error(`--size-mib "${s}" is not a positive multiple of 16`);
    }
    return mib * MiB;
  });
  await ensureBenchPeers(["qemu-img", "nbdkit"]);
  await Deno.mkdir(_CACHE_DIR, { recursive: true });
  for (const sizeBytes of sizes) {
    console.log(`\n${sizeBytes / MiB} MiB disk, one full sequential read:`);
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
          _report(
            `vat nbd (v8 flags ${flags || V8_FLAGS}):`,
            sizeBytes,
            await measureFullRead(
              server,
              socket,
              sizeBytes,
            ),
          );
        } finally {
          await server.stop();
          await Deno.remove(cache, { recursive: true }).catch(() => {});
        }
      }
      const kitSocket = `${work}/nbdkit.sock`;
      const kit = await startNbdkit(kitSocket, ["file", image]);
      try {
        _report(
          "nbdkit file plugin, same read:",
          sizeBytes,
          await measureFullRead(
            kit,
            kitSocket,
            sizeBytes,
          ),
        );
      } finally {
        await kit.stop();
      }
    } finally {
      await stopAllServers();
      await Deno.remove(work, { recursive: true });
    }
  }
}

if (import.meta.main) await main();
