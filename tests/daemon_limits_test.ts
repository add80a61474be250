/**
 * Attacks on the daemon's listener (issue 13): a sign-in POST of 100 MB, with and
 * without a Content-Length, and DNS rebinding (a foreign Host on the loopback port).
 * The daemon runs as its own process; its memory is measured from /proc.
 */

import assert from "node:assert/strict";
import { startVat } from "./helpers/processes.ts";
import { procStatusKiB, watchMemory } from "./helpers/memory_watch.ts";
import { runVat, vatOk } from "./helpers/vat_cli.ts";
import { writeImage } from "./helpers/images.ts";
import { startOversizedServer } from "./helpers/oversized_server.ts";

const MiB = 1024 * 1024;

async function withDaemon(fn: (url: string, pid: number, state: string) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "vat-daemon-limits-" });
  const state = `${dir}/state`;
  await Deno.mkdir(state);
  const daemon = await startVat(
    ["--headless", "--state", state, "--port", "0"],
    (out) => out.includes("listening at"),
  );
  try {
    const url = /listening at (\S+)/.exec(daemon.output())![1];
    await fn(url, daemon.child.pid, state);
  } finally {
    await daemon.stop();
    await Deno.remove(dir, { recursive: true });
  }
}

/** A request sent as written (fetch would not let the Host be chosen). */
async function rawRequest(url: string, head: string): Promise<string> {
  const { port } = new URL(url);
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: Number(port) });
  await conn.write(new TextEncoder().encode(head));
  return await new Response(conn.readable).text();
}

Deno.test("the daemon refuses a 100 MB sign-in quickly with its memory bounded", async () => {
  await withDaemon(async (url, pid) => {
    const before = procStatusKiB(pid, "VmRSS")! / 1024;
    const watch = watchMemory(pid);
    const piece = new Uint8Array(MiB).fill(0x20);
    for (const announced of [true, false]) {
      let left = 100;
      const stream = new ReadableStream<Uint8Array>({
        pull(controller) {
          if (left-- <= 0) return controller.close();
          controller.enqueue(piece);
        },
      });
      const started = Date.now();
      const response = await fetch(`${url}api/session`, {
        method: "POST",
        headers: announced
          ? { "content-type": "application/json", "content-length": String(100 * MiB) }
          : { "content-type": "application/json" },
        body: stream,
      }).catch((err) => err as Error);
      const ms = Date.now() - started;
      if (response instanceof Response) {
        assert.equal(response.status, 413);
        assert.match((await response.json()).error, /larger than 4096 bytes/);
      } else {
        // The daemon may hang up on the rest of the body: refused all the same.
        assert.ok(!announced, `announced: ${response}`);
      }
      console.log(
        `  sign-in of 100 MB (${announced ? "Content-Length" : "chunked"}): ` +
          `${response instanceof Response ? response.status : "connection closed"} in ${ms} ms`,
      );
      assert.ok(ms < 5000, `took ${ms} ms`);
    }
    const peak = watch.stop();
    console.log(`  daemon RSS ${before.toFixed(0)} MiB before, peak ${peak.toFixed(0)} MiB`);
    assert.ok(peak < before + 48, `peak ${peak} MiB from ${before} MiB`);
  });
});

