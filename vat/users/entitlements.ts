/**
 * A user's appliances kept in line with what they may use (docs/USERS.md): what the
 * directory entitles them to and what their profile lists is added when missing; what
 * an administrator revoked goes once it is stopped and backed up. The entitlements
 * seen last are kept in the user's `entitled.json`, so a revocation is noticed.
 *
 * @module
 */

import { type Profile, readProfile } from "../backup/profile.ts";
import { writeFileAtomic } from "../fs_atomic.ts";
import type { ActiveUser } from "./directory_users.ts";

/**
 * Adds what the user is entitled to and what their profile lists, if missing here,
 * and removes what an administrator revoked (an appliance that came from an
 * entitlement no longer in the entry): only when it is stopped and its user disk is
 * all in the data repository (a later grant brings it back), else it stays until then.
 * A repository that cannot be reached now is tried at the next login.
 */
export async function syncEntitlements(
  user: ActiveUser,
  userDir: string,
  log: (line: string) => void,
): Promise<void> {
  const have = new Set((await user.appliances.list()).map((a) => a.name));
  const entitled = new Set(user.entry.entitlements.map((e) => e.name));
  const wanted: { name: string; repo: string; hoarded: boolean }[] = user.entry.entitlements
    .map((e) => ({ name: e.name, repo: e.repo, hoarded: false }));
  const wasEntitled = new Set(await _readEntitled(userDir));
  let profile: Profile | null = null;
  if (user.backups) {
    try {
      profile = await readProfile(user.backups.store, user.key);
    } catch (err) {
      log(`profile not read: ${(err as Error).message}`);
    }
  }
  for (const s of profile?.subscriptions ?? []) {
    if (s.entitled) wasEntitled.add(s.name);
  }
  const revoked = [...wasEntitled].filter((name) => !entitled.has(name));
  const kept: string[] = [];
  for (const name of revoked) {
    if (!have.has(name)) continue;
    try {
      if (!user.backups) throw new Error("there is no data repository to keep its user disk");
      if (user.appliances.runningNames().includes(name)) throw new Error("it is running");
      await user.appliances.delete(name);
      have.delete(name);
      log(`${name} removed: its entitlement was revoked`);
    } catch (err) {
      kept.push(name);
      log(`${name} was revoked but stays for now: ${(err as Error).message}`);
    }
  }
  for (const s of profile?.subscriptions ?? []) {
    if (revoked.includes(s.name)) continue;
    const known = wanted.find((w) => w.name === s.name);
    if (known) known.hoarded ||= s.hoarded === true;
    else wanted.push({ name: s.name, repo: s.repo, hoarded: s.hoarded === true });
  }
  for (const w of wanted) {
    if (have.has(w.name)) continue;
    try {
      await user.appliances.add(w.repo, w.name);
      if (w.hoarded) {
        user.appliances.hoard(w.name, true).catch((err) =>
          log(`hoard ${w.name}: ${(err as Error).message}`)
        );
      }
    } catch (err) {
      log(`${w.name} not added now: ${(err as Error).message}`);
    }
  }
  user.revokedKept = kept;
  await _writeEntitled(userDir, [...entitled, ...kept]);
}

async function _readEntitled(userDir: string): Promise<string[]> {
  try {
    const list = JSON.parse(
      await Deno.readTextFile(`${userDir}/entitled.json`),
    );
    return Array.isArray(list) ? list.filter((n) => typeof n === "string") : [];
  } catch (err) {
    if (err instanceof Deno.errors.NotFound || err instanceof SyntaxError) return [];
    throw err;
  }
}

async function _writeEntitled(userDir: string, names: string[]): Promise<void> {
  await writeFileAtomic(
    `${userDir}/entitled.json`,
    new TextEncoder().encode(JSON.stringify([...new Set(names)].sort()) + "\n"),
  );
}
