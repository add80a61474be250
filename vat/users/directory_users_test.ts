import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { generateSigningKey, type SigningKey } from "../auth/signing_key.ts";
import { deriveUserKey } from "../auth/user_key.ts";
import { MIN_LOG_N } from "../auth/kdf.ts";
import { ChunkCache } from "../cache/chunk_cache.ts";
import { Directory } from "../directory/directory.ts";
import { makeSlot } from "../directory/key_slots.ts";
import { LoginRefusedError } from "../directory/login_client.ts";
import { signEntry, type UserEntry } from "../directory/user_entry.ts";
import { FetchScheduler } from "../fetch/fetch_scheduler.ts";
import { FileStore } from "../repo/store_file.ts";
import { AcceleratorChoice } from "../vmm/accelerator.ts";
import { DirectoryUsers } from "./directory_users.ts";
import { readProfile, writeProfile } from "../backup/profile.ts";
import { MemoryStore } from "../repo/store_memory.ts";

interface Rig {
  t: string;
  admin: SigningKey;
  dir: Directory;
  users(): Promise<DirectoryUsers>;
  entry: UserEntry;
}

async function withRig(fn: (rig: Rig) => Promise<void>) {
  const t = await Deno.makeTempDir({ prefix: "vat-directory-users-" });
  const opened: DirectoryUsers[] = [];
  const caches: ChunkCache[] = [];
  try {
    const admin = await generateSigningKey(`${t}/admin`);
    await Deno.mkdir(`${t}/dir`);
    const dir = await Directory.init(new FileStore(`${t}/dir`), admin);
    const secret = new Uint8Array(randomBytes(32));
    const entry: UserEntry = {
      format: 1,
      directoryId: dir.id,
      name: "alice",
      displayName: "Alice",
      userKey: deriveUserKey(secret).signingKey.publicKeyId,
      dataRepo: null,
      entitlements: [],
      offline: { days: 14, logins: 1 },
      enabled: true,
      serial: 2,
      updatedAt: "now",
    };
    await dir.writeEntry(entry, admin, true);
    await dir.writeSlots({
      format: 1,
      directoryId: dir.id,
      name: "alice",
      userKey: entry.userKey,
      serial: 1,
      updatedAt: "now",
      slots: [
        await makeSlot(secret, "pw", "password", { directoryId: dir.id, name: "alice" }, MIN_LOG_N),
      ],
    }, admin);
    // One cache for every instance: a second open of its directory waits for the first.
    const cache = await ChunkCache.open({ dir: `${t}/state/cache`, budgetBytes: 1 << 24 });
    caches.push(cache);
    const users = async () => {
      await Promise.resolve();
      const u = new DirectoryUsers({
        stateDir: `${t}/state`,
        location: `${t}/dir`,
        cache,
        scheduler: new FetchScheduler(),
        accelerator: new AcceleratorChoice({ setting: "tcg", cacheFile: null, log: () => {} }),
        onPrefetchNeeded: () => {},
        log: () => {},
      });
      opened.push(u);
      return u;
    };
    await fn({ t, admin, dir, users, entry });
  } finally {
    for (const u of opened) await u.close();
    for (const c of caches) await c.close().catch(() => {});
    await Deno.remove(t, { recursive: true });
  }
}

const refused = (pattern: RegExp) => (err: unknown) =>
  err instanceof Error && pattern.test(err.message);

Deno.test("DirectoryUsers: offline logins within the allowance, failures delayed across restarts", async () => {
  await withRig(async ({ t, users }) => {
    let u = await users();
    await u.login("alice", "pw");
    assert.equal(u.current?.offline, false);
    await u.logout();
    await Deno.rename(`${t}/dir`, `${t}/dir.away`);
    await assert.rejects(() => u.login("alice", "nope"), refused(/offline: using the password/));
    // A new daemon on the same state still makes her wait.
    await u.close();
    u = await users();
    await assert.rejects(
      () => u.login("alice", "pw"),
      (err) => err instanceof LoginRefusedError && err.retryAfterMs > 0,
    );
    await new Promise((r) => setTimeout(r, 1100));
    await u.login("alice", "pw");
    assert.equal(u.current?.offline, true);
    await u.logout();
    // The allowance is one offline login.
    await assert.rejects(() => u.login("alice", "pw"), refused(/used up their offline logins/));
    await Deno.rename(`${t}/dir.away`, `${t}/dir`);
    await u.login("alice", "pw");
    assert.equal(u.current?.offline, false);
  });
});

