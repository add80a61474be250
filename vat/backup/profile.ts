/**
 * The user's profile in their data repository (docs/USERS.md, "The profile"): the
 * appliances they subscribed to and which of them to keep for offline use, so a fresh
 * VAT shows the same list (the paper's profile on network storage). One object,
 * `profile.json` at the repository's root, sealed with AES-256-GCM under the user's
 * chunk key (additional data `vat-profile-v1`), like every other object of theirs
 * unreadable to the storage; read through the daemon's mirror, so it is there offline.
 *
 * @module
 */

import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import type { UserKey } from "../auth/user_key.ts";
import { IntegrityError, NotFoundError } from "../errors.ts";
import type { Store } from "../repo/store.ts";

export const PROFILE_KEY = "profile.json";
const AAD = new TextEncoder().encode("vat-profile-v1");
const MAX_PROFILE_BYTES = 1024 * 1024;

/** One subscription of the profile. */
export interface ProfileSubscription {
  name: string;
  repo: string;
  hoarded: boolean;
  /**
   * It came from an entitlement in the directory (not added by the user): when the
   * entitlement is revoked, VATs remove it rather than restore it from the profile.
   */
  entitled?: boolean;
}

/** The profile. */
export interface Profile {
  format: 1;
  updatedAt: string;
  subscriptions: ProfileSubscription[];
}

/** Reads the profile; null when the user has none yet. */
export async function readProfile(store: Store, key: UserKey): Promise<Profile | null> {
  let sealed: Uint8Array;
  try {
    sealed = await store.get(PROFILE_KEY);
  } catch (err) {
    if (err instanceof NotFoundError) return null;
    throw err;
  }
  const what = `the profile in ${store.location}`;
  if (sealed.length < 12 + 16 || sealed.length > MAX_PROFILE_BYTES) {
    throw new IntegrityError(`${what} has an impossible size`);
  }
  let plain: Buffer;
  try {
    const decipher = createDecipheriv("aes-256-gcm", key.chunkKey, sealed.subarray(0, 12));
    decipher.setAAD(AAD);
    decipher.setAuthTag(sealed.subarray(sealed.length - 16));
    plain = Buffer.concat([
      decipher.update(sealed.subarray(12, sealed.length - 16)),
      decipher.final(),
    ]);
  } catch (err) {
    throw new IntegrityError(`${what} does not open with ${key.path} (tampered?)`, { cause: err });
  }
  const profile = JSON.parse(plain.toString("utf8")) as Profile;
  if (
    profile?.format !== 1 || !Array.isArray(profile.subscriptions) ||
    !profile.subscriptions.every((s) => typeof s?.name === "string" && typeof s.repo === "string")
  ) {
    throw new IntegrityError(`${what} is not a profile`);
  }
  return profile;
}

/** Writes the profile (replacing the old one). */
export async function writeProfile(store: Store, key: UserKey, profile: Profile): Promise<void> {
  const nonce = randomBytes(12);
  const cipher = createCipheriv("aes-256-gcm", key.chunkKey, nonce);
  cipher.setAAD(AAD);
  const body = Buffer.concat([
    nonce,
    cipher.update(JSON.stringify(profile)),
    cipher.final(),
    cipher.getAuthTag(),
  ]);
  await store.put(PROFILE_KEY, new Uint8Array(body));
}
