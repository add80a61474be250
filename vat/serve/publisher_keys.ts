/**
 * Which publisher keys a repository's `repo.json` lets write an object. The object
 * belongs to the repository whose root is its nearest ancestor directory holding a
 * `repo.json`; writing a `repo.json` itself is governed by that very file (if it exists),
 * so creating a repository needs a key given to the server.
 *
 * @module
 */

/** The repository an object belongs to, as far as authorisation is concerned. */
export interface OwningRepository {
  /** Root-relative path of the governing `repo.json`, or null when there is none. */
  repoJson: string | null;
  /** Its `publisherKeys` (empty when there is none, or it is unreadable). */
  publisherKeys: string[];
  /** Why the keys could not be read, when `repo.json` exists but is not valid. */
  problem?: string;
}

/** Finds the `repo.json` that governs writes of `key` under `root`, and its keys. */
export async function owningRepository(root: string, key: string): Promise<OwningRepository> {
  const segments = key.split("/");
  const candidates: string[] = [];
  if (segments[segments.length - 1] === "repo.json") {
    candidates.push(key);
  } else {
    for (let depth = segments.length - 1; depth >= 0; depth--) {
      candidates.push([...segments.slice(0, depth), "repo.json"].join("/"));
    }
  }
  for (const candidate of candidates) {
    let text: string;
    try {
      text = await Deno.readTextFile(`${root}/${candidate}`);
    } catch (err) {
      if (
        err instanceof Deno.errors.NotFound || err instanceof Deno.errors.NotADirectory ||
        err instanceof Deno.errors.IsADirectory
      ) continue;
      throw err;
    }
    return { repoJson: candidate, ..._publisherKeys(text) };
  }
  return { repoJson: null, publisherKeys: [] };
}

function _publisherKeys(text: string): { publisherKeys: string[]; problem?: string } {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { publisherKeys: [], problem: "it is not valid JSON" };
  }
  const keys = (value as { publisherKeys?: unknown })?.publisherKeys;
  if (!Array.isArray(keys)) return { publisherKeys: [], problem: "it has no publisherKeys array" };
  return { publisherKeys: keys.filter((k): k is string => typeof k === "string") };
}
