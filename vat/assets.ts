/**
 * Where vat finds the files it reads at run time besides its code: the built UI
 * (`dist/ui/`) and the demo appliance's init script (`vat/demo/busybox_appliance_init`),
 * by their paths in the source tree.
 *
 * Run from the source tree, and in a binary of `deno compile` (which keeps the tree's
 * layout for its modules and `--include`d files), this module is `vat/assets.ts` and
 * the root is its parent directory. In a release bundle (docs/UPDATE.md) every module
 * shares the bundle's URL, `SLOT/vat.js`, and the release puts those files at the same
 * paths under `SLOT/`: the root is the bundle's directory.
 *
 * @module
 */

const _HERE = new URL(import.meta.url);

/** The directory that the run-time files' paths are relative to. */
export const ASSET_ROOT: URL = _HERE.pathname.endsWith("/vat/assets.ts")
  ? new URL("../", _HERE)
  : new URL("./", _HERE);

/** The URL of a run-time file, by its path in the source tree (e.g. `dist/ui/vat_ui.js`). */
export function assetUrl(path: string): URL {
  return new URL(path, ASSET_ROOT);
}
