/**
 * The browser UI, end to end: a real daemon (`--demo`, which provides a bootable
 * appliance), Debian's Chromium driven by playwright-core. Signing in with the URL the
 * daemon prints, the live list, starting an appliance and seeing its screen (noVNC
 * through the daemon's proxy), typing into it, stopping it; the serial log streamed live
 * in its tab, a publish's progress bar, the cache and offline state, keyboard-only use
 * (visible focus, tabs, the delete dialog's focus), errors in words, a phone's width, that
 * nothing is backed up without a data repository; and
 * every route, the event streams and the console's WebSocket refusing requests without a
 * session.
 * Screenshots go to `tests/artefacts/` (git-ignored).
 */

/// <reference lib="dom" />

import assert from "node:assert/strict";
import type { BrowserContext, Page } from "playwright-core";
import { buildUi } from "../vat/ui/build_ui.ts";
import { ARTEFACTS, launchChromium, until } from "./helpers/browser.ts";
import { startVat, type VatProcess } from "./helpers/processes.ts";
import { upgradeRequest } from "./helpers/websocket_upgrade.ts";

const BOOT_TIMEOUT_MS = 90_000;

/** Every API route, with a method; each must answer 401 without a session. */
const ROUTES: [string, string][] = [
  ["GET", "/api/status"],
  ["GET", "/api/events"],
  ["GET", "/api/appliances"],
  ["POST", "/api/appliances"],
  ["GET", "/api/appliances/demo"],
  ["POST", "/api/appliances/demo/start"],
  ["POST", "/api/appliances/demo/stop"],
  ["POST", "/api/appliances/demo/suspend"],
  ["POST", "/api/appliances/demo/reset"],
  ["DELETE", "/api/appliances/demo?confirm=demo"],
  ["GET", "/api/appliances/demo/console"],
  ["GET", "/api/appliances/demo/console/stream"],
  ["POST", "/api/appliances/demo/console"],
  ["POST", "/api/appliances/demo/publish"],
  ["POST", "/api/appliances/demo/hoard"],
  ["GET", "/api/appliances/demo/snapshots"],
  ["GET", "/api/appliances/demo/stats"],
  ["GET", "/api/appliances/demo/stats/stream"],
  ["POST", "/api/appliances/demo/backup"],
  ["POST", "/api/appliances/demo/undo"],
  ["GET", "/api/appliances/demo/vnc"],
  ["DELETE", "/api/session"],
  ["GET", "/api/no-such-route"],
];

/** The status line of a WebSocket upgrade of `path`, sent by hand. */
async function upgradeStatus(base: URL, path: string, headers: string[] = []): Promise<string> {
  const conn = await Deno.connect({ hostname: base.hostname, port: Number(base.port) });
  try {
    await conn.write(upgradeRequest(base.host, path, headers));
    const buf = new Uint8Array(4096);
    const n = await conn.read(buf);
    return new TextDecoder().decode(buf.subarray(0, n ?? 0)).split("\r\n")[0];
  } finally {
    conn.close();
  }
}

async function refusedWithout(base: URL, headers: Record<string, string>, label: string) {
  for (const [method, path] of ROUTES) {
    const res = await fetch(new URL(path, base), {
      method,
      headers: { ...headers, "content-type": "application/json" },
      body: method === "GET" ? undefined : "{}",
    });
    await res.body?.cancel();
    assert.equal(res.status, 401, `${label}: ${method} ${path} answered ${res.status}`);
  }
  const ws = await upgradeStatus(
    base,
    "/api/appliances/demo/vnc",
    Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
  );
  assert.match(ws, /^HTTP\/1.1 401/, `${label}: the console's WebSocket answered ${ws}`);
}

/** Counts the canvas's distinct colours and non-black pixels (noVNC draws a 2D canvas). */
function canvasContent(page: Page) {
  return page.evaluate(() => {
    const canvas = document.querySelector<HTMLCanvasElement>("[data-testid=vnc] canvas");
    if (!canvas || canvas.width === 0) return { colours: 0, lit: 0, width: 0 };
    const data = canvas.getContext("2d")!.getImageData(0, 0, canvas.width, canvas.height).data;
    const colours = new Set<number>();
    let lit = 0;
    for (let i = 0; i < data.length; i += 4) {
      colours.add((data[i] << 16) | (data[i + 1] << 8) | data[i + 2]);
      if (data[i] + data[i + 1] + data[i + 2] > 60) lit++;
    }
    return { colours: colours.size, lit, width: canvas.width };
  });
}

