/**
 * `commitVersion()`: the one way a version becomes part of a repository, for publish
 * and for backups alike (docs/FORMAT.md, "Committing a version"): its manifest is
 * filled in, signed, and created only if that version number is free (the commit
 * point), then `latest` moves to it.
 *
 * @module
 */

import { randomUUID } from "node:crypto";
import type { SigningKey } from "../auth/signing_key.ts";
import { signManifest, type VersionManifest } from "./manifest.ts";
import { manifestKey, type Repository } from "./repository.ts";

/** What a version's manifest says beyond what `commitVersion` fills in. */
export type VersionContent = Omit<
  VersionManifest,
  "format" | "repoId" | "version" | "parent" | "createdAt" | "publisher" | "nonce"
>;

/** Options of `commitVersion`. */
export interface CommitOptions {
  /**
   * Whether a failure to move `latest` after the commit fails the call (publish: the
   * publisher hears of it) or is left to readers, who find a newer version than
   * `latest` by probing (a background backup). Default true.
   */
  latestRequired?: boolean;
}

/**
 * Commits `content` as version `version` of `repo`, the child of `parent`, signed with
 * `key`. Every object the manifest names (disk indexes, chunks) must be written first.
 * Returns the committed manifest, or null when another writer committed that number
 * first (then nothing was written: the caller takes the next number, or forks).
 */
export async function commitVersion(
  repo: Repository,
  key: SigningKey,
  version: number,
  parent: number | null,
  content: VersionContent,
  options: CommitOptions = {},
): Promise<VersionManifest | null> {
  const manifest: VersionManifest = {
    format: 1,
    repoId: repo.config.id,
    version,
    parent,
    createdAt: new Date().toISOString(),
    publisher: key.publicKeyId,
    // Random, so that two writers racing for one number never send identical bytes.
    nonce: randomUUID(),
    ...content,
  };
  if (!(await repo.store.create(manifestKey(version), signManifest(manifest, key)))) return null;
  if (options.latestRequired ?? true) await repo.writeLatest(version);
  else await repo.writeLatest(version).catch(() => {});
  return manifest;
}
