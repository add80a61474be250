import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { generateSigningKey, type SigningKey } from "../auth/signing_key.ts";
import { deriveUserKey } from "../auth/user_key.ts";
import { MIN_LOG_N } from "../auth/kdf.ts";
import { MemoryStore } from "../repo/store_memory.ts";
import { Directory, slotsKey } from "./directory.ts";
import { type KeySlots, makeSlot, newRecoveryKey, openSlot, signSlots } from "./key_slots.ts";
import { loginOnline, LoginRefusedError } from "./login_client.ts";
import { signEntry, type UserEntry } from "./user_entry.ts";
import { signObject } from "./signed_object.ts";

async function withKeys(fn: (admin: SigningKey, stranger: SigningKey) => Promise<void>) {
  const dir = await Deno.makeTempDir();
  try {
    await fn(await generateSigningKey(`${dir}/admin`), await generateSigningKey(`${dir}/other`));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function addUser(dir: Directory, admin: SigningKey, name: string, password: string) {
  const secret = new Uint8Array(randomBytes(32));
  const context = { directoryId: dir.id, name };
  const entry: UserEntry = {
    format: 1,
    directoryId: dir.id,
    name,
    displayName: name,
    userKey: deriveUserKey(secret).signingKey.publicKeyId,
    dataRepo: null,
    entitlements: [],
    offline: { days: 14, logins: 5 },
    enabled: true,
    serial: 1,
    updatedAt: "now",
  };
  const slots: KeySlots = {
    format: 1,
    directoryId: dir.id,
    name,
    userKey: entry.userKey,
    serial: 1,
    updatedAt: "now",
    slots: [await makeSlot(secret, password, "password", context, MIN_LOG_N)],
  };
  await dir.writeEntry(entry, admin, true);
  await dir.writeSlots(slots, admin);
  return { secret, entry, slots };
}

Deno.test("a key slot opens with its password only, and only for its user", async () => {
  const secret = new Uint8Array(randomBytes(32));
  const context = { directoryId: "d1", name: "alice" };
  const slot = await makeSlot(secret, "hunter2", "password", context, MIN_LOG_N);
  assert.deepEqual(await openSlot(slot, "hunter2", context), secret);
  assert.equal(await openSlot(slot, "hunter3", context), null);
  // The same slot copied to another user (or directory) does not open.
  assert.equal(await openSlot(slot, "hunter2", { directoryId: "d1", name: "bob" }), null);
  assert.equal(await openSlot({ ...slot, kind: "recovery" }, "hunter2", context), null);
  assert.match(newRecoveryKey(), /^([A-Z2-9]{4}-){7}[A-Z2-9]{4}$/);
});

Deno.test("loginOnline() on a storage directory unlocks the slot; one message for a wrong name or password", async () => {
  await withKeys(async (admin) => {
    const dir = await Directory.init(new MemoryStore(), admin);
    const { secret } = await addUser(dir, admin, "alice", "right");
    const login = await loginOnline(dir, "alice", "right");
    assert.deepEqual(login.secret, secret);
    assert.equal(login.via, "storage");
    for (const [name, password] of [["alice", "wrong"], ["nobody", "right"]]) {
      await assert.rejects(
        () => loginOnline(dir, name, password),
        (err) => err instanceof LoginRefusedError && err.message === "wrong name or password",
      );
    }
  });
});

Deno.test("an entry or key slots not signed by an administrator are refused", async () => {
  await withKeys(async (admin, stranger) => {
    const store = new MemoryStore();
    const dir = await Directory.init(store, admin);
    const { entry, slots } = await addUser(dir, admin, "alice", "right");
    // A stranger's entry.
    await store.put("users/alice/entry.json", signEntry({ ...entry, serial: 2 }, stranger));
    await assert.rejects(() => loginOnline(dir, "alice", "right"), /keys it may be signed by/);
    await assert.rejects(() => dir.writeEntry(entry, stranger), /not an administrator/);
    await store.put("users/alice/entry.json", signEntry(entry, admin));
    // A stranger's slots.
    await store.put(slotsKey("alice"), signSlots(slots, stranger));
    await assert.rejects(() => loginOnline(dir, "alice", "right"), /keys it may be signed by/);
    // An entry signed in another context (as slots) does not pass for an entry.
    await store.put("users/alice/entry.json", signObject("vat-key-slots-v1\n", entry, admin));
    await assert.rejects(() => loginOnline(dir, "alice", "right"), /keys it may be signed by/);
  });
});

Deno.test("key slots demanding a huge or tiny KDF work factor are refused before any work", async () => {
  await withKeys(async (admin) => {
    const store = new MemoryStore();
    const dir = await Directory.init(store, admin);
    const { slots } = await addUser(dir, admin, "alice", "right");
    for (const [logN, message] of [[30, /above the cap/], [10, /below the floor/]] as const) {
      const hostile = structuredClone(slots);
      hostile.slots[0].kdf.logN = logN;
      await dir.writeSlots(hostile, admin);
      const t0 = performance.now();
      await assert.rejects(() => loginOnline(dir, "alice", "right"), message);
      assert.ok(performance.now() - t0 < 2000);
    }
  });
});

Deno.test("Directory.open() with a pin refuses a directory whose administrators changed", async () => {
  await withKeys(async (admin, stranger) => {
    const store = new MemoryStore();
    const dir = await Directory.init(store, admin);
    const pin = dir.pin;
    const config = JSON.parse(new TextDecoder().decode(await store.get("repo.json")));
    config.publisherKeys = [stranger.publicKeyId];
    await store.put("repo.json", new TextEncoder().encode(JSON.stringify(config)));
    await assert.rejects(() => Directory.open(store, pin), /not the one this VAT knows/);
  });
});
