/**
 * Changing a password without an administrator (docs/USERS.md, "Key slots"): the user
 * key is unlocked with the current password or the recovery key, and the new slots are
 * signed by the user's own key. Used by `vat user passwd` and the VAT's UI.
 *
 * @module
 */

import { deriveUserKey } from "../auth/user_key.ts";
import type { SigningKey } from "../auth/signing_key.ts";
import { openStore } from "../repo/open_store.ts";
import type { S3UrlOptions } from "../repo/store_s3.ts";
import type { Store } from "../repo/store.ts";
import { Directory } from "./directory.ts";
import { makeSlot } from "./key_slots.ts";
import { loginOnline } from "./login_client.ts";

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
  options: { byRecovery?: boolean; s3?: S3UrlOptions } = {},
): Promise<void> {
  const login = await _withStore(location, options.s3, undefined, async (store) => {
    const dir = await Directory.open(store);
    return await loginOnline(dir, name, old, options.byRecovery ? "recovery" : "password");
  });
  const userKey = deriveUserKey(login.secret);
  await _withStore(location, options.s3, userKey.signingKey, async (store) => {
    const dir = await Directory.open(store);
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
