/**
 * The access heat map, end to end: a real daemon (`--demo`), the demo appliance booted
 * in QEMU, Debian's Chromium on its page. The strips show while it runs and change
 * when the guest reads and writes; `vat stats` prints the same map. A screenshot goes
 * to `tests/artefacts/heat-map.png` (git-ignored).
 */

/// <reference lib="dom" />

import assert from "node:assert/strict";
import type { BrowserContext, Page } from "playwright-core";
import { buildUi } from "../vat/ui/build_ui.ts";
import type { ApplianceHeatMap } from "../vat/appliance/heat_map.ts";
import { ARTEFACTS, launchChromium, until } from "./helpers/browser.ts";
import { Guest } from "./helpers/guest.ts";
import { startVat, type VatProcess } from "./helpers/processes.ts";
import { vatOk } from "./helpers/vat_cli.ts";

function strip(page: Page, disk: string): Promise<string> {
  return page.evaluate(
    (d) =>
      document.querySelector<HTMLCanvasElement>(`[data-testid=heat-${d}] canvas`)?.toDataURL() ??
        "",
    disk,
  );
}

async function heatMap(state: string): Promise<ApplianceHeatMap> {
  return JSON.parse((await vatOk(["stats", "demo", "--json", "--state", state])).stdout);
}

const total = (values: number[]) => values.reduce((a, b) => a + b, 0);

Deno.test({
  name: "the appliance page draws a live access heat map of each disk; vat stats prints it",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await buildUi();
    await Deno.mkdir(ARTEFACTS, { recursive: true });
    const dir = await Deno.makeTempDir({ prefix: "vat-heat-" });
    const state = `${dir}/state`;
    let daemon: VatProcess | null = null;
    let context: BrowserContext | null = null;
    try {
      daemon = await startVat(
        ["--demo", "--headless", "--state", state, "--port", "0", "--prefetch-limit", "0"],
        (out) => out.includes("sign in to the UI at"),
        { timeoutMs: 240_000 },
      );
      const signIn = /sign in to the UI at (\S+)/.exec(daemon.output())![1];
      const stopped = await heatMap(state);
      assert.deepEqual(stopped, { name: "demo", version: null, disks: [] });

      context = await launchChromium(`${dir}/chromium`);
      const page = context.pages()[0] ?? await context.newPage();
      const pageErrors: string[] = [];
      page.on("pageerror", (err) => pageErrors.push(err.message));
      await page.goto(signIn);
      await page.getByRole("heading", { name: "demo" }).waitFor();
      await page.goto(new URL("#/appliance/demo", signIn).href);
      await page.getByText("The heat map shows while the appliance runs.").waitFor();

      await vatOk(["start", "demo", "--state", state]);
      const guest = new Guest(state, "demo");
      await guest.waitFor(/VAT-READY/);
      await page.getByTestId("heat-system").waitFor();
      await page.getByTestId("heat-user").waitFor();
      const booted = await heatMap(state);
      assert.equal(booted.version, 1);
      const system = booted.disks.find((d) => d.disk === "system")!;
      assert.ok(total(system.readBytes) > 0, "the boot read the system disk");
      assert.ok(total(system.fetchedChunks) > 0, "a cold cache fetched what the boot read");
      assert.ok(total(system.cachedChunks) >= total(system.fetchedChunks));
      assert.ok(total(system.storedChunks) >= total(system.cachedChunks));
      const text = (await vatOk(["stats", "demo", "--state", state])).stdout;
      assert.match(text, /^demo, version 1\nsystem: 32\.0 MiB, 128\.0 KiB per character; read /);
      assert.match(text, /\|[ .+#rFW]{64}\|/);

      // The guest writes 2 MiB to its user disk: the map says so, and the strip changes.
      const userBefore = await until("the user strip", async () => await strip(page, "user"));
      const written = total(booted.disks.find((d) => d.disk === "user")!.writtenBytes);
      assert.match(await guest.ask("fill user blob 2"), /^VAT-REPLY fill [0-9a-f]{32}$/);
      await until("the user disk's writes in the map", async () => {
        const now = await heatMap(state);
        return total(now.disks.find((d) => d.disk === "user")!.writtenBytes) >=
          written + 2 * 1024 * 1024;
      });
      await until(
        "the user strip to change",
        async () => (await strip(page, "user")) !== userBefore,
      );
      // ... and reads a file of its system disk that nothing read before.
      const read = total((await heatMap(state)).disks[0].readBytes);
      assert.match(await guest.ask("cat /mnt/system/marker"), /^VAT-REPLY cat \S+$/);
      await until("the system disk's read in the map", async () => {
        return total((await heatMap(state)).disks[0].readBytes) > read;
      });
      await page.getByTestId("heat-system").screenshot({ path: `${ARTEFACTS}heat-map-strip.png` });
      await page.screenshot({ path: `${ARTEFACTS}heat-map.png`, fullPage: true });
      assert.match(
        (await page.getByTestId("heat-system").locator("canvas").getAttribute("aria-label"))!,
        /^system disk, 256 regions of 128\.0 KiB: read /,
      );

      await vatOk(["stop", "demo", "--state", state]);
      await page.getByText("The heat map shows while the appliance runs.").waitFor();
      assert.deepEqual(pageErrors, []);
    } finally {
      await context?.close();
      await daemon?.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