Deno.test("the daemon refuses a foreign Host on its loopback port (DNS rebinding)", async () => {
  await withDaemon(async (url) => {
    const { port } = new URL(url);
    for (const host of [`evil.example:${port}`, "127.0.0.1", `127.0.0.1.nip.io:${port}`]) {
      for (const path of ["/api/status", "/signin"]) {
        const text = await rawRequest(
          url,
          `GET ${path} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`,
        );
        assert.match(text, /^HTTP\/1\.1 421/, `${host} ${path}`);
        assert.match(text, /does not answer to the host/);
      }
    }
    const signIn = await rawRequest(
      url,
      `POST /api/session HTTP/1.1\r\nHost: rebound.example:${port}\r\nConnection: close\r\n` +
        `Content-Type: application/json\r\nContent-Length: 13\r\n\r\n{"token":"x"}`,
    );
    assert.match(signIn, /^HTTP\/1\.1 421/);
    // Its own names are answered (401: no token, but not refused for the Host).
    for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`]) {
      const text = await rawRequest(
        url,
        `GET /api/status HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`,
      );
      assert.match(text, /^HTTP\/1\.1 401/, host);
    }
  });
});

Deno.test("credentials in a repository URL are not shown by vat ls, vat status or errors", async () => {
  await withDaemon(async (_url, _pid, state) => {
    const dir = `${state}/../repo-src`;
    await Deno.mkdir(dir);
    await vatOk(["keygen", "--out", `${dir}/key`]);
    await vatOk(["repo", "init", `${dir}/office`, "--kind", "appliance"]);
    await writeImage(`${dir}/disk.raw`, 4 * MiB, [[0, MiB]]);
    await vatOk(["publish", `${dir}/office`, "--image", `${dir}/disk.raw`, "--key", `${dir}/key`]);
    // A static server that wants the password the URL carries.
    const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
      if (req.headers.get("authorization") !== `Basic ${btoa("alice:s3cr3t")}`) {
        return new Response("who are you", { status: 401 });
      }
      try {
        return new Response(await Deno.readFile(`${dir}${new URL(req.url).pathname}`));
      } catch {
        return new Response("not found", { status: 404 });
      }
    });
    try {
      const port = (server.addr as Deno.NetAddr).port;
      const repo = `http://alice:s3cr3t@127.0.0.1:${port}/office/?token=t0k3n`;
      await vatOk(["appliance", "add", repo, "--name", "office", "--state", state]);
      for (const args of [["ls", "--json"], ["status", "--json"], ["ls"], ["status"]]) {
        const out = (await vatOk([...args, "--state", state])).stdout;
        if (args.includes("--json")) {
          assert.ok(out.includes(`alice:***@127.0.0.1:${port}/office/?token=***`), out);
        }
        assert.ok(!out.includes("s3cr3t") && !out.includes("t0k3n"), out);
      }
      const failing = await runVat([
        "appliance",
        "add",
        `http://alice:wr0ng@127.0.0.1:${port}/nothing/`,
        "--state",
        state,
      ]);
      assert.equal(failing.code, 1);
      assert.ok(!failing.stderr.includes("wr0ng"), failing.stderr);
    } finally {
      await server.shutdown();
    }
  });
});

Deno.test("the daemon's memory stays bounded against a repository serving 500 MiB objects", async () => {
  await withDaemon(async (_url, pid, state) => {
    const dir = `${state}/../repo-src`;
    await Deno.mkdir(dir);
    await vatOk(["keygen", "--out", `${dir}/key`]);
    await vatOk(["repo", "init", `${dir}/repo`, "--kind", "appliance"]);
    await writeImage(`${dir}/disk.raw`, 8 * MiB, [[0, 8 * MiB]]);
    await vatOk(["publish", `${dir}/repo`, "--image", `${dir}/disk.raw`, "--key", `${dir}/key`]);
    const before = procStatusKiB(pid, "VmRSS")! / 1024;
    const watch = watchMemory(pid);
    // A manifest of 500 MiB, without a Content-Length: adding the appliance fails.
    const manifests = startOversizedServer(
      dir,
      (path) => path.endsWith("/manifest.json") ? "huge-unannounced" : "honest",
    );
    try {
      const add = await runVat(["appliance", "add", manifests.url, "--state", state]);
      assert.equal(add.code, 1);
      assert.match(add.stderr, /manifest\.json .*limit of 1048576 bytes/);
      assert.match((await vatOk(["ls", "--state", state])).stdout, /no appliances yet/);
    } finally {
      await manifests.close();
    }
    // Chunks of 500 MiB each: the appliance is added, and its prefetch fails on them.
    const chunks = startOversizedServer(
      dir,
      (path) => path.includes("/chunks/") ? "huge" : "honest",
    );
    try {
      await vatOk(["appliance", "add", chunks.url, "--name", "office", "--state", state]);
      const until = Date.now() + 4000;
      while (Date.now() < until) await new Promise((r) => setTimeout(r, 200));
      console.log(`  ${(chunks.sent.bytes / MiB).toFixed(0)} MiB of junk chunks sent`);
    } finally {
      await chunks.close();
    }
    const peak = watch.stop();
    console.log(`  daemon RSS ${before.toFixed(0)} MiB before, peak ${peak.toFixed(0)} MiB`);
    assert.ok(peak < before + 64, `peak ${peak} MiB from ${before} MiB`);
  });
});
