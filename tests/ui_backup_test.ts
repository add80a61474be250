/**
 * Backups in the browser UI, end to end: a real daemon with a data repository (a temp
 * directory) and the demo appliance, Debian's Chromium driven by playwright-core. A
 * start that another VAT's hold refuses offers its two choices and starts again as
 * chosen; the guest writes a file; the bytes still to back up show (with the rate of a
 * capped upload), "Back up now" uploads them; a queued snapshot shows; they reach zero
 * after the stop without a reload; the snapshots are listed; an undo through the UI's
 * confirmation lists its own entry and keeps every earlier one; keyboard alone, and a
 * phone's width. Screenshots go to `tests/artefacts/` (git-ignored).
 */

/// <reference lib="dom" />

import assert from "node:assert/strict";
import type { BrowserContext } from "playwright-core";
import { buildUi } from "../vat/ui/build_ui.ts";
import { ARTEFACTS, launchChromium, until } from "./helpers/browser.ts";
import { startVat, type VatProcess } from "./helpers/processes.ts";
import { vatOk } from "./helpers/vat_cli.ts";

const BOOT_TIMEOUT_MS = 90_000;

/** What the daemon answers when another VAT holds the subscription (as `SubscriptionHeldError`). */
const HELD_ELSEWHERE = '"demo" is in use on another VAT (other-pc, id 0123abcd, last seen 4 s ' +
  "ago). Start it here with --take-over (that VAT keeps its unsent changes as a fork) or " +
  "--fork (this VAT continues in a new subscription); or stop it there first";

