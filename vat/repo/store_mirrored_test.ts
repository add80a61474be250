import assert from "node:assert/strict";
import { NotFoundError, TransientError } from "../errors.ts";
import { MemoryStore } from "./store_memory.ts";
import { MirroredStore } from "./store_mirrored.ts";
import type { Store } from "./store.ts";
import { testStore } from "./store_test_suite.ts";

testStore("MirroredStore", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vat-mirror-" });
  const remote = new MemoryStore();
  return {
    store: new MirroredStore({
      location: "memory:",
      open: () => Promise.resolve(remote),
      mirrorDir: `${dir}/mirror`,
    }),
    cleanup: () => Deno.remove(dir, { recursive: true }),
  };
});

const bytes = (text: string) => new TextEncoder().encode(text);
const text = (data: Uint8Array) => new TextDecoder().decode(data);

/** A remote that can be cut off: then it fails transiently, or never answers. */
class Link {
  readonly store = new MemoryStore();
  state: "up" | "down" | "silent" = "up";
  opens = 0;

  open(): Promise<Store> {
    this.opens++;
    if (this.state === "down") {
      return Promise.reject(new TransientError("connection refused"));
    }
    if (this.state === "silent") return new Promise(() => {});
    return Promise.resolve(this.#wrapped());
  }

  #wrapped(): Store {
    const guard = <T>(fn: () => Promise<T>): Promise<T> =>
      this.state === "up"
        ? fn()
        : this.state === "down"
        ? Promise.reject(new TransientError("connection reset"))
        : new Promise(() => {});
    const s = this.store;
    return {
      location: s.location,
      canList: true,
      get: (k) => guard(() => s.get(k)),
      getRange: (k, o, l) => guard(() => s.getRange(k, o, l)),
      put: (k, d) => guard(() => s.put(k, d)),
      create: (k, d) => guard(() => s.create(k, d)),
      stat: (k) => guard(() => s.stat(k)),
      list: (p) => s.list(p),
      delete: (k) => guard(() => s.delete(k)),
      close: () => Promise.resolve(),
    };
  }
}

