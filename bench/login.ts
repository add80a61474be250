/**
 * The login benchmark: how long a user waits at the login screen, online and offline
 * (docs/USERS.md, "Login time"). A user with the default KDF (scrypt N=2^17) in a
 * directory on disk and one served by `vat serve` on loopback; it times
 *
 * - the login protocol alone (`loginOnline`): the storage read and the slot's test
 *   decryption on a plain directory, the challenge-response on vat serve;
 * - a VAT's whole login (`DirectoryUsers.login`, the daemon's `POST /api/login`): the
 *   above, the cached login written, the user's state opened; online, and offline with
 *   the server stopped (the cached slot's test decryption).
 *
 * Run: `deno run -A bench/login.ts [--reps N]`. Medians of N (default 5).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { randomBytes } from "node:crypto";
import { generateSigningKey } from "../vat/auth/signing_key.ts";
import { deriveUserKey } from "../vat/auth/user_key.ts";
import { ChunkCache } from "../vat/cache/chunk_cache.ts";
import { DirectoryUsers } from "../vat/users/directory_users.ts";
import { Directory } from "../vat/directory/directory.ts";
import { makeSlot } from "../vat/directory/key_slots.ts";
import { loginOnline } from "../vat/directory/login_client.ts";
import { FetchScheduler } from "../vat/fetch/fetch_scheduler.ts";
import { openStore } from "../vat/repo/open_store.ts";
import { startRepositoryServer } from "../vat/serve/server.ts";
import { AcceleratorChoice } from "../vat/vmm/accelerator.ts";

const { values } = parseArgs({ args: Deno.args, options: { reps: { type: "string" } } });
const reps = Number(values.reps ?? 5);
const t = await Deno.makeTempDir({ prefix: "vat-bench-login-" });

async function addUser(location: string, admin: Awaited<ReturnType<typeof generateSigningKey>>) {
  const store = await openStore(location, { signingKey: admin });
  const dir = await Directory.init(store, admin);
  const secret = new Uint8Array(randomBytes(32));
  const context = { directoryId: dir.id, name: "alice" };
  const userKey = deriveUserKey(secret).signingKey.publicKeyId;
  await dir.writeEntry(
    {
      format: 1,
      directoryId: dir.id,
      name: "alice",
      displayName: "Alice",
      userKey,
      dataRepo: null,
      entitlements: [],
      offline: { days: 14, logins: 1000 },
      enabled: true,
      serial: 1,
      updatedAt: new Date().toISOString(),
    },
    admin,
    true,
  );
  await dir.writeSlots({
    format: 1,
    directoryId: dir.id,
    name: "alice",
    userKey,
    serial: 1,
    updatedAt: new Date().toISOString(),
    slots: [await makeSlot(secret, "correct horse", "password", context)],
  }, admin);
  await store.close();
}

async function median(what: string, fn: () => Promise<unknown>): Promise<void> {
  await fn();
  const times: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    await fn();
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  console.log(`| ${what} | ${times[Math.floor(times.length / 2)].toFixed(0)} ms |`);
}

try {
  const admin = await generateSigningKey(`${t}/admin`);
  await Deno.mkdir(`${t}/root`);
  const server = await startRepositoryServer({
    root: `${t}/root`,
    port: 0,
    allowKeys: [admin.publicKeyId],
    log: () => {},
  });
  const served = `${server.url}dir/`;
  await addUser(`${t}/dir`, admin);
  await addUser(served, admin);
  const protocol = async (location: string) => {
    const store = await openStore(location);
    try {
      await loginOnline(await Directory.open(store), "alice", "correct horse");
    } finally {
      await store.close();
    }
  };
  const cache = await ChunkCache.open({ dir: `${t}/state/cache`, budgetBytes: 1 << 24 });
  const users = new DirectoryUsers({
    stateDir: `${t}/state`,
    location: served,
    cache,
    scheduler: new FetchScheduler(),
    accelerator: new AcceleratorChoice({ setting: "tcg", cacheFile: null, log: () => {} }),
    onPrefetchNeeded: () => {},
    log: () => {},
  });
  const vatLogin = async (offline: boolean) => {
    const user = await users.login("alice", "correct horse");
    if (user.offline !== offline) throw new Error(`expected offline=${offline}`);
    await users.logout();
  };
  console.log(`login time, median of ${reps} (scrypt N=2^17 r=8 p=1):`);
  console.log("| login | time |");
  console.log("| --- | ---: |");
  await median("protocol only, directory on disk", () => protocol(`${t}/dir`));
  await median("protocol only, vat serve on loopback (challenge-response)", () => protocol(served));
  await median("VAT login, online (vat serve)", () => vatLogin(false));
  await server.close();
  await median("VAT login, offline (cached slot)", () => vatLogin(true));
  await users.close();
  await cache.close();
} finally {
  await Deno.remove(t, { recursive: true });
}
