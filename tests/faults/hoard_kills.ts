/**
 * Fault area "hoard": the daemon SIGKILLed while `vat hoard NAME` fetches an appliance's
 * newest version from `vat serve` behind a slow link (a proxy in this process that
 * holds every chunk request for a while), restarted, and `vat hoard NAME` run again,
 * as a user would, until it completes. Each round publishes a new version, so the
 * hoard has a new version to fetch while the old one stays pinned. After every kill
 * the cache opens within its budget; after each round `vat ls` calls the version safe
 * offline, and, with the daemon stopped, every chunk of it is in the cache, reads back
 * equal to the published image without any fetch, and is pinned to that version.
 *
 * @module
 */

import { ChunkCache } from "../../vat/cache/chunk_cache.ts";
import { FileStore } from "../../vat/repo/store_file.ts";
import { Repository } from "../../vat/repo/repository.ts";
import { fillRandom } from "../helpers/images.ts";
import type { FaultArea, VatChild } from "../helpers/fault_kill.ts";

const MiB = 1024 * 1024;
/** How long the slow link holds each chunk request. */
const CHUNK_DELAY_MS = 25;
const CACHE_BYTES = 40 * MiB;

/** A proxy on loopback to `upstream` that delays chunk requests. */
function slowLink(upstream: string): { url: string; close(): Promise<void> } {
  const controller = new AbortController();
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, signal: controller.signal, onListen() {} },
    async (request) => {
      const url = new URL(request.url);
      if (url.pathname.includes("/chunks/")) {
        await new Promise((r) => setTimeout(r, CHUNK_DELAY_MS));
      }
      const answer = await fetch(new URL(url.pathname + url.search, upstream), {
        method: request.method,
        headers: request.headers,
        body: request.body,
      });
      return new Response(answer.body, { status: answer.status, headers: answer.headers });
    },
  );
  return {
    url: `http://127.0.0.1:${server.addr.port}/`,
    async close() {
      controller.abort();
      await server.finished;
    },
  };
}

export async function hoardKills(
  area: FaultArea,
  plan: { rounds: number; killsPerRound: number },
): Promise<void> {
  const dir = area.dir;
  const root = `${dir}/served`;
  const appsDir = `${root}/apps`;
  const state = `${dir}/state`;
  await Deno.mkdir(root);
  await area.ok(["keygen", "--out", `${dir}/key`]);
  await area.ok(["repo", "init", appsDir, "--kind", "appliance"]);
  const server = await area.start(
    ["serve", "--root", root, "--listen", "127.0.0.1:0"],
    /serving .* at (http:\/\/\S+)/,
  );
  const link = slowLink(/at (http:\/\/\S+)/.exec(server.output())![1]);
  try {
    const repo = `${link.url}apps`;
    const image = `${dir}/image.raw`;
    const publish = async () => {
      const data = new Uint8Array(16 * MiB);
      fillRandom(data, area.int(1, 1 << 30));
      data.fill(0, 2 * MiB, 3 * MiB);
      await Deno.writeFile(image, data);
      const out = await area.ok([
        "publish",
        appsDir,
        "--image",
        image,
        "--key",
        `${dir}/key`,
        "--exact",
        "--json",
      ]);
      return JSON.parse(out.stdout).version as number;
    };
    const startDaemon = () =>
      area.start(
        ["--headless", "--state", state, "--port", "0", "--cache-size", String(CACHE_BYTES)],
        /listening at/,
      );

    await publish();
    let daemon: VatChild = await startDaemon();
    await area.ok(["appliance", "add", repo, "--name", "app", "--state", state]);
    /** What is left to fetch of the newest version. */
    const leftBytes = async () => {
      const [app] = JSON.parse((await area.ok(["ls", "--state", state, "--json"])).stdout);
      return (app.totalBytes ?? 16 * MiB) - (app.cachedBytes ?? 0);
    };
    // Learnt from each hoard left to finish; at first, three times the link's delay.
    let msPerByte = 3 * CHUNK_DELAY_MS / (8 * 64 * 1024);
    for (let round = 0; round < plan.rounds; round++) {
      const version = round === 0 ? 1 : await publish();
      for (let k = 0; k < plan.killsPerRound; k++) {
        // Aim somewhere in the fetch of what is left.
        const fetchMs = await leftBytes() * msPerByte;
        const hoard = area.spawn(["hoard", "app", "--state", state]);
        await area.killAfter(daemon, area.between(0, 1.1) * (fetchMs + 150));
        area.killedAt(hoard.hasExited ? "after the hoard" : "mid-hoard");
        await hoard.exited;
        const cache = await ChunkCache.open({ dir: `${state}/cache`, budgetBytes: CACHE_BYTES });
        const used = cache.stats().usedBytes;
        await cache.close();
        area.check(used <= CACHE_BYTES, "cache within budget", `${used} bytes used`);
        daemon = await startDaemon();
      }
      // Run again after the last restart, it completes.
      const left = await leftBytes();
      const started = performance.now();
      const hoard = await area.ok(["hoard", "app", "--state", state, "--json"]);
      if (left > 4 * MiB) msPerByte = (performance.now() - started) / left;
      const status = JSON.parse(hoard.stdout);
      area.check(
        status.safeOffline === true && status.latestVersion === version,
        "hoard completes",
        JSON.stringify(status),
      );
      await daemon.stop();
      await checkPinned(area, `${state}/cache`, appsDir, version, image);
      daemon = await startDaemon();
    }
    await daemon.stop();
  } finally {
    await link.close();
  }
}

/**
 * With the daemon stopped: every chunk of `version` is cached, correct (read without
 * a fetch) and pinned by the hoard of that version.
 */
async function checkPinned(
  area: FaultArea,
  cacheDir: string,
  repoDir: string,
  version: number,
  image: string,
): Promise<void> {
  const expected = await Deno.readFile(image);
  const repo = await Repository.open(new FileStore(repoDir));
  const { manifest } = await repo.readVersion(version);
  const index = await repo.readDiskIndex(manifest.disks.system.index);
  const cache = await ChunkCache.open({ dir: cacheDir, budgetBytes: CACHE_BYTES });
  try {
    area.check(
      cache.pinOwners("hoard:app:").includes(`hoard:app:${version}`),
      "pinned version verifies",
      `no pin for version ${version}: ${cache.pinOwners("hoard:")}`,
    );
    for (const [i, hash] of index.dataChunks()) {
      // Read from the cache alone (hash-checked, as this process reads it first).
      const data = new Uint8Array(index.chunkLength(i));
      if (!cache.readCached(hash, 0, data)) {
        area.fail(`pinned version verifies: chunk ${i} is not cached (or not intact)`);
      }
      const want = expected.subarray(i * index.chunkBytes, i * index.chunkBytes + data.length);
      if (!Buffer.from(data).equals(want)) area.fail(`pinned version verifies: chunk ${i} differs`);
    }
    area.checked("pinned version verifies");
  } finally {
    await cache.close();
  }
}
