import assert from "node:assert/strict";
import { HTTPException } from "hono/http-exception";
import { ConflictError, UsageError } from "../errors.ts";
import { ScreenRelays, type ScreenRelaysOptions, type ScreenTarget } from "./vnc_relay.ts";

const MiB = 1024 * 1024;
const GREETING = "RFB 003.008\n";

/**
 * A stand-in for QEMU's VNC on a Unix socket: greets every client as QEMU does, and
 * records what each one sends. `flood` bytes more follow the greeting on each
 * connection, written as fast as the client takes them (`written` counts them all).
 */
function fakeVnc(path: string, flood = 0) {
  const listener = Deno.listen({ transport: "unix", path });
  const received: Uint8Array[] = [];
  const conns = new Set<Deno.UnixConn>();
  let written = 0;
  let connections = 0;
  const serving = (async () => {
    for await (const conn of listener) {
      connections++;
      conns.add(conn);
      (async () => {
        try {
          await conn.write(new TextEncoder().encode(GREETING));
          const block = new Uint8Array(64 * 1024);
          for (let sent = 0; sent < flood;) {
            const n = await conn.write(block.subarray(0, Math.min(block.length, flood - sent)));
            sent += n;
            written += n;
          }
        } catch { /* the relay closed */ }
      })();
      (async () => {
        const buf = new Uint8Array(4096);
        try {
          for (let n; (n = await conn.read(buf)) !== null;) received.push(buf.slice(0, n));
        } catch { /* closed */ }
        conns.delete(conn);
      })();
    }
  })();
  return {
    received: () => new TextDecoder().decode(new Uint8Array(received.flatMap((b) => [...b]))),
    written: () => written,
    connections: () => connections,
    open: () => conns.size,
    async close() {
      try {
        listener.close();
      } catch { /* closed already */ }
      for (const conn of conns) conn.close();
      await serving.catch(() => {});
    },
  };
}

/** A daemon-like HTTP server whose one route relays to `target` through `relays`. */
function relayServer(
  relays: ScreenRelays,
  target: () => ScreenTarget,
  allowed: () => boolean = () => true,
) {
  return Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const session = new URL(req.url).searchParams.get("session") ?? undefined;
    try {
      return await relays.open(req, target(), { session, stillAllowed: allowed });
    } catch (err) {
      const status = err instanceof HTTPException
        ? err.status
        : err instanceof ConflictError
        ? 409
        : err instanceof UsageError
        ? 400
        : 500;
      return new Response((err as Error).message, { status });
    }
  });
}

/** A WebSocket client that collects what it receives and how it closed. */
function client(port: number, query = "") {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/${query}`, ["binary"]);
  ws.binaryType = "arraybuffer";
  let text = "";
  const opened = new Promise<void>((resolve, reject) => {
    ws.onopen = () => resolve();
    ws.onerror = () => reject(new Error("the WebSocket failed"));
  });
  const closed = new Promise<CloseEvent>((resolve) => ws.onclose = resolve);
  ws.onmessage = (e) => text += new TextDecoder().decode(e.data as ArrayBuffer);
  return { ws, opened, closed, text: () => text };
}

/** The status line of a hand-made upgrade request, and the connection (left open). */
async function rawUpgrade(port: number): Promise<{ status: string; conn: Deno.TcpConn }> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await conn.write(new TextEncoder().encode(
    [
      "GET / HTTP/1.1",
      `Host: 127.0.0.1:${port}`,
      "Upgrade: websocket",
      "Connection: Upgrade",
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
      "Sec-WebSocket-Version: 13",
      "",
      "",
    ].join("\r\n"),
  ));
  const buf = new Uint8Array(512);
  const n = await conn.read(buf);
  return { status: new TextDecoder().decode(buf.subarray(0, n ?? 0)).split("\r\n")[0], conn };
}

async function until(what: string, probe: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!probe()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Runs `fn` with a fake VNC socket, relays and a server; cleans up after. */
async function withRelay(
  options: ScreenRelaysOptions & { flood?: number; allowed?: () => boolean },
  fn: (t: {
    vnc: ReturnType<typeof fakeVnc>;
    relays: ScreenRelays;
    port: number;
    stop: () => void;
    socketPath: string;
  }) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "vat-relay-" });
  const socketPath = `${dir}/vnc.sock`;
  const vnc = fakeVnc(socketPath, options.flood);
  const relays = new ScreenRelays(options);
  let stop!: () => void;
  const ended = new Promise<void>((resolve) => stop = resolve);
  const server = relayServer(relays, () => ({ name: "desk", socketPath, ended }), options.allowed);
  try {
    await fn({ vnc, relays, port: server.addr.port, stop, socketPath });
  } finally {
    relays.closeAll();
    await vnc.close();
    await server.shutdown();
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("ScreenRelays relays RFB both ways between a WebSocket and the VNC socket", async () => {
  await withRelay({}, async ({ vnc, relays, port }) => {
    const c = client(port);
    await c.opened;
    assert.equal(c.ws.protocol, "binary");
    await until("the greeting", () => c.text() === GREETING);
    c.ws.send(new TextEncoder().encode("RFB 003.008\n"));
    c.ws.send(new Uint8Array([1]));
    await until("the client's bytes at the socket", () => vnc.received() === "RFB 003.008\n\x01");
    assert.equal(relays.count("desk"), 1);
    c.ws.close();
    await c.closed;
    await until("the relay to let go of the socket", () => vnc.open() === 0);
    assert.equal(relays.count("desk"), 0);
  });
});

Deno.test("ScreenRelays refuses more than its limit per appliance, and what is not a WebSocket", async () => {
  await withRelay({ perAppliance: 2 }, async ({ vnc, relays, port }) => {
    const a = client(port);
    const b = client(port);
    await Promise.all([a.opened, b.opened]);
    const third = await rawUpgrade(port);
    third.conn.close();
    assert.match(third.status, /^HTTP\/1.1 429/);
    assert.equal(vnc.connections(), 2, "the refused one never reached the socket");
    const plain = await fetch(`http://127.0.0.1:${port}/`);
    assert.equal(plain.status, 400);
    assert.match(await plain.text(), /the screen is a WebSocket: connect with noVNC/);
    // Closing one makes room again.
    a.ws.close();
    await a.closed;
    await until("a free slot", () => relays.count("desk") === 1);
    const c = client(port);
    await c.opened;
    b.ws.close();
    c.ws.close();
    await Promise.all([b.closed, c.closed]);
  });
});

