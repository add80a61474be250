import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import type { SigningKey } from "../auth/signing_key.ts";
import { IntegrityError, PermanentError } from "../errors.ts";
import { appendKeyList } from "../repo/key_list.ts";
import { publishDisks } from "../repo/publish.ts";
import { Repository } from "../repo/repository.ts";
import { MemoryStore } from "../repo/store_memory.ts";
import { RepoTrust } from "./repo_trust.ts";
import { StateDb } from "./state_db.ts";

function makeKey(): SigningKey {
  const { privateKey } = generateKeyPairSync("ed25519");
  const x = privateKey.export({ format: "jwk" }).x!;
  return { privateKey, publicKeyId: `ed25519:${x}` };
}

async function publish(repo: Repository, key: SigningKey, fill: number, updateRequired = false) {
  const source = {
    sizeBytes: 8192,
    read: (_offset: number, into: Uint8Array) => Promise.resolve(void into.fill(fill)),
  };
  return await publishDisks(repo, [["system", source]], { memoryMiB: 64, cpus: 1 }, {
    key,
    updateRequired,
  });
}

async function withDb(fn: (db: StateDb, trust: RepoTrust) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "vat-repo-trust-" });
  const db = StateDb.open(`${dir}/vat.sqlite`);
  try {
    await fn(db, new RepoTrust(db));
  } finally {
    db.close();
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("RepoTrust refuses to boot a version older than one marked update required", async () => {
  await withDb(async (db, trust) => {
    const key = makeKey();
    const store = new MemoryStore();
    const repo = await Repository.init(store, {
      kind: "appliance",
      chunkSizeBytes: 4096,
      publisherKeys: [key.publicKeyId],
    });
    await publish(repo, key, 1);
    db.add("desk", "memory:", await trust.pin(repo, null));
    const v1 = await repo.readVersion(1);
    trust.checkRequired("desk", v1);
    await publish(repo, key, 2, true);
    trust.accept("desk", await repo.readVersion(2));
    assert.equal(db.trust("desk")?.requiredVersion, 2);
    assert.throws(
      () => trust.checkRequired("desk", v1),
      (err) =>
        err instanceof PermanentError &&
        /version 1 of "desk" may not start: version 2, which this VAT has seen, is marked update required/
          .test(err.message),
    );
  });
});

Deno.test("RepoTrust refuses another repository at the same address and keeps its pins", async () => {
  await withDb(async (db, trust) => {
    const key = makeKey();
    const repo = await Repository.init(new MemoryStore(), {
      kind: "appliance",
      chunkSizeBytes: 4096,
      publisherKeys: [key.publicKeyId],
    });
    await publish(repo, key, 1);
    db.add("desk", "memory:", await trust.pin(repo, null));
    const before = db.trust("desk");
    const other = await Repository.init(new MemoryStore(), {
      kind: "appliance",
      chunkSizeBytes: 4096,
      publisherKeys: [key.publicKeyId],
    });
    await assert.rejects(
      () => trust.apply("desk", other, true),
      (err) =>
        err instanceof IntegrityError &&
        err.message.includes(`its id is ${other.config.id}, this VAT pinned ${repo.config.id}`),
    );
    assert.deepEqual(db.trust("desk"), before);
  });
});

Deno.test("RepoTrust: a key a signed list retires still opens the versions accepted before, not newer ones", async () => {
  await withDb(async (db, trust) => {
    const [a, b] = [makeKey(), makeKey()];
    const store = new MemoryStore();
    const repo = await Repository.init(store, {
      kind: "appliance",
      chunkSizeBytes: 4096,
      publisherKeys: [a.publicKeyId],
    });
    await publish(repo, a, 1);
    db.add("desk", "memory:", await trust.pin(repo, null));
    await appendKeyList(
      store,
      repo.config.id,
      { sequence: 0, keys: [a.publicKeyId], retired: [] },
      [b.publicKeyId],
      a,
      1,
    );
    await repo.setPublisherKeys([b.publicKeyId, a.publicKeyId]); // a may still write here
    await publish(repo, a, 2); // signed by the retired key after its retirement
    const reader = await Repository.open(store);
    assert.equal(await trust.apply("desk", reader, true), null);
    assert.deepEqual(db.trust("desk")?.keys, [b.publicKeyId]);
    assert.deepEqual(db.trust("desk")?.retired, [{ key: a.publicKeyId, upTo: 1 }]);
    assert.equal((await reader.readVersion(1)).number, 1, "accepted while a was trusted");
    await assert.rejects(
      () => reader.readVersion(2),
      new RegExp(`version 2: signed by ${a.publicKeyId}`),
    );
  });
});
