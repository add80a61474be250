/**
 * The screen only through the daemon, with a real daemon and QEMU running the busybox
 * appliance: QEMU holds no TCP socket (its fds matched against /proc/net/tcp and
 * tcp6), its VNC socket is 0600 in a 0700 run directory, and the daemon's WebSocket
 * route refuses strangers (401, 403) on loopback and over the remote display's TLS,
 * relays RFB to whoever is signed in, is bounded per appliance, and closes when the
 * session signs out or the appliance stops.
 */

import assert from "node:assert/strict";
import { buildBusyboxAppliance } from "../vat/demo/busybox_appliance.ts";
import { applianceRepo, qemuProcessesUnder } from "./helpers/guest.ts";
import { upgradeRequest } from "./helpers/websocket_upgrade.ts";
import { tcpSocketsOf } from "./helpers/proc_sockets.ts";
import { startVat, type VatProcess } from "./helpers/processes.ts";
import { vatOk } from "./helpers/vat_cli.ts";

const GREETING = "RFB 003.008\n";
const ROUTE = "/api/appliances/desk/vnc";

/** What a hand-made WebSocket upgrade got: the status line and the first frame's payload. */
interface Upgrade {
  status: string;
  /** The first server frame's payload (server frames are not masked), if any came. */
  payload: Uint8Array | null;
}

/** Sends a WebSocket upgrade of `path` over `conn` by hand and reads the answer. */
async function upgradeOver(
  conn: Deno.Conn,
  host: string,
  path: string,
  headers: string[],
): Promise<Upgrade> {
  try {
    await conn.write(upgradeRequest(host, path, headers));
    let data = new Uint8Array(0);
    const buf = new Uint8Array(4096);
    const deadline = Date.now() + 10_000;
    for (;;) {
      const text = new TextDecoder().decode(data);
      const end = text.indexOf("\r\n\r\n");
      if (end >= 0) {
        const status = text.split("\r\n")[0];
        const rest = data.subarray(new TextEncoder().encode(text.slice(0, end + 4)).length);
        // A frame: FIN+opcode, then a 7-bit length (RFB's greeting is 12 bytes).
        if (!status.includes(" 101 ")) return { status, payload: null };
        if (rest.length >= 2 && rest.length >= 2 + (rest[1] & 0x7f)) {
          assert.equal(rest[0], 0x82, "a binary frame");
          return { status, payload: rest.subarray(2, 2 + (rest[1] & 0x7f)) };
        }
      }
      if (Date.now() > deadline) throw new Error(`no answer to the upgrade: ${text}`);
      const n = await conn.read(buf);
      if (n === null) return { status: text.split("\r\n")[0], payload: null };
      data = new Uint8Array([...data, ...buf.subarray(0, n)]);
    }
  } finally {
    conn.close();
  }
}

/** A WebSocket to the daemon (Deno's client may send headers), with what it received. */
function screenSocket(url: string, headers: Record<string, string>) {
  const ws = new WebSocket(url, { protocols: ["binary"], headers } as unknown as string[]);
  ws.binaryType = "arraybuffer";
  const received: number[] = [];
  ws.onmessage = (e) => received.push(...new Uint8Array(e.data as ArrayBuffer));
  const opened = new Promise<void>((resolve, reject) => {
    ws.onopen = () => resolve();
    ws.onerror = (e) =>
      reject(new Error(`the screen's WebSocket failed: ${(e as ErrorEvent).message}`));
  });
  const closed = new Promise<CloseEvent>((resolve) => ws.onclose = resolve);
  return {
    ws,
    opened,
    closed,
    /** Waits until `n` bytes came and returns them. */
    async take(n: number): Promise<Uint8Array> {
      const deadline = Date.now() + 10_000;
      while (received.length < n) {
        if (Date.now() > deadline) throw new Error(`only ${received.length} of ${n} bytes came`);
        await new Promise((r) => setTimeout(r, 20));
      }
      return new Uint8Array(received.splice(0, n));
    },
  };
}

