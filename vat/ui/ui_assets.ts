/**
 * The UI's built files, as the daemon serves them. A compiled binary carries `dist/ui/`
 * (embedded by `deno task compile`) and no sources; run from a source tree, the bundle
 * is (re)built on first use when it is missing or older than any file of `ui/`, so the
 * daemon never serves a stale UI and nothing generated is committed.
 *
 * @module
 */

import { buildUi, UI_BUILD_DIR, UI_FILES, UI_SOURCE_DIR } from "./build_ui.ts";

/** The UI's script and style sheet. */
export interface UiAssets {
  js: string;
  css: string;
}

let _loading: Promise<UiAssets> | null = null;

/** Loads (building first if needed) the UI's files, once per process. */
export function loadUiAssets(): Promise<UiAssets> {
  _loading ??= _load().catch((err) => {
    _loading = null; // a failed build is retried on the next request
    throw err;
  });
  return _loading;
}

async function _load(): Promise<UiAssets> {
  const built = await _mtime(new URL(UI_FILES.js, UI_BUILD_DIR));
  const sources = await _newestSource(UI_SOURCE_DIR);
  if (sources !== null && (built === null || sources > built)) await buildUi();
  return {
    js: await Deno.readTextFile(new URL(UI_FILES.js, UI_BUILD_DIR)),
    css: await Deno.readTextFile(new URL(UI_FILES.css, UI_BUILD_DIR)),
  };
}

async function _mtime(url: URL): Promise<number | null> {
  try {
    return (await Deno.stat(url)).mtime?.getTime() ?? 0;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return null;
    throw err;
  }
}

/** The newest modification time under `dir`; null when it does not exist (compiled binary). */
async function _newestSource(dir: URL): Promise<number | null> {
  let newest: number | null = null;
  try {
    for await (const entry of Deno.readDir(dir)) {
      const url = new URL(entry.name + (entry.isDirectory ? "/" : ""), dir);
      const time = entry.isDirectory ? await _newestSource(url) : await _mtime(url);
      if (time !== null) newest = Math.max(newest ?? 0, time);
    }
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return null;
    throw err;
  }
  return newest;
}
