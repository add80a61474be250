/**
 * A real browser for the UI's end-to-end tests: Debian's Chromium, headless, driven by
 * playwright-core, and a poll for what the page shows.
 *
 * @module
 */

import { type BrowserContext, chromium } from "playwright-core";

/** Debian's Chromium (package `chromium`). */
export const CHROMIUM = "/usr/bin/chromium";

/** Where the UI tests keep their screenshots (git-ignored). */
export const ARTEFACTS = new URL("../artefacts/", import.meta.url).pathname;

/** Starts headless Chromium with its profile in `profileDir`, at a desktop's size. */
export function launchChromium(profileDir: string): Promise<BrowserContext> {
  return chromium.launchPersistentContext(profileDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
    viewport: { width: 1280, height: 800 },
  });
}

/** Polls `probe` until it gives something truthy, which it returns. */
export async function until<T>(
  what: string,
  probe: () => Promise<T | null | false | undefined>,
  timeoutMs = 30_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}
