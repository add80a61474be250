/**
 * The conformance suite every `Store` transport passes, wired up in a few lines per
 * transport: `testStore("FileStore", async () => ({ store, cleanup }))`.
 *
 * @module
 */

import assert from "node:assert/strict";
import { IntegrityError, NotFoundError, UsageError } from "../errors.ts";
import type { Store } from "./store.ts";

/** A store under test and how to remove what it made. */
export interface StoreFixture {
  store: Store;
  cleanup(): Promise<void>;
  /**
   * For read-only transports: writes an object behind the store's back (into the
   * directory a static server serves). Absent for writable transports.
   */
  seed?(key: string, data: Uint8Array): Promise<void>;
}

/** Options of the suite. */
export interface TestStoreOptions {
  /** Skip the whole suite (with the reason printed), e.g. when a server is missing. */
  ignore?: boolean;
}

const bytes = (text: string) => new TextEncoder().encode(text);
const text = (data: Uint8Array) => new TextDecoder().decode(data);

/** Registers the conformance tests for one transport. */
export function testStore(
  name: string,
  makeFixture: () => Promise<StoreFixture>,
  options: TestStoreOptions = {},
): void {
  const test = (what: string, fn: (f: StoreFixture, write: Writer) => Promise<void>) =>
    Deno.test({
      name: `${name} ${what}`,
      ignore: options.ignore,
      sanitizeResources: false,
      sanitizeOps: false,
      fn: async () => {
        const fixture = await makeFixture();
        try {
          const write: Writer = fixture.seed
            ? (key, data) => fixture.seed!(key, data)
            : (key, data) => fixture.store.put(key, data);
          await fn(fixture, write);
        } finally {
          await fixture.store.close();
          await fixture.cleanup();
        }
      },
    });

  test("get() of a missing object throws NotFoundError", async ({ store }) => {
    await assert.rejects(store.get("versions/1/missing.json"), NotFoundError);
    await assert.rejects(store.getRange("chunks/00/missing", 0, 10), NotFoundError);
    assert.equal(await store.stat("nothing/here"), null);
  });

  test("get() returns what was written, empty and large objects too", async ({ store }, write) => {
    await write("repo.json", bytes("{}"));
    assert.equal(text(await store.get("repo.json")), "{}");
    await write("empty", new Uint8Array(0));
    assert.equal((await store.get("empty")).length, 0);
    const large = new Uint8Array(3 * 1024 * 1024 + 17);
    for (let i = 0; i < large.length; i++) large[i] = (i * 7919) & 0xff;
    await write("chunks/ab/large", large);
    // Progress, if the transport tells it, adds up to the object.
    let told = 0;
    const got = await store.get("chunks/ab/large", { onProgress: (n) => told += n });
    assert.ok(Buffer.from(got).equals(large));
    assert.ok(told === 0 || told === large.length, `progress told ${told} bytes`);
    const info = await store.stat("chunks/ab/large");
    assert.equal(info?.sizeBytes, large.length);
    assert.ok(info!.modifiedMs > Date.now() - 24 * 3600_000, "modifiedMs is recent");
  });

  test(
    "get() refuses an object over its limit, naming the object and the limit",
    async ({ store }, write) => {
      // repo.json and latest are small objects: 64 KiB at most, whoever serves them.
      await write("latest", new Uint8Array(64 * 1024 + 1).fill(0x31));
      await assert.rejects(
        store.get("latest"),
        (err: Error) =>
          err instanceof IntegrityError && /latest/.test(err.message) &&
          /limit of 65536 bytes/.test(err.message),
      );
      await write("versions/1/disk.0123.idx", bytes("0123456789"));
      await assert.rejects(
        store.get("versions/1/disk.0123.idx", { maxBytes: 9 }),
        /disk\.0123\.idx .*limit of 9 bytes/,
      );
      assert.equal(
        text(await store.get("versions/1/disk.0123.idx", { maxBytes: 10 })),
        "0123456789",
      );
    },
  );

  test(
    "get() rejects with the caller's reason once its signal is aborted",
    async ({ store }, write) => {
      await write("repo.json", bytes("{}"));
      const controller = new AbortController();
      controller.abort(new Error("gave up"));
      await assert.rejects(store.get("repo.json", { signal: controller.signal }), /gave up/);
    },
  );

  test("getRange() returns the range, short only at the end", async ({ store }, write) => {
    await write("versions/2/disk.idx", bytes("0123456789"));
    assert.equal(text(await store.getRange("versions/2/disk.idx", 2, 3)), "234");
    assert.equal(text(await store.getRange("versions/2/disk.idx", 7, 10)), "789");
  });

  test("rejects keys that could leave the root", async ({ store }) => {
    for (const key of ["../etc/passwd", "/etc/passwd", "a//b", "a/../b", "a/./b", "", "a/b/"]) {
      await assert.rejects(store.get(key), UsageError, `get(${JSON.stringify(key)})`);
      await assert.rejects(store.stat(key), UsageError, `stat(${JSON.stringify(key)})`);
    }
  });

  test("list() finds every key under a prefix and nothing else", async ({ store }, write) => {
    if (!store.canList) return;
    await write("chunks/aa/aa01", bytes("1"));
    await write("chunks/ab/ab02", bytes("2"));
    await write("versions/1/manifest.json", bytes("3"));
    const keys: string[] = [];
    for await (const key of store.list("chunks/")) keys.push(key);
    assert.deepEqual(keys.sort(), ["chunks/aa/aa01", "chunks/ab/ab02"]);
    const none: string[] = [];
    for await (const key of store.list("nothing/")) none.push(key);
    assert.deepEqual(none, []);
  });

  test("put() replaces, create() creates only once", async ({ store, seed }) => {
    if (seed) return; // read-only transport
    await store.put("latest", bytes("1"));
    await store.put("latest", bytes("2"));
    assert.equal(text(await store.get("latest")), "2");
    assert.equal(await store.create("versions/1/manifest.json", bytes("first")), true);
    assert.equal(await store.create("versions/1/manifest.json", bytes("second")), false);
    assert.equal(text(await store.get("versions/1/manifest.json")), "first");
  });

  test("create() retried with its own bytes returns true again", async ({ store, seed }) => {
    if (seed) return;
    const manifest = bytes(`{"nonce":"${crypto.randomUUID()}"}`);
    assert.equal(await store.create("versions/3/manifest.json", manifest), true);
    // The reply to the first create was lost and a retrying caller sends it again.
    assert.equal(await store.create("versions/3/manifest.json", manifest), true);
    assert.equal(await store.create("versions/3/manifest.json", bytes("other")), false);
    assert.deepEqual(await store.get("versions/3/manifest.json"), manifest);
  });

  test("create() racing: exactly one of many callers wins", async ({ store, seed }) => {
    if (seed) return;
    const results = await Promise.all(
      Array.from({ length: 8 }, (_, i) => store.create("versions/7/manifest.json", bytes(`w${i}`))),
    );
    assert.equal(results.filter(Boolean).length, 1);
    const winner = results.indexOf(true);
    assert.equal(text(await store.get("versions/7/manifest.json")), `w${winner}`);
  });

  test("delete() removes and is idempotent", async ({ store, seed }) => {
    if (seed) return;
    await store.put("chunks/cc/cc01", bytes("x"));
    await store.delete("chunks/cc/cc01");
    await store.delete("chunks/cc/cc01");
    assert.equal(await store.stat("chunks/cc/cc01"), null);
    await assert.rejects(store.get("chunks/cc/cc01"), NotFoundError);
  });
}

type Writer = (key: string, data: Uint8Array) => Promise<void>;
