/**
 * Attacks on `vat serve` (issue 13): a huge body under a bad signature, a half-sent
 * body, a request signed for another host, a replay after a restart, and error messages
 * that would show the server's paths. The server runs as its own process (`vat serve`),
 * so its memory is measured from /proc while it is attacked.
 */

import assert from "node:assert/strict";
import { generateSigningKey, type SigningKey } from "../vat/auth/signing_key.ts";
import { CONTENT_SHA256_HEADER, sha256Hex, signRequest } from "../vat/auth/request_signature.ts";
import { startVat, type VatProcess } from "./helpers/processes.ts";
import { procStatusKiB, watchMemory } from "./helpers/memory_watch.ts";

const MiB = 1024 * 1024;
const bytes = (text: string) => new TextEncoder().encode(text);

interface Served {
  dir: string;
  root: string;
  port: number;
  key: SigningKey;
  server: VatProcess;
}

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

function startServe(root: string, port: number, keyPub: string): Promise<VatProcess> {
  return startVat(
    [
      "serve",
      "--root",
      root,
      "--listen",
      `127.0.0.1:${port}`,
      "--allow-key",
      keyPub,
      "--body-timeout",
      "2",
      "--host",
      `127.0.0.1:${port}`,
    ],
    (out) => out.includes("serving "),
  );
}

async function withServe(fn: (s: Served) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "vat-serve-limits-" });
  let server: VatProcess | undefined;
  try {
    const root = `${dir}/root`;
    await Deno.mkdir(`${root}/apps/a`, { recursive: true });
    const key = await generateSigningKey(`${dir}/admin.key`);
    const port = freePort();
    server = await startServe(root, port, `${dir}/admin.key.pub`);
    const s: Served = { dir, root, port, key, server };
    await fn(s);
    server = s.server;
  } finally {
    await server?.stop();
    await Deno.remove(dir, { recursive: true });
  }
}

/** The headers of a write of `body` to `target`, signed for `host`. */
function signed(s: Served, target: string, body: Uint8Array, host = `127.0.0.1:${s.port}`) {
  return {
    Authorization: signRequest(s.key, { method: "PUT", host, target, body }),
    [CONTENT_SHA256_HEADER]: sha256Hex(body),
  };
}

/** Opens a connection and sends a request head; the body is the caller's to send. */
async function sendHead(
  port: number,
  method: string,
  target: string,
  headers: Record<string, string>,
  host = `127.0.0.1:${port}`,
) {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const head = [
    `${method} ${target} HTTP/1.1`,
    `Host: ${host}`,
    ...Object.entries(headers).map(([name, value]) => `${name}: ${value}`),
  ].join("\r\n") + "\r\n\r\n";
  await conn.write(bytes(head));
  return conn;
}

/** Reads what the server says until it closes or `ms` pass; "" on timeout. */
async function readAnswer(conn: Deno.Conn, ms: number): Promise<string> {
  const buffer = new Uint8Array(64 * 1024);
  let text = "";
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const n = await Promise.race([
      conn.read(buffer).catch(() => null),
      new Promise<"wait">((r) => setTimeout(() => r("wait"), Math.max(1, deadline - Date.now()))),
    ]);
    if (n === "wait" || n === null) break;
    text += new TextDecoder().decode(buffer.subarray(0, n));
    if (/\r\n\r\n[\s\S]*\}/.test(text)) break;
  }
  return text;
}

Deno.test("vat serve refuses a 700 MiB PUT with a bad signature before reading its body", async () => {
  await withServe(async (s) => {
    const pid = s.server.child.pid;
    const before = procStatusKiB(pid, "VmRSS")! / 1024;
    const watch = watchMemory(pid);
    const declared = 700 * MiB;
    const good = signed(s, "/apps/a/big", new Uint8Array(0));
    // A valid key id with a random signature, over a body it will never finish sending.
    const forged = good.Authorization.replace(/sig=[A-Za-z0-9_-]+/, `sig=${"A".repeat(86)}`);
    const conn = await sendHead(s.port, "PUT", "/apps/a/big", {
      Authorization: forged,
      [CONTENT_SHA256_HEADER]: "0".repeat(64),
      "Content-Length": String(declared),
    });
    const started = Date.now();
    // Push body bytes as fast as the server takes them, for up to 3 s.
    const piece = new Uint8Array(MiB);
    let sent = 0;
    const pushing = (async () => {
      try {
        while (sent < declared && Date.now() - started < 3000) sent += await conn.write(piece);
      } catch {
        // The server hung up: what it should do.
      }
    })();
    const answer = await readAnswer(conn, 5000);
    const answeredMs = Date.now() - started;
    await pushing;
    conn.close();
    const peak = watch.stop();
    console.log(
      `  vat serve: RSS ${before.toFixed(0)} MiB before, peak ${peak.toFixed(0)} MiB; ` +
        `answered in ${answeredMs} ms; ${(sent / MiB).toFixed(0)} MiB pushed`,
    );
    assert.match(answer, /^HTTP\/1\.1 401/);
    assert.match(answer, /does not match this request/);
    assert.ok(answeredMs < 2000, `answered after ${answeredMs} ms`);
    assert.ok(peak < before + 64, `peak ${peak} MiB from ${before} MiB`);
    assert.equal(
      [...Deno.readDirSync(`${s.root}/apps/a`)].length,
      0,
      "nothing was written",
    );
  });
});

