/**
 * The login screen and the user's flows in the browser UI, end to end: a real daemon
 * with a directory of users (a temp directory), Debian's Chromium driven by
 * playwright-core, the busybox appliance booted under TCG. One message for a wrong
 * name or password, the caps-lock hint, the appliance the user is entitled to, started
 * from the page; change password and a new recovery key; logging out with "safe to
 * leave"; another user on the same VAT and browser seeing nothing of hers (403); the
 * offline note when the directory cannot be reached, and an offline login
 * with the password last used on this VAT. Screenshots go to `tests/artefacts/`.
 */

/// <reference lib="dom" />

import assert from "node:assert/strict";
import type { BrowserContext } from "playwright-core";
import { buildUi } from "../vat/ui/build_ui.ts";
import { buildBusyboxAppliance } from "../vat/demo/busybox_appliance.ts";
import { Directory } from "../vat/directory/directory.ts";
import { loginOnline } from "../vat/directory/login_client.ts";
import { FileStore } from "../vat/repo/store_file.ts";
import { ARTEFACTS, launchChromium, until } from "./helpers/browser.ts";
import { publishAppliance, qemuProcessesUnder } from "./helpers/guest.ts";
import { startVat, type VatProcess } from "./helpers/processes.ts";
import { vatOk } from "./helpers/vat_cli.ts";

