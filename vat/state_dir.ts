/**
 * Where a VAT keeps its state (cache, overlays, database, logs): `--state DIR`, else
 * `VAT_STATE`, else `$XDG_DATA_HOME/vat`, else `~/.local/share/vat`.
 *
 * @module
 */

import { UsageError } from "./errors.ts";

/** The state directory for a `--state` flag value (or none). */
export function stateDir(flag?: string): string {
  if (flag) return flag;
  const fromEnv = Deno.env.get("VAT_STATE");
  if (fromEnv) return fromEnv;
  const xdg = Deno.env.get("XDG_DATA_HOME");
  if (xdg) return `${xdg}/vat`;
  const home = Deno.env.get("HOME");
  if (!home) throw new UsageError("no state directory: pass --state DIR or set VAT_STATE");
  return `${home}/.local/share/vat`;
}

/** The default cache budget: 10 GiB. */
export const DEFAULT_CACHE_BYTES = 10 * 1024 ** 3;
