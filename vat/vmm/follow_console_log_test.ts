import assert from "node:assert/strict";
import { type ConsoleLogChunk, followConsoleLog } from "./follow_console_log.ts";

/** Follows `path` in the background; `next()` waits for the next chunk. */
function follow(path: string, tailBytes?: number) {
  const abort = new AbortController();
  const it = followConsoleLog(path, { signal: abort.signal, intervalMs: 10, tailBytes });
  return {
    next: async (): Promise<ConsoleLogChunk> => {
      const r = await it.next();
      assert.equal(r.done, false);
      return r.value as ConsoleLogChunk;
    },
    stop: async () => {
      abort.abort();
      // The generator ends once it sees the abort.
      for (;;) if ((await it.next()).done) break;
    },
  };
}

Deno.test("followConsoleLog() sends the log's end, then what is appended", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/console.log`;
  const f = follow(path, 12);
  try {
    // No log yet: an empty start.
    assert.deepEqual(await f.next(), { reset: true, text: "" });
    await Deno.writeTextFile(path, "boot line 1\nboot line 2\n");
    assert.deepEqual(await f.next(), { reset: false, text: "boot line 1\nboot line 2\n" });
    // A character split across two writes arrives whole.
    const euro = new TextEncoder().encode("€\n");
    await Deno.writeFile(path, euro.subarray(0, 1), { append: true });
    await Deno.writeFile(path, euro.subarray(1), { append: true });
    let text = "";
    while (text !== "€\n") text += (await f.next()).text;
  } finally {
    await f.stop();
  }
  // Following again sends only the tail, from a line's start.
  const g = follow(path, 16);
  try {
    assert.deepEqual(await g.next(), { reset: true, text: "boot line 2\n€\n" });
    // A new log replaces the old one: start over.
    await Deno.remove(path);
    await Deno.writeTextFile(`${path}.new`, "new run\n");
    await Deno.rename(`${path}.new`, path);
    assert.deepEqual(await g.next(), { reset: true, text: "new run\n" });
  } finally {
    await g.stop();
    await Deno.remove(dir, { recursive: true });
  }
});
