/**
 * vat's own version numbers (`MAJOR.MINOR.PATCH[-suffix]`, `vat/cli/version.ts`): how
 * they compare, and how a release finds the version of what it packs.
 *
 * @module
 */

import { UsageError } from "../errors.ts";
import { VAT_VERSION_PATTERN } from "../repo/manifest.ts";

/**
 * Compares two versions: negative when `a` is older than `b`, 0 when equal, positive
 * when newer. A version with a suffix (`1.2.0-rc1`) is older than the same without.
 */
export function compareVatVersions(a: string, b: string): number {
  const [coreA, preA] = _split(a);
  const [coreB, preB] = _split(b);
  for (let i = 0; i < 3; i++) {
    if (coreA[i] !== coreB[i]) return coreA[i] - coreB[i];
  }
  if (preA === preB) return 0;
  if (preA === null) return 1;
  if (preB === null) return -1;
  return preA < preB ? -1 : 1;
}

/** Throws `UsageError` unless `text` is a vat version. */
export function checkVatVersion(text: string, what: string): string {
  if (!VAT_VERSION_PATTERN.test(text)) {
    throw new UsageError(`${what} "${text}" is not a version like 1.2.3`);
  }
  return text;
}

/** The version a source tree's `vat/cli/version.ts` declares. */
export async function readSourceVersion(root: URL): Promise<string> {
  const path = new URL("vat/cli/version.ts", root).pathname;
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) {
      throw new UsageError(`${path} does not exist: --source must name vat's source tree`, {
        cause: err,
      });
    }
    throw err;
  }
  const m = /VERSION\s*=\s*"([^"]+)"/.exec(text);
  if (!m || !VAT_VERSION_PATTERN.test(m[1])) {
    throw new UsageError(`${path} declares no VERSION like "1.2.3"`);
  }
  return m[1];
}

function _split(version: string): [number[], string | null] {
  const dash = version.indexOf("-");
  const core = (dash < 0 ? version : version.slice(0, dash)).split(".").map(Number);
  return [core, dash < 0 ? null : version.slice(dash + 1)];
}
