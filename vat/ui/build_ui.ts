/**
 * Builds the browser UI: `ui/main.tsx` bundled by `deno bundle` into one JS file, and
 * `ui/style.css`, written to `dist/ui/` (git-ignored build output). `deno task build:ui`
 * runs it; the daemon runs it too when the bundle is missing or older than `ui/` (see
 * `ui_assets.ts`), and `deno task compile` runs it before embedding `dist/ui/`.
 *
 * @module
 */

import { ASSET_ROOT } from "../assets.ts";
import { VatError } from "../errors.ts";

/** The project's root (where `deno.json` and `ui/` are; a release bundle's slot). */
export const PROJECT_ROOT = ASSET_ROOT;
/** Where the UI's sources are. */
export const UI_SOURCE_DIR = new URL("ui/", PROJECT_ROOT);
/** Where the built UI goes. */
export const UI_BUILD_DIR = new URL("dist/ui/", PROJECT_ROOT);
/** The built files' names. */
export const UI_FILES = { js: "vat_ui.js", css: "vat_ui.css" } as const;

/**
 * Bundles `ui/` into `dist/ui/` of `root` (default: this project); each file is
 * replaced atomically.
 */
export async function buildUi(root: URL = PROJECT_ROOT): Promise<void> {
  const sourceDir = new URL("ui/", root);
  const buildDir = new URL("dist/ui/", root);
  await Deno.mkdir(buildDir, { recursive: true });
  const tmpJs = new URL(`${UI_FILES.js}.${Deno.pid}.tmp`, buildDir);
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "bundle",
      "--quiet",
      "--platform",
      "browser",
      "--format",
      "esm",
      "--minify",
      "--output",
      tmpJs.pathname,
      new URL("main.tsx", sourceDir).pathname,
    ],
    cwd: root.pathname,
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) {
    await Deno.remove(tmpJs).catch(() => {});
    throw new VatError(
      `building the UI (deno bundle ui/main.tsx) failed:\n${new TextDecoder().decode(out.stderr)}`,
    );
  }
  await Deno.rename(tmpJs, new URL(UI_FILES.js, buildDir));
  const tmpCss = new URL(`${UI_FILES.css}.${Deno.pid}.tmp`, buildDir);
  await Deno.copyFile(new URL("style.css", sourceDir), tmpCss);
  await Deno.rename(tmpCss, new URL(UI_FILES.css, buildDir));
}

if (import.meta.main) {
  await buildUi();
  console.log(`built ${UI_BUILD_DIR.pathname}`);
}
