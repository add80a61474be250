/**
 * `repo.json`: a repository's identity and parameters (docs/FORMAT.md, "repo.json").
 *
 * @module
 */

import { IntegrityError } from "../errors.ts";
import { checkChunkBytes } from "./disk_index.ts";

/** What a repository holds. */
export type RepoKind = "appliance" | "data" | "release" | "directory";
export const REPO_KINDS: readonly RepoKind[] = ["appliance", "data", "release", "directory"];

/** The parsed `repo.json`. */
export interface RepoConfig {
  format: 1;
  id: string;
  kind: RepoKind;
  chunkSizeBytes: number;
  hash: "sha256";
  compression: "zstd";
  /** Public key ids whose signatures make a version valid. */
  publisherKeys: string[];
  createdAt: string;
}

/** The default chunk size; `bench/publish.ts` measured the choice (docs/FORMAT.md). */
export const DEFAULT_CHUNK_BYTES = 64 * 1024;

/**
 * The default chunk size of a release repository: a one-line change of vat changes a
 * 16 KiB piece of its bundle, and the index of the unchanged runtime is not fetched
 * (docs/UPDATE.md, "Measured").
 */
export const DEFAULT_RELEASE_CHUNK_BYTES = 16 * 1024;

/** Parses and validates `repo.json`'s bytes. */
export function parseRepoConfig(bytes: Uint8Array, location: string): RepoConfig {
  let value: Record<string, unknown>;
  try {
    value = JSON.parse(new TextDecoder().decode(bytes));
  } catch (err) {
    throw new IntegrityError(`repo.json of ${location} is not valid JSON`, { cause: err });
  }
  const fail = (what: string) => new IntegrityError(`repo.json of ${location} is invalid: ${what}`);
  if (value?.format !== 1) throw fail(`unsupported format ${JSON.stringify(value?.format)}`);
  if (typeof value.id !== "string" || !/^[A-Za-z0-9-]{8,64}$/.test(value.id)) throw fail("id");
  if (!REPO_KINDS.includes(value.kind as RepoKind)) throw fail(`kind ${value.kind}`);
  try {
    checkChunkBytes(value.chunkSizeBytes as number);
  } catch (err) {
    throw fail((err as Error).message);
  }
  if (value.hash !== "sha256") throw fail(`hash ${value.hash}`);
  if (value.compression !== "zstd") throw fail(`compression ${value.compression}`);
  if (
    !Array.isArray(value.publisherKeys) ||
    !value.publisherKeys.every((k) => typeof k === "string")
  ) throw fail("publisherKeys");
  return value as unknown as RepoConfig;
}