Deno.test({
  name: "the UI signs in, shows live appliances, runs one with its screen, and refuses strangers",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await buildUi();
    await Deno.mkdir(ARTEFACTS, { recursive: true });
    const dir = await Deno.makeTempDir({ prefix: "vat-ui-" });
    let daemon: VatProcess | null = null;
    let context: BrowserContext | null = null;
    try {
      daemon = await startVat(
        ["--demo", "--headless", "--state", `${dir}/state`, "--port", "0"],
        (out) => out.includes("sign in to the UI at"),
        { timeoutMs: 240_000 },
      );
      const signIn = /sign in to the UI at (\S+)/.exec(daemon.output())![1];
      const base = new URL(signIn);
      const token = (await Deno.readTextFile(`${dir}/state/token`)).trim();
      assert.equal(new URL(signIn).hash, `#token=${token}`);

      // Strangers: no session, a wrong token, a forged cookie.
      await refusedWithout(base, {}, "no session");
      await refusedWithout(base, { authorization: "Bearer wrong" }, "wrong token");
      await refusedWithout(base, { cookie: "vat_session=forged" }, "forged cookie");
      const wrongSignIn = await fetch(new URL("/api/session", base), {
        method: "POST",
        body: JSON.stringify({ token: token.replace(/^./, (c) => c === "a" ? "b" : "a") }),
      });
      assert.equal(wrongSignIn.status, 401);
      assert.match((await wrongSignIn.json()).error, /wrong access token/);
      assert.equal(wrongSignIn.headers.get("set-cookie"), null);

      // A good sign-in gives a cookie; a state change with it needs our own origin.
      const good = await fetch(new URL("/api/session", base), {
        method: "POST",
        body: JSON.stringify({ token }),
      });
      assert.equal(good.status, 200);
      await good.body?.cancel();
      const setCookie = good.headers.get("set-cookie")!;
      assert.match(setCookie, /HttpOnly/);
      assert.match(setCookie, /SameSite=Strict/);
      const cookie = setCookie.split(";")[0];
      const status = await fetch(new URL("/api/status", base), { headers: { cookie } });
      assert.equal(status.status, 200);
      await status.body?.cancel();
      const foreignOrigins: Record<string, string>[] = [
        { origin: "http://evil.example" },
        { "sec-fetch-site": "cross-site" },
      ];
      for (const foreign of foreignOrigins) {
        const res = await fetch(new URL("/api/appliances/demo/reset", base), {
          method: "POST",
          headers: { cookie, ...foreign },
        });
        assert.equal(res.status, 403, JSON.stringify(foreign));
        await res.body?.cancel();
      }
      assert.match(
        await upgradeStatus(base, "/api/appliances/demo/vnc", [
          `Cookie: ${cookie}`,
          "Origin: http://evil.example",
        ]),
        /^HTTP\/1.1 403/,
      );

      context = await launchChromium(`${dir}/chromium`);
      const page = context.pages()[0] ?? await context.newPage();
      const pageErrors: string[] = [];
      page.on("pageerror", (err) => pageErrors.push(err.message));
      const keysSent: number[] = [];
      let framesSent = 0;
      page.on("websocket", (ws) =>
        ws.on("framesent", (frame) => {
          framesSent++;
          // RFB KeyEvent messages going to the guest: 4, down-flag, 2 padding, keysym.
          const bytes = typeof frame.payload === "string"
            ? new TextEncoder().encode(frame.payload)
            : new Uint8Array(frame.payload);
          // QEMU's extended KeyEvent (noVNC uses it with QEMU): 255, 0, down (2), keysym (4),
          // keycode (4).
          for (let i = 0; i + 8 <= bytes.length; i++) {
            if (bytes[i] === 4 && bytes[i + 1] <= 1 && bytes[i + 2] === 0 && bytes[i + 3] === 0) {
              keysSent.push((bytes[i + 6] << 8) | bytes[i + 7]);
            } else if (bytes[i] === 255 && bytes[i + 1] === 0 && bytes[i + 2] === 0) {
              keysSent.push((bytes[i + 6] << 8) | bytes[i + 7]);
            }
          }
        }));

      // The page's requests, to check that the serial log streams rather than polls.
      const requests: string[] = [];
      page.on("request", (r) => requests.push(`${r.method()} ${new URL(r.url()).pathname}`));
      const focused = () => page.evaluate(() => document.activeElement?.textContent?.trim() ?? "");

      // Sign in with the URL: the token leaves the address bar; the list shows.
      await page.goto(signIn);
      await page.getByRole("heading", { name: "demo" }).waitFor();
      assert.equal(new URL(page.url()).hash, "#/");
      assert.equal(new URL(page.url()).pathname, "/");
      const cookies = await context.cookies();
      assert.equal(cookies.find((c) => c.name === "vat_session")?.httpOnly, true);
      await page.getByTestId("stream").getByText("live").waitFor();

      // How much of the version is cached and whether it is safe offline, in words.
      const cache = page.getByTestId("cache");
      await until(
        "the cache's state",
        async () => /of v1 cached/.test(await cache.textContent() ?? ""),
      );
      assert.match((await cache.textContent())!, /Not safe offline/);
      assert.equal(
        await page.getByTestId("backup").textContent(),
        "Not backed up: this VAT has no data repository.",
      );
      await page.screenshot({ path: `${ARTEFACTS}ui-list-1280.png` });

      // The keyboard alone: Tab reaches the appliance's link, and the focus shows.
      for (let i = 0; i < 10 && await focused() !== "demo"; i++) await page.keyboard.press("Tab");
      assert.equal(await focused(), "demo");
      assert.notEqual(
        await page.evaluate(() => getComputedStyle(document.activeElement!).outlineStyle),
        "none",
      );
      await page.screenshot({ path: `${ARTEFACTS}ui-focus-1280.png` });

      // The appliance's page, started with the keyboard alone.
      await page.keyboard.press("Enter");
      await page.getByRole("tab", { name: "Console" }).waitFor();
      await page.getByRole("button", { name: "Start" }).focus();
      await page.keyboard.press("Enter");
      const state = page.getByTestId("state");
      await until(
        "running",
        async () => (await state.textContent()) === "running",
        BOOT_TIMEOUT_MS,
      );
      await page.getByTestId("screen-state").getByText("connected").waitFor({ timeout: 30_000 });
      const shown = await until("a screen that is not blank", async () => {
        const c = await canvasContent(page);
        return c.colours > 1 && c.lit > 100 ? c : null;
      }, BOOT_TIMEOUT_MS);
      assert.ok(shown.width > 0);

      // The serial log is one tab away (the arrow keys move there), and streams.
      await page.getByRole("tab", { name: "Console" }).focus();
      await page.keyboard.press("ArrowRight");
      assert.match(page.url(), /#\/appliance\/demo\/serial$/);
      assert.equal(await focused(), "Serial log");
      const log = page.getByTestId("serial-log");
      // The tab switch renders on the next frame: wait for it rather than race it.
      await log.waitFor({ state: "visible", timeout: 5_000 });
      await page.getByTestId("vnc").waitFor({ state: "hidden", timeout: 5_000 });
      await until(
        "VAT-READY",
        async () => (await log.textContent())?.includes("VAT-READY"),
        BOOT_TIMEOUT_MS,
      );
      let reloaded = false;
      page.on("load", () => reloaded = true);
      // A line the guest prints now (asked from outside, with the CLI's token) appears
      // without a reload.
      const ask = await fetch(new URL("/api/appliances/demo/console", base), {
        method: "POST",
        headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
        body: JSON.stringify({ line: "count" }),
      });
      assert.equal(ask.status, 200, await ask.text());
      await until(
        "the guest's reply, streamed",
        async () => (await log.textContent())?.includes("VAT-REPLY count 1"),
      );
      // Typing into the serial console: the guest answers.
      await page.getByLabel("Type a line").fill("ping");
      await page.keyboard.press("Enter");
      await until(
        "the guest's reply",
        async () => (await log.textContent())?.includes("VAT-REPLY ping pong"),
      );
      // The log follows its end while the reader is there, and stays put when scrolled up.
      const sendLines = async (n: number) => {
        for (let i = 0; i < n; i++) {
          const res = await fetch(new URL("/api/appliances/demo/console", base), {
            method: "POST",
            headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
            body: JSON.stringify({ line: "count" }),
          });
          assert.equal(res.status, 200, await res.text());
        }
      };
      await sendLines(40);
      // A TCG guest on two busy cores answers 40 lines in seconds, or in a minute.
      await until(
        "40 more replies",
        async () => (await log.textContent())?.includes("count 41"),
        BOOT_TIMEOUT_MS,
      );
      const overflow = await log.evaluate((el) => el.scrollHeight > el.clientHeight);
      assert.ok(overflow, "the log is long enough to scroll");
      await until(
        "the log at its end",
        () => log.evaluate((el) => el.scrollHeight - el.scrollTop - el.clientHeight < 24),
        5000,
      );
      await log.evaluate((el) => el.scrollTop = 0);
      await sendLines(1);
      await until("one more reply", async () => (await log.textContent())?.includes("count 42"));
      assert.equal(await log.evaluate((el) => el.scrollTop), 0);
      await log.evaluate((el) => el.scrollTop = el.scrollHeight);
      assert.ok(requests.includes("GET /api/appliances/demo/console/stream"));
      assert.ok(!requests.includes("GET /api/appliances/demo/console"), "the log is not polled");
      assert.equal(reloaded, false);
      await page.screenshot({ path: `${ARTEFACTS}ui-serial-1280.png` });

      // Back to the screen with the keyboard: it is still connected; typing reaches QEMU.
      await page.getByRole("tab", { name: "Serial log" }).focus();
      await page.keyboard.press("ArrowLeft");
      assert.equal(await focused(), "Console");
      await page.getByTestId("screen-state").getByText("connected").waitFor();
      await until("the screen again", async () => (await canvasContent(page)).lit > 100);
      await page.screenshot({ path: `${ARTEFACTS}ui-appliance-1280.png` });
      await page.getByTestId("vnc").screenshot({ path: `${ARTEFACTS}ui-vnc-screen.png` });
      await page.getByRole("button", { name: "Type into the screen" }).click();
      await page.keyboard.type("ls");
      await page.keyboard.press("Enter");
      const screenFocus = await page.evaluate(() => document.activeElement?.tagName);
      await until(
        `key events (${framesSent} frames sent; focus on ${screenFocus}; keys ${keysSent})`,
        () => Promise.resolve(keysSent.includes(0x6c) && keysSent.length),
        10_000,
      );

      // Publishing the running system disk shows as a progress bar, live over the event
      // stream. It may be quick: a watcher in the page records every bar it sees.
      await page.evaluate(() => {
        const seen: Record<string, string | null>[] = [];
        (globalThis as unknown as { seenBars: typeof seen }).seenBars = seen;
        new MutationObserver(() => {
          for (const bar of document.querySelectorAll("[role=progressbar]")) {
            const label = document.getElementById(bar.getAttribute("aria-labelledby") ?? "");
            seen.push({
              label: label?.textContent ?? null,
              now: bar.getAttribute("aria-valuenow"),
              max: bar.getAttribute("aria-valuemax"),
              text: bar.getAttribute("aria-valuetext"),
            });
          }
        }).observe(document.body, { subtree: true, childList: true, attributes: true });
      });
      const publishing = fetch(new URL("/api/appliances/demo/publish", base), {
        method: "POST",
        headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
        body: JSON.stringify({ key: `${dir}/state/demo/publisher.key` }),
      });
      const barShot = page.getByRole("progressbar").waitFor({ timeout: 20_000 })
        .then(() => page.screenshot({ path: `${ARTEFACTS}ui-publish-1280.png` }))
        .catch(() => {});
      const published = await publishing;
      assert.equal(published.status, 200);
      assert.equal((await published.json()).version, 2);
      await barShot;
      const bars = await page.evaluate(() =>
        (globalThis as unknown as { seenBars: Record<string, string | null>[] }).seenBars
      );
      const publishBar = bars.find((b) => b.label === "Publishing the system disk");
      assert.ok(publishBar, `no publish progress bar among ${JSON.stringify(bars)}`);
      assert.ok(Number(publishBar.max) > 0);
      assert.match(publishBar.text!, /^\d+%: .+ of .+/);
      await page.getByText("update available").waitFor();
      await page.getByRole("progressbar").waitFor({ state: "detached" });

      // A phone's width: nothing wider than the screen, on either tab.
      await page.setViewportSize({ width: 390, height: 844 });
      await page.screenshot({ path: `${ARTEFACTS}ui-appliance-390.png`, fullPage: true });
      assert.ok(await page.evaluate(() => document.documentElement.scrollWidth <= 390));
      await page.getByRole("tab", { name: "Serial log" }).click();
      await page.screenshot({ path: `${ARTEFACTS}ui-serial-390.png`, fullPage: true });
      assert.ok(await page.evaluate(() => document.documentElement.scrollWidth <= 390));
      await page.setViewportSize({ width: 1280, height: 800 });

      // Live state: stopped from outside (the CLI's token), the page follows without a reload.
      const stop = await fetch(new URL("/api/appliances/demo/stop", base), {
        method: "POST",
        headers: { authorization: `Bearer ${token}` },
      });
      assert.equal(stop.status, 200, await stop.text());
      await until("stopped", async () => (await state.textContent()) === "stopped", 60_000);
      assert.equal(reloaded, false);
      await page.getByText("Start demo to type into its console.").waitFor();
      await page.getByRole("tab", { name: "Console" }).click();
      await page.getByText("The screen shows while demo runs.").waitFor();

      // Keeping it for offline use (Space on the toggle): it becomes safe offline.
      const keep = page.getByRole("button", { name: "Keep for offline use" });
      await keep.focus();
      await page.keyboard.press("Space");
      await until(
        "safe offline",
        async () => /Safe to use offline/.test(await cache.textContent() ?? ""),
      );
      assert.equal(await keep.getAttribute("aria-pressed"), "true");
      assert.match((await cache.textContent())!, /All .+ of v2 cached/);

      // Delete asks first, naming what is lost: a modal dialog that keeps the keyboard,
      // and gives the focus back when it goes.
      await page.getByRole("button", { name: "Delete…" }).focus();
      await page.keyboard.press("Enter");
      const dialog = page.getByRole("alertdialog");
      await dialog.waitFor();
      assert.match((await dialog.textContent())!, /user disk/);
      assert.equal(await focused(), "Keep demo");
      await page.keyboard.press("Tab");
      assert.equal(await focused(), "Delete demo and its data");
      await page.keyboard.press("Tab");
      assert.equal(await focused(), "Keep demo");
      await page.keyboard.press("Shift+Tab");
      assert.equal(await focused(), "Delete demo and its data");
      await page.screenshot({ path: `${ARTEFACTS}ui-delete-dialog-1280.png` });
      await page.keyboard.press("Escape");
      await dialog.waitFor({ state: "detached" });
      await until("the focus back on Delete…", async () => await focused() === "Delete…", 2000);
      await page.keyboard.press("Space");
      await dialog.waitFor();
      await page.keyboard.press("Space"); // on "Keep demo"
      await dialog.waitFor({ state: "detached" });
      await until("the focus back on Delete…", async () => await focused() === "Delete…", 2000);
      await page.screenshot({ path: `${ARTEFACTS}ui-stopped-1280.png` });

      // Errors say what failed and what to do, never a stack trace: a daemon that does
      // not answer, and one that answers with something other than its JSON errors.
      const banner = page.locator(".banner");
      await page.route("**/api/appliances/demo/reset", (r) => r.abort());
      await page.getByRole("button", { name: "Reset" }).click();
      assert.match(
        (await banner.textContent())!,
        /resetting demo failed: the VAT daemon did not answer; check that it still runs/,
      );
      await page.unroute("**/api/appliances/demo/reset");
      await page.route("**/api/appliances/demo/reset", (r) =>
        r.fulfill({
          status: 500,
          contentType: "text/plain",
          body: "TypeError: boom\n    at reset (file:///vat/appliance/appliances.ts:1:2)",
        }));
      await page.getByRole("button", { name: "Reset" }).click();
      await banner.getByText(/the daemon answered 500; try again/).waitFor();
      assert.doesNotMatch((await banner.textContent())!, /TypeError|at reset|\.ts:\d/);
      await page.screenshot({ path: `${ARTEFACTS}ui-error-1280.png` });
      await page.unroute("**/api/appliances/demo/reset");
      await banner.getByRole("button", { name: "Dismiss" }).focus();
      await page.keyboard.press("Enter");
      await banner.waitFor({ state: "detached" });
      await page.goto(`${base.origin}/#/appliance/nosuch`);
      await page.getByRole("alert").getByText(/no appliance "nosuch".*vat appliance add/)
        .waitFor();

      // The list at a phone's width.
      await page.goto(`${base.origin}/#/`);
      await page.setViewportSize({ width: 390, height: 844 });
      await page.getByTestId("stream").getByText("live").waitFor();
      await page.screenshot({ path: `${ARTEFACTS}ui-list-390.png`, fullPage: true });
      assert.ok(await page.evaluate(() => document.documentElement.scrollWidth <= 390));
      await page.setViewportSize({ width: 1280, height: 800 });

      // No script error anywhere on the way.
      assert.deepEqual(pageErrors, []);

      // Signing out ends the session; a wrong token on the sign-in screen is refused.
      await page.getByRole("button", { name: "Sign out" }).click();
      await page.getByRole("heading", { name: "Sign in to the VAT" }).waitFor();
      const after = await page.evaluate(() => fetch("/api/status").then((r) => r.status));
      assert.equal(after, 401);
      await page.getByLabel("Sign-in URL or access token").fill("not-the-token");
      await page.keyboard.press("Enter");
      await page.getByRole("alert").getByText(/wrong access token/).waitFor();
      await page.screenshot({ path: `${ARTEFACTS}ui-signin-refused.png` });
      await page.getByLabel("Sign-in URL or access token").fill(signIn);
      await page.keyboard.press("Enter");
      await page.getByRole("heading", { name: "demo" }).waitFor();
    } finally {
      await context?.close().catch(() => {});
      await daemon?.stop();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});
