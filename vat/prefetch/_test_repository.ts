/**
 * For the prefetch unit tests: a repository in memory holding one version made of
 * in-memory disks, a key that publishes it, and a cache in a temporary directory.
 *
 * @module
 */

import { ChunkCache } from "../cache/chunk_cache.ts";
import { generateSigningKey, type SigningKey } from "../auth/signing_key.ts";
import { type DiskSource, publishDisks } from "../repo/publish.ts";
import { Repository, type Version } from "../repo/repository.ts";
import { MemoryStore } from "../repo/store_memory.ts";

/** The repository's chunk size. */
export const TEST_CHUNK_BYTES = 4096;

/** A repository, its version 1, its publisher's key, a cache; `close` removes it all. */
export interface TestRepository {
  store: MemoryStore;
  repo: Repository;
  version: Version;
  key: SigningKey;
  cache: ChunkCache;
  close(): Promise<void>;
}

/** Disk contents where every chunk differs from every other (none is all zeroes). */
export function distinctChunks(count: number, seed: number): Uint8Array {
  const data = new Uint8Array(count * TEST_CHUNK_BYTES);
  for (let i = 0; i < count; i++) {
    const view = new DataView(data.buffer, i * TEST_CHUNK_BYTES, TEST_CHUNK_BYTES);
    for (let o = 0; o < TEST_CHUNK_BYTES; o += 8) {
      view.setUint32(o, seed * 1_000_003 + i * 7919 + o);
    }
  }
  return data;
}

function _source(data: Uint8Array): DiskSource {
  return {
    sizeBytes: data.length,
    read(offset, into) {
      into.set(data.subarray(offset, offset + into.length));
      return Promise.resolve();
    },
  };
}

/** Publishes `disks` (name to contents) as version 1 of a new repository. */
export async function makeTestRepository(
  disks: Record<string, Uint8Array>,
): Promise<TestRepository> {
  const dir = await Deno.makeTempDir({ prefix: "vat-prefetch-test-" });
  try {
    const key = await generateSigningKey(`${dir}/key`);
    const store = new MemoryStore();
    const repo = await Repository.init(store, {
      kind: "appliance",
      chunkSizeBytes: TEST_CHUNK_BYTES,
      publisherKeys: [key.publicKeyId],
    });
    const sources = Object.entries(disks).map(([n, d]) => [n, _source(d)] as [string, DiskSource]);
    await publishDisks(repo, sources, { memoryMiB: 64, cpus: 1 }, { key });
    const version = await repo.readVersion(1);
    const cache = await ChunkCache.open({ dir: `${dir}/cache`, budgetBytes: 64 * 1024 * 1024 });
    return {
      store,
      repo,
      version,
      key,
      cache,
      async close() {
        await cache.close();
        await Deno.remove(dir, { recursive: true });
      },
    };
  } catch (err) {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    throw err;
  }
}