Deno.test("ScreenRelays answers 409 when the appliance has no VNC socket", async () => {
  await withRelay({}, async ({ vnc, relays, port }) => {
    await vnc.close();
    const refused = await rawUpgrade(port);
    refused.conn.close();
    assert.match(refused.status, /^HTTP\/1.1 409/);
    assert.equal(relays.count("desk"), 0, "a refused relay gives its slot back");
  });
});

Deno.test("ScreenRelays closes relays when the VM ends, the session is revoked or expires", async () => {
  let allowed = true;
  await withRelay({ authCheckMs: 50, allowed: () => allowed }, async ({ relays, port, stop }) => {
    // Sign-out closes that session's relays only.
    const mine = client(port, "?session=s1");
    const other = client(port, "?session=s2");
    await Promise.all([mine.opened, other.opened]);
    relays.closeSession("s1");
    assert.equal((await mine.closed).code, 1008);
    assert.equal(other.ws.readyState, WebSocket.OPEN);
    // A session that is no longer valid is noticed at the next check.
    allowed = false;
    const expired = await other.closed;
    assert.equal(expired.code, 1008);
    assert.equal(expired.reason, "the session ended");
    allowed = true;
    // The VM ends: its relays close.
    const watching = client(port);
    await watching.opened;
    stop();
    const ended = await watching.closed;
    assert.equal(ended.code, 1000);
    assert.equal(ended.reason, "desk stopped");
    await until("no relay", () => relays.count("desk") === 0);
  });
});

Deno.test("ScreenRelays closes a relay that sends text instead of RFB's binary messages", async () => {
  await withRelay({}, async ({ port }) => {
    const c = client(port);
    await c.opened;
    c.ws.send("hello");
    assert.equal((await c.closed).code, 1003);
  });
});

Deno.test("ScreenRelays reads QEMU no faster than the browser takes it (backpressure)", async () => {
  const flood = 64 * MiB;
  await withRelay({ flood, highWaterBytes: MiB }, async ({ vnc, port }) => {
    // A browser that completes the upgrade, then reads nothing.
    const stalled = await rawUpgrade(port);
    try {
      assert.match(stalled.status, /^HTTP\/1.1 101/);
      await new Promise((r) => setTimeout(r, 1500));
      // What is held: the relay's high water mark, and the kernel's socket buffers.
      assert.ok(
        vnc.written() < 16 * MiB,
        `the relay read ${(vnc.written() / MiB).toFixed(1)} MiB that the browser did not take`,
      );
    } finally {
      stalled.conn.close();
    }
    // A browser that reads gets everything.
    const reader = client(port);
    await reader.opened;
    let got = 0;
    reader.ws.onmessage = (e) => got += (e.data as ArrayBuffer).byteLength;
    await until("the whole flood", () => got >= flood + GREETING.length, 30_000);
    reader.ws.close();
    await reader.closed;
  });
});