async function withMirror(
  fn: (link: Link, open: () => MirroredStore, dir: string) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "vat-mirror-" });
  const link = new Link();
  const stores: MirroredStore[] = [];
  const open = () => {
    const store = new MirroredStore({
      location: "memory:",
      open: () => link.open(),
      mirrorDir: `${dir}/mirror`,
      connectTimeoutMs: 200,
    });
    stores.push(store);
    return store;
  };
  try {
    await fn(link, open, dir);
  } finally {
    for (const store of stores) await store.close();
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("MirroredStore serves metadata read earlier from its mirror when the remote is down", async () => {
  await withMirror(async (link, open, dir) => {
    await link.store.put("repo.json", bytes("{}"));
    await link.store.put("latest", bytes("1\n"));
    await link.store.put("versions/1/manifest.json", bytes("m1"));
    await link.store.put("chunks/ab/ab01", bytes("chunk"));
    const online = open();
    assert.equal(text(await online.get("repo.json")), "{}");
    assert.equal(text(await online.get("latest")), "1\n");
    assert.equal(text(await online.get("versions/1/manifest.json")), "m1");
    assert.equal(text(await online.get("chunks/ab/ab01")), "chunk");
    assert.equal(online.offline, false);
    // Chunks are never mirrored.
    await assert.rejects(Deno.stat(`${dir}/mirror/chunks/ab/ab01`), Deno.errors.NotFound);

    link.state = "down";
    const offline = open();
    assert.equal(text(await offline.get("latest")), "1\n");
    assert.equal(offline.offline, true);
    assert.equal(text(await offline.get("versions/1/manifest.json")), "m1");
    assert.equal((await offline.stat("versions/1/manifest.json"))?.sizeBytes, 2);
    assert.equal(await offline.stat("versions/2/manifest.json"), null);
    assert.equal(text(await offline.getRange("repo.json", 1, 5)), "}");
    const listed: string[] = [];
    for await (const key of offline.list("versions/")) listed.push(key);
    assert.deepEqual(listed, ["versions/1/manifest.json"]);
    // What was never read is not there, and chunks need the remote.
    await assert.rejects(offline.get("versions/1/other.idx"), TransientError);
    await assert.rejects(offline.get("chunks/ab/ab01"), TransientError);
    // Writes need the remote.
    await assert.rejects(offline.put("latest", bytes("2\n")), TransientError);
  });
});

Deno.test("MirroredStore takes latest from the remote again once it is back", async () => {
  await withMirror(async (link, open) => {
    await link.store.put("latest", bytes("1\n"));
    assert.equal(text(await open().get("latest")), "1\n");
    link.state = "down";
    await link.store.put("latest", bytes("2\n"));
    assert.equal(text(await open().get("latest")), "1\n");
    link.state = "up";
    const back = open();
    assert.equal(text(await back.get("latest")), "2\n");
    assert.equal(back.offline, false);
    link.state = "down";
    assert.equal(text(await open().get("latest")), "2\n", "the mirror follows the remote");
  });
});

Deno.test("MirroredStore gives up on a silent remote after its connect timeout", async () => {
  await withMirror(async (link, open) => {
    await link.store.put("latest", bytes("3\n"));
    assert.equal(text(await open().get("latest")), "3\n");
    link.state = "silent";
    const store = open();
    const started = Date.now();
    assert.equal(text(await store.get("latest")), "3\n");
    // Later reads of the same store skip the remote for a while.
    assert.equal(await store.stat("versions/4/manifest.json"), null);
    assert.ok(Date.now() - started < 1500, `took ${Date.now() - started} ms`);
    assert.equal(store.offline, true);
  });
});

Deno.test("MirroredStore drops a mirrored object that the remote no longer has", async () => {
  await withMirror(async (link, open) => {
    await link.store.put("versions/1/manifest.json", bytes("m1"));
    const store = open();
    await store.get("versions/1/manifest.json");
    await link.store.delete("versions/1/manifest.json");
    await assert.rejects(store.get("versions/1/manifest.json"), NotFoundError);
    link.state = "down";
    await assert.rejects(open().get("versions/1/manifest.json"), TransientError);
  });
});

/**
 * A real HTTP server whose objects come in `pieces` pieces `gapMs` apart; with
 * `stallAfter`, it stops sending (without closing) after that many pieces.
 */
function slowServer(body: Uint8Array, pieces: number, gapMs: number, stallAfter = Infinity) {
  const stop = new AbortController();
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, signal: stop.signal, onListen: () => {} },
    (req) => {
      if (!new URL(req.url).pathname.endsWith("/versions/1/system.idx")) {
        return new Response("not here", { status: 404 });
      }
      const size = Math.ceil(body.length / pieces);
      let sent = 0;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const stream = new ReadableStream<Uint8Array>({
        pull: (controller) =>
          new Promise<void>((resolve) => {
            if (sent >= stallAfter) return; // never resolves: the server went silent
            timer = setTimeout(() => {
              controller.enqueue(body.subarray(sent * size, (sent + 1) * size));
              if (++sent === pieces) controller.close();
              resolve();
            }, sent === 0 ? 0 : gapMs);
          }),
        cancel: () => clearTimeout(timer),
      });
      return new Response(stream, { headers: { "content-length": String(body.length) } });
    },
  );
  return {
    url: `http://127.0.0.1:${server.addr.port}/repo/`,
    async close() {
      stop.abort();
      await server.finished;
    },
  };
}

Deno.test("MirroredStore waits for a large object that keeps coming, not for one that stalls", async () => {
  const { openHttpStore } = await import("./store_http.ts");
  const body = new Uint8Array(64 * 1024).map((_, i) => i % 251);
  // 8 pieces 100 ms apart: 700 ms in all, more than the 300 ms timeout.
  const steady = slowServer(body, 8, 100);
  const stalling = slowServer(body, 8, 100, 3);
  const dir = await Deno.makeTempDir({ prefix: "vat-mirror-" });
  const mirrored = (url: string) =>
    new MirroredStore({
      location: url,
      open: () => openHttpStore(url),
      mirrorDir: `${dir}/${url.includes(steady.url) ? "steady" : "stalling"}`,
      connectTimeoutMs: 300,
    });
  try {
    const slow = mirrored(steady.url);
    const started = Date.now();
    assert.deepEqual(await slow.get("versions/1/system.idx"), body);
    assert.ok(Date.now() - started >= 600, `took only ${Date.now() - started} ms`);
    assert.equal(slow.offline, false, "a slow link is not an unreachable one");
    await slow.close();

    const stuck = mirrored(stalling.url);
    const err = await stuck.get("versions/1/system.idx").then(() => null, (e) => e);
    assert.ok(err instanceof TransientError, String(err));
    assert.match(err.message, /too slowly/);
    assert.equal(stuck.offline, true);
    await stuck.close();
  } finally {
    await steady.close();
    await stalling.close();
    await Deno.remove(dir, { recursive: true });
  }
});
