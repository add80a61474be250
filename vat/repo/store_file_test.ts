import assert from "node:assert/strict";
import { DEFERRED_BATCH, FileStore } from "./store_file.ts";
import { testStore } from "./store_test_suite.ts";

testStore("FileStore", async () => {
  const root = await Deno.makeTempDir({ prefix: "vat-filestore-" });
  return {
    store: new FileStore(root),
    cleanup: () => Deno.remove(root, { recursive: true }),
  };
});

async function _withStore(fn: (store: FileStore, root: string) => Promise<void>): Promise<void> {
  const root = await Deno.makeTempDir({ prefix: "vat-filestore-" });
  const store = new FileStore(root);
  try {
    await fn(store, root);
  } finally {
    await store.close();
    await Deno.remove(root, { recursive: true });
  }
}

/** The dot files (temporary files) under `dir`, recursively. */
async function _temps(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    if (e.name.startsWith(".")) out.push(`${dir}/${e.name}`);
    else if (e.isDirectory) out.push(...await _temps(`${dir}/${e.name}`));
  }
  return out;
}

Deno.test("FileStore.put() with deferSync shows nothing until create(), which commits it first", async () => {
  await _withStore(async (store, root) => {
    const body = new Uint8Array(70_000).fill(7);
    await store.put("chunks/ab/abcd", body, { deferSync: true });
    await store.put("chunks/cd/cdef", body.subarray(0, 10), { deferSync: true });
    // Not under its key before it is durable: a reader (or a later publish's existence
    // check) never takes an unsynced file for a chunk.
    assert.equal(await store.stat("chunks/ab/abcd"), null);
    assert.equal((await _temps(root)).length, 2);
    assert.equal(await store.create("versions/1/manifest", new Uint8Array([1])), true);
    assert.deepEqual(await store.get("chunks/ab/abcd"), body);
    assert.deepEqual(await store.get("chunks/cd/cdef"), body.subarray(0, 10));
    assert.deepEqual(await _temps(root), []);
  });
});

Deno.test("FileStore.create() creates nothing when a deferred object could not be made durable", async () => {
  await _withStore(async (store, root) => {
    await store.put("chunks/ab/abcd", new Uint8Array([1, 2, 3]), { deferSync: true });
    // The unsynced file vanishes before the barrier (a crash of the writer's view of it):
    // the commit must fail rather than name a chunk that is not there.
    for (const temp of await _temps(root)) await Deno.remove(temp);
    await assert.rejects(() => store.create("versions/1/manifest", new Uint8Array([1])));
    assert.equal(await store.stat("versions/1/manifest"), null);
    assert.equal(await store.stat("chunks/ab/abcd"), null);
    // The failure was reported once; the store works again afterwards.
    assert.equal(await store.create("versions/1/manifest", new Uint8Array([1])), true);
  });
});

Deno.test("FileStore commits deferred puts in batches and close() removes the uncommitted", async () => {
  await _withStore(async (store, root) => {
    const keys = Array.from({ length: DEFERRED_BATCH + 3 }, (_, i) => `chunks/x/${i}`);
    for (const key of keys) {
      await store.put(key, new TextEncoder().encode(key), { deferSync: true });
    }
    // The put that filled the batch waited for its commit: those are in place.
    for (const key of keys.slice(0, DEFERRED_BATCH)) {
      assert.equal(new TextDecoder().decode(await store.get(key)), key);
    }
    assert.equal((await _temps(root)).length, 3);
    await store.close();
    assert.deepEqual(await _temps(root), []);
    for (const key of keys.slice(DEFERRED_BATCH)) assert.equal(await store.stat(key), null);
  });
});

Deno.test("FileStore deferred puts make a directory again when it was removed", async () => {
  await _withStore(async (store, root) => {
    await store.put("chunks/ab/1", new Uint8Array([1]), { deferSync: true });
    await store.create("versions/1/manifest", new Uint8Array([1]));
    await Deno.remove(`${root}/chunks/ab`, { recursive: true });
    await store.put("chunks/ab/2", new Uint8Array([2]), { deferSync: true });
    await store.create("versions/2/manifest", new Uint8Array([2]));
    assert.deepEqual(await store.get("chunks/ab/2"), new Uint8Array([2]));
  });
});