/** `screenSocket`, tried again while the daemon answers 429 (its places are taken). */
async function openWhenFree(url: string, headers: Record<string, string>) {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const socket = screenSocket(url, headers);
    try {
      await socket.opened;
      return socket;
    } catch (err) {
      if (!/\b429\b/.test((err as Error).message) || Date.now() > deadline) throw err;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

function remoteOf(output: string): { url: URL; token: string } {
  const url = /remote display at (\S+) /.exec(output)?.[1];
  const token = /sign in remotely at \S+\/signin#token=(\S+)/.exec(output)?.[1];
  assert.ok(url && token, `no remote display in:\n${output}`);
  return { url: new URL(url), token };
}

Deno.test({
  name: "the screen is reachable only through the daemon's authenticated WebSocket",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "vat-screen-" });
    const state = `${dir}/s`;
    let daemon: VatProcess | null = null;
    let client: Deno.HttpClient | null = null;
    try {
      const appliance = await buildBusyboxAppliance();
      const repo = await applianceRepo(dir, appliance);
      daemon = await startVat(
        ["--headless", "--state", state, "--port", "0", "--listen", "127.0.0.1:0"],
        (out) => out.includes("sign in remotely at"),
      );
      const base = new URL(/sign in to the UI at (\S+)/.exec(daemon.output())![1]);
      const token = (await Deno.readTextFile(`${state}/token`)).trim();
      const bearer = { authorization: `Bearer ${token}` };
      await vatOk(["appliance", "add", repo, "--name", "desk", "--state", state]);

      // Not running: there is no screen to relay.
      const early = await upgradeOver(
        await Deno.connect({ hostname: base.hostname, port: Number(base.port) }),
        base.host,
        ROUTE,
        [`Authorization: Bearer ${token}`],
      );
      assert.match(early.status, /^HTTP\/1.1 409/);

      await vatOk(["start", "desk", "--state", state]);
      const runDir = `${state}/run/desk`;
      const pid = Number((await Deno.readTextFile(`${runDir}/qemu.pid`)).trim());

      // The probe sees a TCP listener where there is one (this process's own).
      const own = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      try {
        const mine = await tcpSocketsOf(Deno.pid);
        assert.ok(
          mine.some((s) => s.listening && s.port === own.addr.port),
          `the /proc probe missed a listener: ${JSON.stringify(mine)}`,
        );
      } finally {
        own.close();
      }
      // QEMU has no TCP socket at all (so no VNC or websocket port), IPv4 or IPv6.
      const cmdline = await Deno.readTextFile(`/proc/${pid}/cmdline`);
      assert.match(cmdline, /qemu-system/);
      assert.deepEqual(await tcpSocketsOf(pid), [], "QEMU holds TCP sockets");
      assert.doesNotMatch(cmdline, /websocket/);
      assert.match(cmdline, new RegExp(`-vnc\0unix:${runDir}/vnc\\.sock\0`));
      // Its Unix sockets are the VAT's user's alone, in a directory only they can enter.
      assert.equal((await Deno.stat(runDir)).mode! & 0o777, 0o700);
      for (const socket of ["vnc.sock", "qmp.sock", "console.sock"]) {
        const info = await Deno.lstat(`${runDir}/${socket}`);
        assert.ok(info.isSocket, socket);
        assert.equal(info.mode! & 0o777, 0o600, `${socket} is ${(info.mode! & 0o777).toString(8)}`);
        assert.equal(info.uid, Deno.uid());
      }

      // Strangers on loopback: no credentials, a wrong token, a forged cookie (401); a
      // real session's cookie sent by another site's page (403).
      const loopback = () => Deno.connect({ hostname: base.hostname, port: Number(base.port) });
      for (
        const headers of [[], ["Authorization: Bearer wrong"], ["Cookie: vat_session=forged"]]
      ) {
        const refused = await upgradeOver(await loopback(), base.host, ROUTE, headers);
        assert.match(refused.status, /^HTTP\/1.1 401/, headers.join());
        assert.equal(refused.payload, null);
      }
      const signIn = await fetch(new URL("/api/session", base), {
        method: "POST",
        body: JSON.stringify({ token }),
      });
      assert.equal(signIn.status, 200);
      await signIn.body?.cancel();
      const cookie = signIn.headers.get("set-cookie")!.split(";")[0];
      const foreign = await upgradeOver(await loopback(), base.host, ROUTE, [
        `Cookie: ${cookie}`,
        "Origin: http://evil.example",
      ]);
      assert.match(foreign.status, /^HTTP\/1.1 403/);

      // Signed in (the token, or the session from the UI's own origin): QEMU's RFB.
      const withToken = await upgradeOver(await loopback(), base.host, ROUTE, [
        `Authorization: Bearer ${token}`,
      ]);
      assert.match(withToken.status, /^HTTP\/1.1 101/);
      assert.equal(new TextDecoder().decode(withToken.payload!), GREETING);
      const wsUrl = `ws://${base.host}${ROUTE}`;
      const viewer = screenSocket(wsUrl, { cookie, origin: base.origin });
      await viewer.opened;
      assert.equal(new TextDecoder().decode(await viewer.take(12)), GREETING);
      // Both ways: our version goes to QEMU, which offers its security types (None).
      viewer.ws.send(new TextEncoder().encode(GREETING));
      assert.deepEqual([...await viewer.take(2)], [1, 1]);

      // The remote display (TLS): the same refusals and the same screen.
      const remote = remoteOf(daemon.output());
      assert.equal(remote.token, token);
      const certPem = await Deno.readTextFile(`${state}/remote-display/cert.pem`);
      const tls = () =>
        Deno.connectTls({
          hostname: remote.url.hostname,
          port: Number(remote.url.port),
          caCerts: [certPem],
        });
      const tlsStranger = await upgradeOver(await tls(), remote.url.host, ROUTE, []);
      assert.match(tlsStranger.status, /^HTTP\/1.1 401/);
      const tlsForged = await upgradeOver(await tls(), remote.url.host, ROUTE, [
        "Cookie: vat_session=forged",
      ]);
      assert.match(tlsForged.status, /^HTTP\/1.1 401/);
      const tlsViewer = await upgradeOver(await tls(), remote.url.host, ROUTE, [
        `Authorization: Bearer ${token}`,
      ]);
      assert.match(tlsViewer.status, /^HTTP\/1.1 101/);
      assert.equal(new TextDecoder().decode(tlsViewer.payload!), GREETING);
      client = Deno.createHttpClient({ caCerts: [certPem] });
      const tlsSignIn = await fetch(new URL("/api/session", remote.url), {
        client,
        method: "POST",
        body: JSON.stringify({ token }),
      });
      assert.equal(tlsSignIn.status, 200);
      await tlsSignIn.body?.cancel();
      const tlsCookie = tlsSignIn.headers.get("set-cookie")!.split(";")[0];
      const tlsSession = await upgradeOver(await tls(), remote.url.host, ROUTE, [
        `Cookie: ${tlsCookie}`,
        `Origin: ${remote.url.origin}`,
      ]);
      assert.match(tlsSession.status, /^HTTP\/1.1 101/);
      assert.equal(new TextDecoder().decode(tlsSession.payload!), GREETING);

      // A few relays per appliance: with the viewer open, three more fit, a fifth does not.
      // The hand-made upgrades above closed their connections without a close frame: the
      // daemon frees their places when it reads the end of each, which may not have
      // happened yet, so a refused one is tried again for a few seconds.
      const more = [];
      for (let i = 0; i < 3; i++) more.push(await openWhenFree(wsUrl, bearer));
      const fifth = await upgradeOver(await loopback(), base.host, ROUTE, [
        `Authorization: Bearer ${token}`,
      ]);
      assert.match(fifth.status, /^HTTP\/1.1 429/);
      for (const m of more) m.ws.close();
      await Promise.all(more.map((m) => m.closed));

      // Signing out closes the session's screen at once.
      const signOut = await fetch(new URL("/api/session", base), {
        method: "DELETE",
        headers: { cookie, origin: base.origin },
      });
      assert.equal(signOut.status, 200);
      await signOut.body?.cancel();
      const ended = await viewer.closed;
      assert.equal(ended.code, 1008);
      assert.equal(ended.reason, "signed out");

      // Stopping the appliance closes its screen; then there is none.
      const watcher = screenSocket(wsUrl, bearer);
      await watcher.opened;
      assert.equal(new TextDecoder().decode(await watcher.take(12)), GREETING);
      await vatOk(["stop", "desk", "--state", state]);
      assert.equal((await watcher.closed).code, 1000);
      const after = await upgradeOver(await loopback(), base.host, ROUTE, [
        `Authorization: Bearer ${token}`,
      ]);
      assert.match(after.status, /^HTTP\/1.1 409/);
    } finally {
      client?.close();
      await (daemon as VatProcess | null)?.stop();
      const left = await qemuProcessesUnder(state);
      await Deno.remove(dir, { recursive: true }).catch(() => {});
      assert.equal(left, "", "no QEMU left behind");
    }
  },
});
