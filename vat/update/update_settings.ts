/**
 * Where this VAT's updates come from and go to, from flags, `config.json` and the
 * launcher's environment (docs/UPDATE.md): the release repository and its pinned key,
 * the install directory, and the slot this process runs from.
 *
 * @module
 */

import { readPublicKeyId } from "../auth/signing_key.ts";
import { UsageError } from "../errors.ts";
import { parseSlot, type Slot } from "./install_dir.ts";

/** What the updater needs to know. */
export interface UpdateSettings {
  /** The release repository, or null when none is configured. */
  repo: string | null;
  /** The pinned publisher key id. */
  key: string | null;
  installDir: string;
  /** The slot the launcher started this process from (`VAT_SLOT`), else null. */
  runningSlot: Slot | null;
}

/** What `config.json` says of updates (the daemon's `DaemonConfig` has these fields). */
export interface UpdateConfig {
  releaseRepo?: string;
  releaseKey?: string;
  installDir?: string;
}

/** Flags that override `config.json`. */
export interface UpdateFlags {
  releaseRepo?: string;
  releaseKey?: string;
  installDir?: string;
}

/**
 * Resolves the settings: flags win over `config.json`; a process started by the
 * launcher (`VAT_INSTALL_DIR`, `VAT_SLOT`) uses the launcher's install directory.
 */
export async function resolveUpdateSettings(
  stateDir: string,
  config: UpdateConfig,
  flags: UpdateFlags = {},
): Promise<UpdateSettings> {
  const repo = flags.releaseRepo ?? config.releaseRepo ?? null;
  const keyText = flags.releaseKey ?? config.releaseKey ?? null;
  if ((repo === null) !== (keyText === null)) {
    throw new UsageError(
      "--release-repo and --release-key go together: the release repository and the key " +
        "its releases must be signed by (a KEY.pub file or ed25519:...)",
    );
  }
  const fromLauncher = Deno.env.get("VAT_INSTALL_DIR");
  return {
    repo,
    key: keyText === null ? null : await _readKey(keyText),
    installDir: fromLauncher || flags.installDir || config.installDir || `${stateDir}/install`,
    runningSlot: fromLauncher ? parseSlot(Deno.env.get("VAT_SLOT")) : null,
  };
}

async function _readKey(text: string): Promise<string> {
  try {
    return await readPublicKeyId(text);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) {
      throw new UsageError(`the release key ${text} does not exist (give KEY.pub or ed25519:...)`, {
        cause: err,
      });
    }
    throw err;
  }
}