Deno.test("vat serve drops a half-sent body after its body timeout and keeps nothing", async () => {
  await withServe(async (s) => {
    const body = new Uint8Array(1 * MiB).fill(7);
    const conn = await sendHead(s.port, "PUT", "/apps/a/half", {
      ...signed(s, "/apps/a/half", body),
      "Content-Length": String(body.length),
    });
    await conn.write(body.subarray(0, 300 * 1024));
    const started = Date.now();
    const answer = await readAnswer(conn, 10_000);
    const ms = Date.now() - started;
    conn.close();
    console.log(`  half-sent body dropped after ${ms} ms (timeout 2 s)`);
    assert.match(answer, /^HTTP\/1\.1 408/);
    assert.match(answer, /stalled/);
    assert.ok(ms >= 1500 && ms < 5000, `dropped after ${ms} ms`);
    // Neither the object nor a temporary file of it is left.
    assert.deepEqual([...Deno.readDirSync(`${s.root}/apps/a`)].map((e) => e.name), []);
  });
});

Deno.test("vat serve refuses a request signed for another Host", async () => {
  await withServe(async (s) => {
    const body = bytes("1");
    const response = await fetch(`http://127.0.0.1:${s.port}/apps/a/latest`, {
      method: "PUT",
      headers: signed(s, "/apps/a/latest", body, `mirror.example:${s.port}`),
      body,
    });
    assert.equal(response.status, 401);
    assert.match((await response.json()).error, /Host/);
    // Sent with the Host it was signed for: not one of this server's names (--host).
    const mirror = `mirror.example:${s.port}`;
    const conn = await sendHead(s.port, "PUT", "/apps/a/latest", {
      ...signed(s, "/apps/a/latest", body, mirror),
      "Content-Length": "1",
      Connection: "close",
    }, mirror);
    await conn.write(body);
    const answer = await readAnswer(conn, 5000);
    conn.close();
    assert.match(answer, /^HTTP\/1\.1 421/);
    assert.match(answer, /takes writes for 127\.0\.0\.1:\d+, not for /);
    assert.deepEqual([...Deno.readDirSync(`${s.root}/apps/a`)], []);
  });
});

Deno.test("vat serve refuses the replay of a signed request after a restart", async () => {
  await withServe(async (s) => {
    const body = bytes("5");
    const headers = signed(s, "/apps/a/latest", body);
    const put = () =>
      fetch(`http://127.0.0.1:${s.port}/apps/a/latest`, { method: "PUT", headers, body });
    const first = await put();
    assert.equal(first.status, 204);
    await first.body?.cancel();
    await Deno.writeTextFile(`${s.root}/apps/a/latest`, "6");

    await s.server.stop();
    s.server = await startServe(s.root, s.port, `${s.dir}/admin.key.pub`);
    const replay = await put();
    assert.equal(replay.status, 401);
    assert.match((await replay.json()).error, /replay/);
    assert.equal(await Deno.readTextFile(`${s.root}/apps/a/latest`), "6");
  });
});

Deno.test("vat serve's error messages show paths relative to its root", async () => {
  await withServe(async (s) => {
    await Deno.writeTextFile(`${s.root}/apps/a/latest`, "1");
    // A key whose path runs into a file.
    const body = bytes("x");
    const response = await fetch(`http://127.0.0.1:${s.port}/apps/a/latest/x`, {
      method: "PUT",
      headers: signed(s, "/apps/a/latest/x", body),
      body,
    });
    const { error } = await response.json();
    assert.ok(response.status >= 400);
    assert.ok(!error.includes(s.dir), `"${error}" shows the server's path`);
    const missing = await fetch(`http://127.0.0.1:${s.port}/apps/zz/versions/1/manifest.json`);
    const text = await missing.text();
    assert.equal(missing.status, 404);
    assert.ok(!text.includes(s.dir), `"${text}" shows the server's path`);
  });
});
