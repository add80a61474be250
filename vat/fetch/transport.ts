/**
 * The bottom layer of the fetch path (docs/CACHE.md, "The fetch path"): one request
 * for one chunk to a repository, through its store (a `MirroredStore` in the daemon,
 * which fails at once with a `TransientError` while the repository is offline).
 *
 * @module
 */

import type { Repository } from "../repo/repository.ts";

/**
 * Fetches chunk `hash` from a repository: resolves with its plaintext, verified
 * against the hash; rejects with a `NotFoundError` or `PermanentError` when the
 * repository lacks it or holds it damaged (retrying will not help), with a
 * `TransientError` (or a network error) when it may succeed later. Called once per
 * attempt; it keeps no state between calls.
 */
export type ChunkTransport = (hash: Uint8Array) => Promise<Uint8Array>;

/** `repo`'s chunks as a transport. */
export function repositoryTransport(repo: Repository): ChunkTransport {
  return function readFromRepository(hash) {
    return repo.readChunk(hash);
  };
}
