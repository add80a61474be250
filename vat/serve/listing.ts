/**
 * Listings of the repository server (docs/HTTP.md, "Listing"): every object under a
 * directory, in pages, streamed as the directory tree is walked. The walk is depth
 * first with each directory's names sorted, so the order is the same on every page and
 * a page resumes right after the last key of the previous one, reading only the
 * directories on the way there.
 *
 * @module
 */

/** The most keys one page may hold. */
export const MAX_LIST_LIMIT = 100_000;
/** Keys per page when the client does not say. */
export const DEFAULT_LIST_LIMIT = 10_000;

const NAME = /^[A-Za-z0-9_][A-Za-z0-9._-]*$/;

/**
 * Yields the keys of every object under `dir`, relative to it, in listing order,
 * starting after the key `after` ("" for the start). Names that are not plain key
 * segments (among them the temporary files of writes in progress, which start with
 * ".") are not objects and are skipped; so are symbolic links and special files.
 */
export async function* walkKeys(dir: string, after = ""): AsyncGenerator<string> {
  yield* _walk(dir, "", after === "" ? [] : after.split("/"));
}

async function* _walk(dir: string, prefix: string, after: string[]): AsyncGenerator<string> {
  const entries: { name: string; isDirectory: boolean }[] = [];
  try {
    for await (const entry of Deno.readDir(dir)) {
      if (!NAME.test(entry.name) || !(entry.isFile || entry.isDirectory)) continue;
      entries.push({ name: entry.name, isDirectory: entry.isDirectory });
    }
  } catch (err) {
    // A directory that does not exist (or was removed meanwhile) holds no objects.
    if (err instanceof Deno.errors.NotFound || err instanceof Deno.errors.NotADirectory) return;
    throw err;
  }
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const entry of entries) {
    let rest: string[] = [];
    if (after.length > 0) {
      if (entry.name < after[0]) continue;
      if (entry.name === after[0]) {
        if (!entry.isDirectory) continue; // the cursor itself
        rest = after.slice(1);
      }
    }
    const key = prefix + entry.name;
    if (entry.isDirectory) yield* _walk(`${dir}/${entry.name}`, `${key}/`, rest);
    else yield key;
    after = [];
  }
}

/**
 * One page of a listing as a streamed `text/plain` body: a key per line, then
 * `#more <cursor>` when keys remain beyond `limit`, or `#end`.
 */
export function listingBody(dir: string, after: string, limit: number): ReadableStream<Uint8Array> {
  const keys = walkKeys(dir, after);
  const encoder = new TextEncoder();
  let sent = 0;
  let last = after;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      const lines: string[] = [];
      while (lines.length < 1000) {
        const next = await keys.next();
        if (next.done) {
          lines.push("#end");
          controller.enqueue(encoder.encode(lines.join("\n") + "\n"));
          controller.close();
          return;
        }
        if (sent === limit) {
          // Seen one more than the page holds: the next page starts after `last`.
          lines.push(`#more ${last}`);
          controller.enqueue(encoder.encode(lines.join("\n") + "\n"));
          controller.close();
          await keys.return(undefined);
          return;
        }
        lines.push(next.value);
        last = next.value;
        sent++;
      }
      controller.enqueue(encoder.encode(lines.join("\n") + "\n"));
    },
    async cancel() {
      await keys.return(undefined);
    },
  });
}
