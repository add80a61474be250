/**
 * Publish's durability barrier (vat/repo/store_file.ts): chunks are written without an
 * fsync each and made durable together before the version's commit. A wrapper around
 * the real file store watches the commit point: when the manifest is created, every
 * chunk the version names is in place, whole; and when a chunk cannot be made durable,
 * nothing is committed.
 */

import assert from "node:assert/strict";
import { generateSigningKey } from "../vat/auth/signing_key.ts";
import { chunkKey, toHex } from "../vat/repo/chunk_codec.ts";
import { publishDisks } from "../vat/repo/publish.ts";
import { Repository } from "../vat/repo/repository.ts";
import type { ObjectInfo, PutOptions, ReadOptions, Store } from "../vat/repo/store.ts";
import { FileStore } from "../vat/repo/store_file.ts";
import { fillRandom } from "./helpers/images.ts";

const KiB = 1024;
const MiB = 1024 * KiB;

/** A `Store` that hands everything to `inner` and runs `beforeCreate` first. */
class CommitWatch implements Store {
  readonly location: string;
  readonly canList = true;
  constructor(readonly inner: FileStore, readonly beforeCreate: (key: string) => Promise<void>) {
    this.location = inner.location;
  }
  get(key: string, options?: ReadOptions) {
    return this.inner.get(key, options);
  }
  getRange(key: string, offset: number, length: number) {
    return this.inner.getRange(key, offset, length);
  }
  put(key: string, data: Uint8Array, options?: PutOptions) {
    return this.inner.put(key, data, options);
  }
  async create(key: string, data: Uint8Array) {
    await this.beforeCreate(key);
    return await this.inner.create(key, data);
  }
  stat(key: string): Promise<ObjectInfo | null> {
    return this.inner.stat(key);
  }
  list(prefix: string) {
    return this.inner.list(prefix);
  }
  delete(key: string) {
    return this.inner.delete(key);
  }
  close() {
    return this.inner.close();
  }
}

async function _files(dir: string, dotFiles: boolean): Promise<string[]> {
  const out: string[] = [];
  try {
    for await (const e of Deno.readDir(dir)) {
      if (e.isDirectory) out.push(...await _files(`${dir}/${e.name}`, dotFiles));
      else if (e.name.startsWith(".") === dotFiles) out.push(`${dir}/${e.name}`);
    }
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  return out;
}

async function _publish(dir: string, store: Store, seed: number) {
  const image = new Uint8Array(4 * MiB);
  fillRandom(image, seed);
  const key = await generateSigningKey(`${dir}/key`);
  const repo = await Repository.init(store, { kind: "appliance", chunkSizeBytes: 64 * KiB });
  const source = {
    sizeBytes: image.length,
    read: (offset: number, into: Uint8Array) => {
      into.set(image.subarray(offset, offset + into.length));
      return Promise.resolve();
    },
  };
  return await publishDisks(repo, [["system", source]], { memoryMiB: 64, cpus: 1 }, { key });
}

Deno.test("publish makes every chunk durable and in place before it commits the version", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vat-barrier-" });
  const seen: { key: string; chunks: number; temps: number }[] = [];
  const store = new CommitWatch(new FileStore(`${dir}/repo`), async (key) => {
    seen.push({
      key,
      chunks: (await _files(`${dir}/repo/chunks`, false)).length,
      temps: (await _files(`${dir}/repo/chunks`, true)).length,
    });
  });
  try {
    const result = await _publish(dir, store, 11);
    assert.equal(result.version, 1);
    // Before the commit's create, the chunks were still unsynced temporary files (the
    // barrier had work to do) ...
    const commit = seen.find((s) => s.key === "versions/1/manifest.json")!;
    assert.deepEqual(commit, { key: "versions/1/manifest.json", chunks: 0, temps: 64 });
    // ... and once committed, every chunk the version names is in place and verifies.
    const repo = await Repository.open(store);
    const version = await repo.readVersion(1);
    const index = await repo.readDiskIndex(version.manifest.disks.system.index);
    let named = 0;
    for (const [, hash] of index.dataChunks()) {
      assert.ok(await store.stat(chunkKey(toHex(hash))), `chunk ${toHex(hash)} is missing`);
      await repo.readChunk(hash);
      named++;
    }
    assert.equal(named, 64);
    assert.deepEqual(await _files(`${dir}/repo/chunks`, true), []);
  } finally {
    await store.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("publish commits nothing when a chunk cannot be made durable at the barrier", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vat-barrier-" });
  const store = new CommitWatch(new FileStore(`${dir}/repo`), async (key) => {
    if (key !== "versions/1/manifest.json") return;
    // One unsynced chunk is lost before the barrier (as a crash of the disk under it).
    const [temp] = await _files(`${dir}/repo/chunks`, true);
    await Deno.remove(temp);
  });
  try {
    await assert.rejects(() => _publish(dir, store, 12), Deno.errors.NotFound);
    assert.equal(await store.stat("versions/1/manifest.json"), null);
    await store.close();
    assert.deepEqual(await _files(`${dir}/repo/chunks`, true), []);
  } finally {
    await store.close();
    await Deno.remove(dir, { recursive: true });
  }
});
