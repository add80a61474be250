/**
 * A user's entry in the directory (docs/USERS.md, "Entries"): who they are, their
 * public user key, their data repository, the appliances they are entitled to, their
 * offline allowance and whether the account is enabled. Signed by an administrator.
 *
 * @module
 */

import { IntegrityError, UsageError } from "../errors.ts";
import type { SigningKey } from "../auth/signing_key.ts";
import { openObject, signObject } from "./signed_object.ts";

export const ENTRY_CONTEXT = "vat-user-entry-v1\n";

/** An appliance the user is entitled to. */
export interface Entitlement {
  /** The name it has on the user's VATs. */
  name: string;
  /** Its repository's location. */
  repo: string;
  /** Publisher keys to pin for it (empty: trust on first use). */
  publisherKeys: string[];
}

/** How long a VAT lets the user log in without seeing the directory. */
export interface OfflineAllowance {
  /** Days since the last online login. */
  days: number;
  /** Offline logins since the last online login. */
  logins: number;
}

/** The entry's payload. */
export interface UserEntry {
  format: 1;
  directoryId: string;
  name: string;
  displayName: string;
  /** The user key's public id (`ed25519:...`): it signs their data and their own slots. */
  userKey: string;
  /** Where their data repository is, or null (then nothing is backed up). */
  dataRepo: string | null;
  entitlements: Entitlement[];
  offline: OfflineAllowance;
  enabled: boolean;
  /** Grows with every rewrite: a VAT never accepts an older entry than one it saw. */
  serial: number;
  updatedAt: string;
}

export const DEFAULT_OFFLINE: OfflineAllowance = { days: 14, logins: 50 };

const NAME = /^[a-z][a-z0-9._-]{0,31}$/;

/** Throws `UsageError` unless `name` is a valid user name. */
export function checkUserName(name: string): string {
  if (!NAME.test(name)) {
    throw new UsageError(
      `"${name}" is not a user name: 1 to 32 of a-z 0-9 . _ -, starting with a letter`,
    );
  }
  return name;
}

/** The entry's signed bytes. */
export function signEntry(entry: UserEntry, adminKey: SigningKey): Uint8Array {
  return signObject(ENTRY_CONTEXT, entry, adminKey);
}

/**
 * Opens an entry: signed by an administrator, of this directory and this user, every
 * field of its type. Throws `IntegrityError` otherwise.
 */
export function openEntry(
  bytes: Uint8Array,
  expect: { directoryId: string; name: string; adminKeys: readonly string[] },
): UserEntry {
  const what = `the directory entry of ${expect.name}`;
  const { payload: p } = openObject(bytes, ENTRY_CONTEXT, expect.adminKeys, what);
  const fail = (field: string) => new IntegrityError(`${what} is invalid: ${field}`);
  if (p.format !== 1) throw fail("format");
  if (p.directoryId !== expect.directoryId) throw fail("it belongs to another directory");
  if (p.name !== expect.name) throw fail(`it is the entry of ${JSON.stringify(p.name)}`);
  if (typeof p.displayName !== "string") throw fail("displayName");
  if (typeof p.userKey !== "string" || !p.userKey.startsWith("ed25519:")) throw fail("userKey");
  if (p.dataRepo !== null && typeof p.dataRepo !== "string") throw fail("dataRepo");
  if (
    !Array.isArray(p.entitlements) ||
    !p.entitlements.every((e) =>
      typeof e?.name === "string" && typeof e.repo === "string" &&
      Array.isArray(e.publisherKeys) && e.publisherKeys.every((k: unknown) => typeof k === "string")
    )
  ) throw fail("entitlements");
  const offline = p.offline as OfflineAllowance | undefined;
  if (
    !Number.isFinite(offline?.days) || !Number.isInteger(offline?.logins) ||
    offline!.days < 0 || offline!.logins < 0
  ) throw fail("offline");
  if (typeof p.enabled !== "boolean") throw fail("enabled");
  if (!Number.isSafeInteger(p.serial) || (p.serial as number) < 1) throw fail("serial");
  if (typeof p.updatedAt !== "string") throw fail("updatedAt");
  return p as unknown as UserEntry;
}