Deno.test({
  name: "the login screen, the user's appliances, password and recovery, logout, offline login",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await buildUi();
    await Deno.mkdir(ARTEFACTS, { recursive: true });
    const dir = await Deno.makeTempDir({ prefix: "vat-ui-users-" });
    const state = `${dir}/state`;
    let daemon: VatProcess | null = null;
    let context: BrowserContext | null = null;
    try {
      await vatOk(["keygen", "--out", `${dir}/admin`]);
      await vatOk(["repo", "init", `${dir}/apps/desk`, "--kind", "appliance"]);
      await publishAppliance(`${dir}/apps/desk`, `${dir}/admin`, await buildBusyboxAppliance());
      const directory = `${dir}/directory`;
      const admin = ["--directory", directory, "--key", `${dir}/admin`];
      await vatOk(["directory", "init", directory, "--key", `${dir}/admin`]);
      await Deno.writeTextFile(`${dir}/pw`, "first secret\n");
      await vatOk([
        "user",
        "add",
        "alice",
        ...admin,
        "--password-file",
        `${dir}/pw`,
        "--display-name",
        "Alice Liddell",
        "--data-repo",
        `${dir}/data/alice`,
      ]);
      await vatOk(["user", "grant", "alice", `${dir}/apps/desk`, ...admin]);
      await Deno.writeTextFile(`${dir}/bob-pw`, "bobs secret\n");
      await vatOk(["user", "add", "bob", ...admin, "--password-file", `${dir}/bob-pw`]);
      daemon = await startVat(
        [
          "--headless",
          "--state",
          state,
          "--port",
          "0",
          "--prefetch-limit",
          "0",
          "--directory",
          directory,
        ],
        (out) => out.includes("listening at"),
        { env: { VAT_ACCEL: "tcg" } },
      );
      const url = /listening at (http:\S+)/.exec(daemon.output())![1];

      context = await launchChromium(`${dir}/chromium`);
      const page = context.pages()[0] ?? await context.newPage();
      const pageErrors: string[] = [];
      page.on("pageerror", (err) => pageErrors.push(err.message));
      await page.goto(url);
      await page.getByRole("heading", { name: "Log in" }).waitFor();
      assert.equal(await page.locator(".offline-note").count(), 0);

      // One message for a wrong password and for an unknown name.
      const logIn = async (name: string, password: string) => {
        await page.getByLabel("Name").fill(name);
        await page.getByLabel("Password").fill(password);
        await page.getByRole("button", { name: "Log in" }).click();
      };
      await logIn("alice", "wrong");
      const alert = page.getByRole("alert");
      await until(
        "the refusal",
        async () => (await alert.textContent()) === "wrong name or password",
      );
      await new Promise((r) => setTimeout(r, 1100));
      await logIn("nobody", "first secret");
      await until(
        "the refusal",
        async () => (await alert.textContent()) === "wrong name or password",
      );

      // What a form on another site could send (no preflight) is not a login.
      const form = await page.evaluate(() =>
        fetch("/api/login", {
          method: "POST",
          headers: { "content-type": "text/plain" },
          body: JSON.stringify({ name: "alice", password: "first secret" }),
        }).then((r) => r.status)
      );
      assert.equal(form, 415);

      // The caps-lock hint follows the key's state.
      const hint = page.locator("#caps-lock");
      await page.getByLabel("Password").evaluate((el) =>
        el.dispatchEvent(new KeyboardEvent("keyup", { key: "CapsLock", modifierCapsLock: true }))
      );
      await until(
        "the caps-lock hint",
        async () => (await hint.textContent()) === "Caps Lock is on",
      );
      await page.getByLabel("Password").evaluate((el) =>
        el.dispatchEvent(new KeyboardEvent("keyup", { key: "a", modifierCapsLock: false }))
      );
      await until("the hint gone", async () => (await hint.textContent()) === "");
      await page.screenshot({ path: `${ARTEFACTS}/users-login.png` });

      // In: her appliance, started from the page.
      await new Promise((r) => setTimeout(r, 2100));
      await logIn("alice", "first secret");
      await page.getByTestId("who").getByText("Alice Liddell").waitFor();
      await page.getByRole("heading", { name: "desk" }).waitFor();
      await page.getByRole("group", { name: "desk's operations" })
        .getByRole("button", { name: "Start" }).click();
      const stateOf = page.getByTestId("state");
      await until("desk running", async () => (await stateOf.textContent()) === "running", 60_000);

      // Change password.
      await page.getByRole("button", { name: "Change password" }).click();
      await page.getByLabel("Current password").fill("first secret");
      await page.getByLabel("New password", { exact: true }).fill("second secret");
      await page.getByLabel("New password again").fill("second secret");
      await page.getByRole("button", { name: "Change password" }).last().click();
      await page.getByText("Your password is changed.").waitFor({ timeout: 30_000 });
      await page.getByRole("button", { name: "Close" }).click();

      // A new recovery key, shown once, that really unlocks her key.
      await page.getByRole("button", { name: "Recovery key" }).click();
      await page.getByLabel("Your password").fill("second secret");
      await page.getByRole("button", { name: "Make a new recovery key" }).click();
      const key = await until("the recovery key", async () => {
        const text = await page.getByTestId("recovery-key").textContent().catch(() => null);
        return text && /^([A-Z2-9]{4}-){7}[A-Z2-9]{4}$/.test(text) ? text : null;
      });
      await page.screenshot({ path: `${ARTEFACTS}/users-recovery.png` });
      await page.getByRole("button", { name: "I wrote it down" }).click();
      const recovered = await loginOnline(
        await Directory.open(new FileStore(directory)),
        "alice",
        key,
        "recovery",
      );
      assert.equal(recovered.entry.name, "alice");

      // Log out, shutting down: the login screen says when it is safe to leave.
      await page.getByRole("button", { name: "Log out" }).click();
      await page.getByRole("button", { name: "Shut down and log out" }).click();
      await page.getByRole("heading", { name: "Log in" }).waitFor({ timeout: 60_000 });
      await page.getByText("alice logged out. Safe to leave: every change is backed up.")
        .waitFor({ timeout: 60_000 });
      await page.screenshot({ path: `${ARTEFACTS}/users-safe-to-leave.png` });
      assert.equal(await qemuProcessesUnder(state), "");
      const after = await page.evaluate(() => fetch("/api/appliances").then((r) => r.status));
      assert.equal(after, 401, "the logged-out session reaches nothing");

      // Bob, on the same VAT and in the same browser, sees nothing of hers.
      await page.getByLabel("Name").fill("bob");
      await page.getByLabel("Password").fill("bobs secret");
      await page.getByRole("button", { name: "Log in" }).click();
      await page.getByTestId("who").getByText("bob").waitFor();
      assert.equal(await page.getByRole("heading", { name: "desk" }).count(), 0);
      const hers = await page.evaluate(() =>
        fetch("/api/appliances/desk").then(async (r) => [r.status, (await r.json()).error])
      );
      assert.deepEqual(hers, [403, '"desk" belongs to another user of this VAT']);
      await page.getByRole("button", { name: "Log out" }).click();
      await page.getByRole("button", { name: "Shut down and log out" }).click();
      await page.getByText("bob logged out. Safe to leave").waitFor({ timeout: 30_000 });

      // The directory goes away: the note, and the password last used here works.
      await Deno.rename(directory, `${directory}.away`);
      await page.reload();
      await page.getByText("Offline: using the password last used on this VAT.").waitFor();
      await logIn("alice", "second secret");
      await page.getByTestId("who").getByText("Alice Liddell (offline)").waitFor();
      await page.getByRole("heading", { name: "desk" }).waitFor();
      await page.screenshot({ path: `${ARTEFACTS}/users-offline.png` });
      assert.deepEqual(pageErrors, []);
    } finally {
      await context?.close();
      await daemon?.stop();
      const left = await qemuProcessesUnder(dir);
      await Deno.remove(dir, { recursive: true }).catch(() => {});
      assert.equal(left, "", "no QEMU left behind");
    }
  },
});
