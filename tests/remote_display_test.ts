/**
 * The remote display and the kiosk, with a real daemon: `--listen` serves the app over
 * TLS with a self-signed certificate made once and kept (key mode 0600), whose printed
 * fingerprint is the one the server presents; the API there refuses strangers and
 * signs in with the token (a `Secure` cookie), while the loopback listener keeps
 * serving the CLI. Without `--headless` the daemon opens a browser only when there is
 * a display (a stand-in `chromium` on PATH records how it was started) and ends it
 * when the daemon stops or dies.
 */

import assert from "node:assert/strict";
import { certificateFingerprint } from "../vat/daemon/tls_certificate.ts";
import { startVat } from "./helpers/processes.ts";
import { vatOk } from "./helpers/vat_cli.ts";

const READY = "sign in remotely at";

function remoteOf(output: string) {
  const match =
    /remote display at (\S+) \(TLS; (new|the) certificate's SHA-256 fingerprint: ([0-9A-F:]+)\)/
      .exec(output);
  assert.ok(match, `no remote display line in:\n${output}`);
  return { url: new URL(match[1]), created: match[2] === "new", fingerprint: match[3] };
}

/** The certificate the TLS server at `url` presents, as `openssl s_client` sees it. */
async function presentedCertificate(url: URL): Promise<string> {
  const out = await new Deno.Command("openssl", {
    args: ["s_client", "-connect", `${url.hostname}:${url.port}`, "-showcerts"],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const pem = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/
    .exec(new TextDecoder().decode(out.stdout))?.[0];
  assert.ok(pem, `openssl s_client got no certificate: ${new TextDecoder().decode(out.stderr)}`);
  return pem;
}

Deno.test({
  name: "vat --listen serves the UI and API over TLS with a certificate made once",
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "vat-remote-" });
    const state = `${dir}/state`;
    const args = ["--headless", "--state", state, "--port", "0", "--listen", "127.0.0.1:0"];
    let daemon = await startVat(args, (out) => out.includes(READY));
    let client: Deno.HttpClient | null = null;
    try {
      const first = remoteOf(daemon.output());
      assert.equal(first.created, true);
      assert.equal(first.url.protocol, "https:");
      assert.equal(first.url.hostname, "127.0.0.1");
      const certPem = await Deno.readTextFile(`${state}/remote-display/cert.pem`);
      assert.equal(certificateFingerprint(certPem), first.fingerprint);
      assert.equal((await Deno.stat(`${state}/remote-display/key.pem`)).mode! & 0o777, 0o600);

      // The server presents that certificate; it is trusted when given as the CA, and
      // by nothing else.
      assert.equal(
        certificateFingerprint(await presentedCertificate(first.url)),
        first.fingerprint,
      );
      const port = Number(first.url.port);
      const trusted = await Deno.connectTls({ hostname: "127.0.0.1", port, caCerts: [certPem] });
      await trusted.handshake();
      trusted.close();
      const untrusted = await Deno.connectTls({ hostname: "127.0.0.1", port });
      await assert.rejects(untrusted.handshake(), /certificate|issuer/i);
      untrusted.close();

      // The API over TLS: refused without a session, signed in through the token.
      client = Deno.createHttpClient({ caCerts: [certPem] });
      const page = await fetch(new URL("/signin", first.url), { client });
      assert.equal(page.status, 200);
      await page.body?.cancel();
      const refused = await fetch(new URL("/api/status", first.url), { client });
      assert.equal(refused.status, 401);
      await refused.body?.cancel();
      const token = /sign in remotely at \S+\/signin#token=(\S+)/.exec(daemon.output())![1];
      assert.equal(token, (await Deno.readTextFile(`${state}/token`)).trim());
      const signedIn = await fetch(new URL("/api/session", first.url), {
        client,
        method: "POST",
        body: JSON.stringify({ token }),
      });
      assert.equal(signedIn.status, 200);
      await signedIn.body?.cancel();
      const setCookie = signedIn.headers.get("set-cookie")!;
      assert.match(setCookie, /;\s*Secure(;|$)/);
      assert.match(setCookie, /HttpOnly/);
      const status = await fetch(new URL("/api/status", first.url), {
        client,
        headers: { cookie: setCookie.split(";")[0] },
      });
      assert.equal(status.status, 200);
      assert.deepEqual((await status.json()).remoteDisplay, {
        url: first.url.href,
        fingerprint: first.fingerprint,
      });

      // The loopback listener still serves the CLI, and its cookie is not Secure (it
      // would never be sent back over plain HTTP).
      await vatOk(["ls", "--state", state]);
      const cliStatus = JSON.parse((await vatOk(["status", "--state", state, "--json"])).stdout);
      assert.equal(cliStatus.remoteDisplay.fingerprint, first.fingerprint);
      const local = /listening at (\S+)/.exec(daemon.output())![1];
      const localSignIn = await fetch(new URL("/api/session", local), {
        method: "POST",
        body: JSON.stringify({ token }),
      });
      assert.equal(localSignIn.status, 200);
      await localSignIn.body?.cancel();
      assert.doesNotMatch(localSignIn.headers.get("set-cookie")!, /Secure/);

      // A restart reuses the certificate.
      await daemon.stop();
      daemon = await startVat(args, (out) => out.includes(READY));
      const second = remoteOf(daemon.output());
      assert.equal(second.created, false);
      assert.equal(second.fingerprint, first.fingerprint);
      assert.equal(await Deno.readTextFile(`${state}/remote-display/cert.pem`), certPem);
      assert.equal(
        certificateFingerprint(await presentedCertificate(second.url)),
        first.fingerprint,
      );
    } finally {
      client?.close();
      await daemon.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

/** A stand-in browser: records its pid and arguments, then waits to be killed. */
async function fakeBrowser(dir: string): Promise<string> {
  const bin = `${dir}/bin`;
  await Deno.mkdir(bin);
  await Deno.writeTextFile(
    `${bin}/chromium`,
    `#!/bin/sh\nprintf '%s\\n' "$$" "$@" > "${dir}/launched"\nexec sleep 600\n`,
    { mode: 0o755 },
  );
  return bin;
}

/** Whether `pid` runs (a zombie does not count). */
async function running(pid: number): Promise<boolean> {
  try {
    const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
    return !/^[ZX]$/.test(stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3));
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return false;
    throw err;
  }
}

async function until(what: string, probe: () => Promise<boolean>, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

Deno.test({
  name: "vat opens a browser only with a display, and ends it when it stops or dies",
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "vat-kiosk-" });
    const state = `${dir}/state`;
    const path = `${await fakeBrowser(dir)}:${Deno.env.get("PATH")}`;
    const args = ["--state", state, "--port", "0"];
    const stops: ((signal?: Deno.Signal) => Promise<unknown>)[] = [];
    let browserPid = 0;
    try {
      // No display: nothing is started, and the daemon says why.
      const headless = await startVat(
        args,
        (out) => out.includes("not opening a browser"),
        { env: { PATH: path, DISPLAY: undefined, WAYLAND_DISPLAY: undefined } },
      );
      stops.push(headless.stop);
      assert.match(headless.output(), /there is no display \(DISPLAY and WAYLAND_DISPLAY/);
      assert.match(headless.output(), /sign in to the UI at/);
      await headless.stop();
      await assert.rejects(Deno.stat(`${dir}/launched`), Deno.errors.NotFound);

      // A display: the app window opens on a page that forwards to the sign-in URL,
      // so that the token is not on the browser's command line.
      const kiosk = await startVat(
        [...args, "--kiosk"],
        (out) => out.includes("opened the UI in chromium (kiosk)"),
        { env: { PATH: path, DISPLAY: ":vat-test", WAYLAND_DISPLAY: undefined } },
      );
      stops.push(kiosk.stop);
      await until(
        "the browser",
        async () => (await Deno.stat(`${dir}/launched`).catch(() => null)) !== null,
      );
      await until(
        "its arguments",
        async () => (await Deno.readTextFile(`${dir}/launched`)).includes("signin.html"),
      );
      const [pid, ...launched] = (await Deno.readTextFile(`${dir}/launched`)).trim().split("\n");
      browserPid = Number(pid);
      const token = (await Deno.readTextFile(`${state}/token`)).trim();
      assert.ok(launched.includes(`--user-data-dir=${state}/browser`), launched.join(" "));
      // Full screen: `--kiosk URL` (with `--app` too, Chromium under cage exits at once).
      assert.ok(launched.includes("--kiosk"));
      assert.ok(launched.includes(`file://${state}/browser/signin.html`), launched.join(" "));
      assert.ok(!launched.some((a) => a.startsWith("--app")), launched.join(" "));
      assert.ok(!launched.join(" ").includes(token), "the token is on the command line");
      assert.match(await Deno.readTextFile(`${state}/browser/signin.html`), new RegExp(token));
      assert.equal((await Deno.stat(`${state}/browser/signin.html`)).mode! & 0o777, 0o600);
      assert.equal(await running(browserPid), true);
      const status = await kiosk.stop();
      assert.equal(status.code, 0);
      assert.equal(await running(browserPid), false, "the browser outlived the daemon");

      // A killed daemon takes its browser along (parent-death signal).
      await Deno.remove(`${dir}/launched`);
      const killed = await startVat(
        args,
        (out) => out.includes("opened the UI in chromium"),
        { env: { PATH: path, DISPLAY: ":vat-test" } },
      );
      stops.push(killed.stop);
      await until(
        "the browser",
        async () => (await Deno.stat(`${dir}/launched`).catch(() => null)) !== null,
      );
      await until(
        "its pid",
        async () => (await Deno.readTextFile(`${dir}/launched`)).includes("\n"),
      );
      browserPid = Number((await Deno.readTextFile(`${dir}/launched`)).split("\n")[0]);
      await killed.stop("SIGKILL");
      await until("the browser to end with the daemon", async () => !(await running(browserPid)));
    } finally {
      for (const stop of stops) await stop("SIGKILL").catch(() => {});
      if (browserPid && await running(browserPid)) Deno.kill(browserPid, "SIGKILL");
      await Deno.remove(dir, { recursive: true });
    }
  },
});