Deno.test({
  name: "the UI shows what is left to back up, lists snapshots, undoes, and offers take-over",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await buildUi();
    await Deno.mkdir(ARTEFACTS, { recursive: true });
    const dir = await Deno.makeTempDir({ prefix: "vat-ui-backup-" });
    let daemon: VatProcess | null = null;
    let context: BrowserContext | null = null;
    try {
      await vatOk(["keygen", "--user", "--out", `${dir}/user.key`]);
      daemon = await startVat(
        [
          "--demo",
          "--headless",
          "--state",
          `${dir}/state`,
          "--port",
          "0",
          "--data-repo",
          `${dir}/data`,
          "--user-key",
          `${dir}/user.key`,
          "--snapshot-interval",
          "3600",
          // 256 KiB/s: slow enough that uploads show their rate and their queued snapshots.
          "--backup-limit",
          "2M",
        ],
        (out) => out.includes("sign in to the UI at"),
        { timeoutMs: 240_000 },
      );
      const signIn = /sign in to the UI at (\S+)/.exec(daemon.output())![1];
      const base = new URL(signIn);
      const token = (await Deno.readTextFile(`${dir}/state/token`)).trim();
      const consoleLog = async () => {
        const res = await fetch(new URL("/api/appliances/demo/console", base), {
          headers: { authorization: `Bearer ${token}` },
        });
        return await res.text();
      };
      /** Types `line` into the guest's serial console and waits for `reply`. */
      const ask = async (line: string, reply: string) => {
        const before = (await consoleLog()).split(reply).length;
        const res = await fetch(new URL("/api/appliances/demo/console", base), {
          method: "POST",
          headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
          body: JSON.stringify({ line }),
        });
        assert.equal(res.status, 200, await res.text());
        await until(reply, async () => (await consoleLog()).split(reply).length > before);
      };

      context = await launchChromium(`${dir}/chromium`);
      const page = context.pages()[0] ?? await context.newPage();
      const pageErrors: string[] = [];
      page.on("pageerror", (err) => pageErrors.push(err.message));
      let reloaded = false;
      const focused = () => page.evaluate(() => document.activeElement?.textContent?.trim() ?? "");
      const backup = page.getByTestId("backup");
      const backupText = async () => (await backup.textContent()) ?? "";

      // Before its first start: it will be backed up, there is nothing yet.
      await page.goto(signIn);
      await page.getByRole("heading", { name: "demo" }).waitFor();
      await until(
        "the backup's state",
        async () => /once demo has started/.test(await backupText()),
      );
      await page.getByRole("link", { name: "demo" }).click();
      const snapshotsSection = page.getByRole("region", { name: "Snapshots" });
      await snapshotsSection.getByText("No snapshots yet: the first is taken when demo starts.")
        .waitFor();
      page.on("load", () => reloaded = true);
      // Some states are brief (a snapshot waiting for upload): a watcher records them all.
      await page.evaluate(() => {
        const seen = new Set<string>();
        (globalThis as unknown as { seen: Set<string> }).seen = seen;
        new MutationObserver(() => {
          for (const el of document.querySelectorAll("[data-testid=backup], .snapshot-title")) {
            seen.add(el.textContent ?? "");
          }
        }).observe(document.body, { subtree: true, childList: true, characterData: true });
      });
      const seen = () =>
        page.evaluate(() => [...(globalThis as unknown as { seen: Set<string> }).seen]);

      // Another VAT holds the subscription (the first answer is that of such a daemon):
      // the UI asks, and starts again as chosen.
      const startBodies: string[] = [];
      page.on("request", (r) => {
        if (r.url().endsWith("/api/appliances/demo/start")) startBodies.push(r.postData() ?? "");
      });
      let refused = false;
      await page.route("**/api/appliances/demo/start", (route) => {
        if (refused) return route.continue();
        refused = true;
        return route.fulfill({
          status: 409,
          contentType: "application/json",
          body: JSON.stringify({ error: HELD_ELSEWHERE }),
        });
      });
      await page.getByRole("button", { name: "Start" }).focus();
      await page.keyboard.press("Enter");
      const conflict = page.getByRole("alertdialog", { name: "demo is in use on another VAT" });
      await conflict.waitFor();
      const conflictText = (await conflict.textContent())!;
      assert.match(conflictText, /other-pc, id 0123abcd/);
      assert.match(conflictText, /Take over here.*keeps the changes it has not uploaded/);
      assert.match(conflictText, /Continue in a fork.*new subscription/);
      assert.doesNotMatch(conflictText, /--take-over/);
      assert.equal(await focused(), "Don't start");
      await page.screenshot({ path: `${ARTEFACTS}ui-backup-conflict-1280.png` });
      await page.keyboard.press("Tab");
      assert.equal(await focused(), "Take over here");
      await page.keyboard.press("Enter");
      await conflict.waitFor({ state: "detached" });
      await until("the second start", () => Promise.resolve(startBodies.length === 2));
      assert.deepEqual(startBodies.map((b) => JSON.parse(b)), [{}, { takeOver: true }]);
      assert.equal(await page.locator(".banner").count(), 0, "no error banner");

      const state = page.getByTestId("state");
      await until(
        "running",
        async () => (await state.textContent()) === "running",
        BOOT_TIMEOUT_MS,
      );
      await until(
        "VAT-READY",
        async () => (await consoleLog()).includes("VAT-READY"),
        BOOT_TIMEOUT_MS,
      );

      // The guest writes a file: what is left to back up shows, live.
      await ask("write user note hello", "VAT-REPLY write ok");
      await ask("sync", "VAT-REPLY sync ok");
      await until("bytes to back up", async () => /still to back up/.test(await backupText()));
      assert.match(await backupText(), /^\d+(\.\d+)? [KMG]?i?B still to back up/);
      assert.ok(
        await page.getByRole("button", { name: /Undo to this version/ }).first().isDisabled(),
      );
      await snapshotsSection.getByText("Stop demo to undo to an earlier version.").waitFor();
      await page.screenshot({ path: `${ARTEFACTS}ui-backup-pending-1280.png`, fullPage: true });

      // "Back up now" while it runs: a snapshot on request, and nothing left to upload.
      const entries = snapshotsSection.getByTestId("snapshot");
      await snapshotsSection.getByRole("button", { name: "Back up now" }).focus();
      await page.keyboard.press("Enter");
      await entries.filter({ hasText: "backed up on request" }).first().waitFor();
      await until(
        "the snapshot on request uploaded",
        async () => /^All changes backed up \(version \d+\)\.$/.test(await backupText()),
        60_000,
      );

      // 2 MiB more: its upload after the stop takes seconds, and shows its rate.
      await ask("fill user big 2", "VAT-REPLY fill");
      await until("bytes to back up", async () => /still to back up/.test(await backupText()));

      // Stopped (with the keyboard): the stop's snapshot uploads and the count reaches zero.
      await page.getByRole("button", { name: "Stop" }).focus();
      await page.keyboard.press("Enter");
      await until("stopped", async () => (await state.textContent()) === "stopped", 60_000);
      const done = await until(
        "everything backed up",
        async () => /^All changes backed up \(version (\d+)\)\.$/.exec(await backupText()),
        60_000,
      );
      const lastVersion = Number(done[1]);
      assert.equal(reloaded, false);

      const watched = await seen();
      assert.ok(
        watched.some((t) => /still to back up, uploading at [\d.]+ [KMG]?i?B\/s/.test(t)),
        `no upload rate among ${JSON.stringify(watched)}`,
      );
      assert.ok(
        watched.some((t) => /^Waiting for upload /.test(t)),
        `no queued snapshot among ${JSON.stringify(watched)}`,
      );

      // The snapshots: every version, newest first, each saying when and why.
      await until(
        "the newest version listed",
        async () => (await entries.first().textContent())?.startsWith(`Version ${lastVersion} `),
      );
      const texts = await entries.allTextContents();
      assert.equal(texts.length, lastVersion, texts.join("\n"));
      assert.match(texts.at(-1)!, /^Version 1 .*·.*of data ·.*changed/);
      assert.match(texts[0], /at stop/);
      assert.ok(texts.some((t) => /backed up on request/.test(t)));
      assert.ok(!texts.some((t) => /Waiting for upload/.test(t)));
      await page.screenshot({ path: `${ARTEFACTS}ui-backup-snapshots-1280.png`, fullPage: true });

      // Undo to the first version, with the keyboard: the dialog says nothing is deleted.
      const undoFirst = page.getByRole("button", { name: "Undo to this version (version 1)" });
      assert.equal(await undoFirst.isEnabled(), true);
      await undoFirst.focus();
      await page.keyboard.press("Enter");
      const dialog = page.getByRole("alertdialog", { name: "Undo demo to version 1?" });
      await dialog.waitFor();
      assert.match(
        (await dialog.textContent())!,
        /Nothing is deleted: the disk as it is now is backed up first and stays in the list/,
      );
      assert.equal(await focused(), "Cancel");
      await page.keyboard.press("Escape");
      await dialog.waitFor({ state: "detached" });
      await until(
        "the focus back",
        async () => (await focused()).startsWith("Undo to this version"),
        2000,
      );
      await page.keyboard.press("Enter");
      await dialog.waitFor();
      await page.screenshot({ path: `${ARTEFACTS}ui-backup-undo-dialog-1280.png` });
      await page.keyboard.press("Tab");
      assert.equal(await focused(), "Undo to version 1");
      await page.keyboard.press("Enter");
      await dialog.waitFor({ state: "detached" });

      // Its entry appears (queued first, perhaps), and uploads as the newest version;
      // every earlier version stays.
      await entries.filter({ hasText: "undo to version 1" }).first().waitFor({ timeout: 30_000 });
      const undone = await until(
        "the undo backed up",
        async () => {
          const m = /^All changes backed up \(version (\d+)\)\.$/.exec(await backupText());
          return m && Number(m[1]) > lastVersion ? Number(m[1]) : null;
        },
        60_000,
      );
      await until(
        "the undo listed as the newest version",
        async () =>
          /^Version \d+ .*undo to version 1/.test((await entries.first().textContent()) ?? ""),
      );
      const after = await entries.allTextContents();
      assert.equal(after.length, undone, after.join("\n"));
      assert.match(after[0], new RegExp(`^Version ${undone} `));
      assert.ok(
        after.some((t) => t.startsWith(`Version ${lastVersion} `)),
        "the undone-from version stays",
      );
      assert.equal(reloaded, false);
      await page.screenshot({ path: `${ARTEFACTS}ui-backup-undone-1280.png`, fullPage: true });

      // Deleting a backed-up appliance says what stays: the versions in the data repository.
      await page.getByRole("button", { name: "Delete…" }).click();
      const deleteDialog = page.getByRole("alertdialog", { name: "Delete demo?" });
      await deleteDialog.waitFor();
      assert.match(
        (await deleteDialog.textContent()) ?? "",
        /backed-up versions \(the newest is version \d+\) stay in your data repository/,
      );
      await page.keyboard.press("Escape");
      await deleteDialog.waitFor({ state: "detached" });

      // A phone's width: the page and the list fit.
      await page.setViewportSize({ width: 390, height: 844 });
      await page.screenshot({ path: `${ARTEFACTS}ui-backup-page-390.png`, fullPage: true });
      assert.ok(await page.evaluate(() => document.documentElement.scrollWidth <= 390));
      await page.goto(`${base.origin}/#/`);
      await page.getByTestId("stream").getByText("live").waitFor();
      assert.match(await backupText(), /All changes backed up/);
      await page.screenshot({ path: `${ARTEFACTS}ui-backup-list-390.png`, fullPage: true });
      assert.ok(await page.evaluate(() => document.documentElement.scrollWidth <= 390));

      assert.deepEqual(pageErrors, []);
    } finally {
      await context?.close().catch(() => {});
      await daemon?.stop();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});
