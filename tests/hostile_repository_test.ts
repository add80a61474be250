/**
 * A hostile HTTP repository server (issue 13, "Limits on every untrusted byte"): it
 * serves a real repository but answers chosen objects with 500 MiB of junk, with or
 * without a Content-Length. The VAT's CLI must fail with an error naming the object
 * and its limit, change nothing, and keep its memory bounded (its peak RSS is sampled
 * from /proc while it runs).
 */

import assert from "node:assert/strict";
import { runVat, vatOk } from "./helpers/vat_cli.ts";
import { loadSigningKey, signBytes } from "../vat/auth/signing_key.ts";
import { VAT_MAIN } from "./helpers/vat_cli.ts";
import { watchMemory } from "./helpers/memory_watch.ts";
import { startOversizedServer } from "./helpers/oversized_server.ts";
import { writeImage } from "./helpers/images.ts";
import { TransientError } from "../vat/errors.ts";
import { openHttpStore } from "../vat/repo/store_http.ts";
import { MirroredStore } from "../vat/repo/store_mirrored.ts";

const MiB = 1024 * 1024;

/** Runs `vat args` and samples its peak memory while it runs. */
async function vatWatched(args: string[]) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--quiet", VAT_MAIN, ...args],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const watch = watchMemory(child.pid);
  const started = Date.now();
  const out = await child.output();
  return {
    code: out.code,
    stderr: new TextDecoder().decode(out.stderr),
    peakMiB: watch.stop(),
    ms: Date.now() - started,
  };
}

