/**
 * Attacks on the daemon's listener (issue 13): a sign-in POST of 100 MB, with and
 * without a Content-Length, and DNS rebinding (a foreign Host on the loopback port).
 * The daemon runs as its own process; its memory is measured from /proc.
 */

import assert from "node:assert/strict";
import { startVat } from "./helpers/processes.ts";
import { procStatusKiB, watchMemory } from "./helpers/memory_watch.ts";

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