Deno.test("DirectoryUsers: rolled-back entries and slots, a stranger's entry and a swapped directory are refused", async () => {
  await withRig(async ({ t, admin, dir, users, entry }) => {
    const u = await users();
    await u.login("alice", "pw");
    await u.logout();
    // The storage serves an older entry than the VAT saw.
    await dir.writeEntry({ ...entry, serial: 1 }, admin);
    await assert.rejects(() => u.login("alice", "pw"), refused(/older than the one this VAT saw/));
    await dir.writeEntry(entry, admin);
    // Key slots older than the ones the VAT saw (an old password brought back).
    const slotsNow = await dir.slotsBytes("alice");
    const slots = dir.openSlots(entry, slotsNow);
    await dir.writeSlots({ ...slots, serial: 3 }, admin);
    await u.login("alice", "pw");
    await u.logout();
    await dir.writeSlots({ ...slots, serial: 2 }, admin);
    await assert.rejects(() => u.login("alice", "pw"), refused(/key slots .* are older than/));
    await dir.writeSlots({ ...slots, serial: 3 }, admin);
    // An entry signed by someone else than the administrator.
    const stranger = await generateSigningKey(`${t}/stranger`);
    await dir.store.put(
      "users/alice/entry.json",
      signEntry({ ...entry, serial: 5, offline: { days: 999, logins: 999 } }, stranger),
    );
    await assert.rejects(() => u.login("alice", "pw"), refused(/keys it may be signed by/));
    await dir.writeEntry(entry, admin);
    // Another directory (another administrator) in its place.
    const other = await generateSigningKey(`${t}/other`);
    await Deno.remove(`${t}/dir`, { recursive: true });
    await Deno.mkdir(`${t}/dir`);
    const fake = await Directory.init(new FileStore(`${t}/dir`), other);
    await fake.writeEntry({ ...entry, directoryId: fake.id, serial: 9 }, other, true);
    await assert.rejects(() => u.login("alice", "pw"), refused(/not the one this VAT knows/));
  });
});

Deno.test("DirectoryUsers: unknown and malformed names get the one message", async () => {
  await withRig(async ({ users }) => {
    const u = await users();
    await assert.rejects(() => u.login("Not A Name", "pw"), refused(/^wrong name or password$/));
    await assert.rejects(() => u.login("bob", "pw"), refused(/^wrong name or password$/));
    await new Promise((r) => setTimeout(r, 1100));
    await u.login("alice", "pw");
    assert.deepEqual(u.whoami().user, {
      name: "alice",
      displayName: "Alice",
      offline: false,
      backups: false,
    });
  });
});

Deno.test("the profile is sealed: it opens with its user's key only", async () => {
  const store = new MemoryStore();
  const key = deriveUserKey(new Uint8Array(randomBytes(32)));
  assert.equal(await readProfile(store, key), null);
  const profile = {
    format: 1 as const,
    updatedAt: "now",
    subscriptions: [{ name: "desk", repo: "https://x/desk/", hoarded: true }],
  };
  await writeProfile(store, key, profile);
  assert.deepEqual(await readProfile(store, key), profile);
  assert.ok(!new TextDecoder().decode(await store.get("profile.json")).includes("desk"));
  const other = deriveUserKey(new Uint8Array(randomBytes(32)));
  await assert.rejects(() => readProfile(store, other), /does not open/);
});

Deno.test("DirectoryUsers: a user's data repository is made at their first login, and their profile written", async () => {
  await withRig(async ({ t, admin, dir, users, entry }) => {
    await dir.writeEntry({ ...entry, serial: 3, dataRepo: `${t}/data/alice` }, admin);
    const u = await users();
    const user = await u.login("alice", "pw");
    const config = JSON.parse(await Deno.readTextFile(`${t}/data/alice/repo.json`));
    assert.equal(config.kind, "data");
    assert.deepEqual(config.publisherKeys, [entry.userKey]);
    assert.deepEqual(u.whoami().user?.backups, true);
    const profile = await readProfile(new FileStore(`${t}/data/alice`), user.key);
    assert.deepEqual(profile?.subscriptions, []);
    await u.logout();
  });
});
