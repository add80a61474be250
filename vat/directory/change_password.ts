/**
 * A user's own changes to their key slots, without an administrator (docs/USERS.md,
 * "Key slots"): a new password (the user key unlocked with the current password or the
 * recovery key) and a new recovery key (unlocked with the password); the new slots are
 * signed by the user's own key. Used by `vat user passwd` and the VAT's UI. A VAT passes
 * its directory pin: a directory that is not the one it knows is refused.
 *
 * @module
 */

import { deriveUserKey } from "../auth/user_key.ts";
import type { SigningKey } from "../auth/signing_key.ts";
import { openStore } from "../repo/open_store.ts";
import type { S3UrlOptions } from "../repo/store_s3.ts";
import type { Store } from "../repo/store.ts";
import { MIN_LOG_N } from "../auth/kdf.ts";
import { Directory, type DirectoryPin } from "./directory.ts";
import { makeSlot, newRecoveryKey } from "./key_slots.ts";
import { loginOnline } from "./login_client.ts";

/** Where the directory is, and what it must be. */
export interface SlotChangeOptions {
  s3?: S3UrlOptions;
  /** The directory this VAT pinned (its id and administrators' keys). */
  pin?: DirectoryPin;
}

async function _withStore<T>(
  location: string,
  s3: S3UrlOptions | undefined,
  signingKey: SigningKey | undefined,
  fn: (store: Store) => Promise<T>,
): Promise<T> {
  const store = await openStore(location, { signingKey, s3 });
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}

/**
 * Replaces `name`'s password slot: unlocks the user key with `old` (a password, or the
 * recovery key with `byRecovery`), signs the new slots with the user's own key.
 */
export async function changePassword(
  location: string,
  name: string,
  old: string,
  fresh: string,
  options: SlotChangeOptions & { byRecovery?: boolean } = {},
): Promise<void> {
  const login = await _withStore(location, options.s3, undefined, async (store) => {
    const dir = await Directory.open(store, options.pin);
    return await loginOnline(dir, name, old, options.byRecovery ? "recovery" : "password");
  });
  const userKey = deriveUserKey(login.secret);
  await _withStore(location, options.s3, userKey.signingKey, async (store) => {
    const dir = await Directory.open(store, options.pin);
    const context = { directoryId: dir.id, name };
    const slots = login.slots.slots.filter((s) => s.kind !== "password");
    slots.unshift(await makeSlot(login.secret, fresh, "password", context));
    await dir.writeSlots({
      ...login.slots,
      serial: login.slots.serial + 1,
      updatedAt: new Date().toISOString(),
      slots,
    }, userKey.signingKey);
  });
}

/**
 * Replaces `name`'s recovery key (unlocked with their `password`); returns the new one,
 * to be shown once. The old recovery key stops working.
 */
export async function replaceRecoveryKey(
  location: string,
  name: string,
  password: string,
  options: SlotChangeOptions = {},
): Promise<string> {
  const login = await _withStore(location, options.s3, undefined, async (store) => {
    return await loginOnline(await Directory.open(store, options.pin), name, password);
  });
  const userKey = deriveUserKey(login.secret);
  return await _withStore(location, options.s3, userKey.signingKey, async (store) => {
    const dir = await Directory.open(store, options.pin);
    const recovery = newRecoveryKey();
    // A recovery key has 100 bits of entropy: the floor's work factor is plenty.
    const slot = await makeSlot(
      login.secret,
      recovery,
      "recovery",
      { directoryId: dir.id, name },
      MIN_LOG_N,
    );
    await dir.writeSlots({
      ...login.slots,
      serial: login.slots.serial + 1,
      updatedAt: new Date().toISOString(),
      slots: [...login.slots.slots.filter((s) => s.kind !== "recovery"), slot],
    }, userKey.signingKey);
    return recovery;
  });
}