async function withRepository(fn: (dir: string) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "vat-hostile-repo-" });
  try {
    await vatOk(["keygen", "--out", `${dir}/key`]);
    await vatOk(["repo", "init", `${dir}/repo`, "--kind", "appliance"]);
    await writeImage(`${dir}/v1.raw`, 4 * MiB, [[0, 2 * MiB]]);
    await vatOk(["publish", `${dir}/repo`, "--image", `${dir}/v1.raw`, "--key", `${dir}/key`]);
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

for (const answer of ["huge", "huge-unannounced"] as const) {
  const how = answer === "huge" ? "announced" : "unannounced (no Content-Length)";
  Deno.test(`a 500 MiB manifest, ${how}, is refused naming it and its limit; memory stays bounded`, async () => {
    await withRepository(async (dir) => {
      const honest = startOversizedServer(dir, () => "honest");
      const baseline = await vatWatched(["repo", "show", `${honest.url}@1`, "--json"]);
      await honest.close();
      assert.equal(baseline.code, 0, baseline.stderr);

      const hostile = startOversizedServer(
        dir,
        (path) => path.endsWith("/manifest.json") ? answer : "honest",
      );
      try {
        const run = await vatWatched(["repo", "show", `${hostile.url}@1`, "--json"]);
        assert.equal(run.code, 1, run.stderr);
        assert.match(run.stderr, /versions\/1\/manifest\.json .*limit of 1048576 bytes/);
        console.log(
          `  vat repo show: peak RSS ${run.peakMiB.toFixed(0)} MiB (honest server: ` +
            `${baseline.peakMiB.toFixed(0)} MiB), ${
              (hostile.sent.bytes / MiB).toFixed(0)
            } MiB sent, ` +
            `${run.ms} ms`,
        );
        assert.ok(
          run.peakMiB < baseline.peakMiB + 64,
          `peak ${run.peakMiB} MiB against ${baseline.peakMiB} MiB honestly`,
        );
      } finally {
        await hostile.close();
      }
    });
  });

  Deno.test(`a 500 MiB chunk, ${how}, is refused naming it and its limit; memory stays bounded`, async () => {
    await withRepository(async (dir) => {
      const hostile = startOversizedServer(
        dir,
        (path) => path.includes("/chunks/") ? answer : "honest",
      );
      try {
        const run = await vatWatched(["export", `${hostile.url}@1`, `${dir}/out.raw`]);
        assert.equal(run.code, 1, run.stderr);
        assert.match(run.stderr, /chunks\/[0-9a-f]{2}\/[0-9a-f]{64} .*limit of 65600 bytes/);
        console.log(
          `  vat export: peak RSS ${run.peakMiB.toFixed(0)} MiB, ` +
            `${(hostile.sent.bytes / MiB).toFixed(0)} MiB sent, ${run.ms} ms`,
        );
        assert.ok(run.peakMiB < 250, `peak ${run.peakMiB} MiB`);
        // Nothing was written in place of the disk.
        await assert.rejects(Deno.stat(`${dir}/out.raw`), Deno.errors.NotFound);
      } finally {
        await hostile.close();
      }
    });
  });
}

Deno.test("the mirror's timeout cancels the download it gave up on", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vat-hostile-mirror-" });
  let cancelledAt = 0;
  let trickled = 0;
  // A manifest that never ends: a byte every 50 ms, well under any size limit.
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    if (new URL(req.url).searchParams.has("capabilities")) return new Response("");
    let timer: ReturnType<typeof setInterval>;
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        timer = setInterval(() => {
          trickled++;
          controller.enqueue(new Uint8Array([0x20]));
        }, 50);
      },
      cancel() {
        clearInterval(timer);
        cancelledAt = Date.now();
      },
    });
    return new Response(body);
  });
  const url = `http://127.0.0.1:${(server.addr as Deno.NetAddr).port}/repo`;
  const store = new MirroredStore({
    location: url,
    open: () => openHttpStore(url),
    mirrorDir: `${dir}/mirror`,
    connectTimeoutMs: 500,
  });
  try {
    const started = Date.now();
    await assert.rejects(store.get("versions/1/manifest.json"), TransientError);
    const gaveUpAt = Date.now();
    assert.ok(gaveUpAt - started < 1500, `gave up after ${gaveUpAt - started} ms`);
    // The server sees its response cancelled, instead of trickling on for minutes.
    for (let i = 0; i < 40 && !cancelledAt; i++) await new Promise((r) => setTimeout(r, 50));
    assert.ok(cancelledAt > 0, "the download was not cancelled");
    assert.ok(cancelledAt - gaveUpAt < 1000, `cancelled ${cancelledAt - gaveUpAt} ms late`);
    const after = trickled;
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(trickled, after, "the server still sends");
  } finally {
    await store.close();
    await server.shutdown();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a served manifest with out-of-bounds VM fields is refused naming the field", async () => {
  await withRepository(async (dir) => {
    const key = await loadSigningKey(`${dir}/key`);
    const original = JSON.parse(
      JSON.parse(await Deno.readTextFile(`${dir}/repo/versions/1/manifest.json`)).payload,
    );
    const crafted: [string, (m: Record<string, Record<string, unknown>>) => void][] = [
      ["vm.memoryMiB", (m) => m.vm.memoryMiB = 2 ** 40],
      ["vm.kernel", (m) => m.vm.kernel = "constructor"],
      ["vm.append", (m) => m.vm.append = 42],
      ["vm.ephemeralSizeBytes", (m) => m.vm.ephemeralSizeBytes = 2 ** 62],
    ];
    for (const [field, mutate] of crafted) {
      const manifest = structuredClone(original);
      mutate(manifest);
      const payload = JSON.stringify(manifest);
      const sig = signBytes(key, new TextEncoder().encode("vat-manifest-v1\n" + payload));
      const bytes = JSON.stringify({ payload, signatures: [{ key: key.publicKeyId, sig }] });
      const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
        const path = new URL(req.url).pathname.replace(/^\/repo\//, "");
        if (path === "versions/1/manifest.json") return new Response(bytes);
        try {
          return new Response(await Deno.readFile(`${dir}/repo/${path}`));
        } catch {
          return new Response("not found", { status: 404 });
        }
      });
      try {
        const url = `http://127.0.0.1:${(server.addr as Deno.NetAddr).port}/repo`;
        const run = await runVat(["export", `${url}@1`, `${dir}/out.raw`]);
        assert.equal(run.code, 1, field);
        assert.match(
          run.stderr,
          new RegExp(`manifest field ${field.replace(".", "\\.")} is invalid`),
        );
        await assert.rejects(Deno.stat(`${dir}/out.raw`), Deno.errors.NotFound);
      } finally {
        await server.shutdown();
      }
    }
  });
});

Deno.test("a server claiming endless versions after latest is not followed forever", async () => {
  await withRepository(async (dir) => {
    let heads = 0;
    const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
      const path = new URL(req.url).pathname.replace(/^\/repo\//, "");
      if (req.method === "HEAD" && /^versions\/\d+\/manifest\.json$/.test(path)) {
        heads++;
        return new Response(null, { headers: { "content-length": "1000" } });
      }
      try {
        return new Response(await Deno.readFile(`${dir}/repo/${path}`));
      } catch {
        return new Response("not found", { status: 404 });
      }
    });
    try {
      const url = `http://127.0.0.1:${(server.addr as Deno.NetAddr).port}/repo`;
      const run = await runVat(["repo", "ls", url]);
      assert.equal(run.code, 1);
      assert.match(run.stderr, /claims more than 100 versions after its "latest" \(1\)/);
      assert.ok(heads <= 102, `${heads} probes`);
    } finally {
      await server.shutdown();
    }
  });
});
