/**
 * What a VAT keeps of its users' logins (docs/USERS.md, "Offline login"): the
 * directory's pinned id and administrator keys (`directory.json`), and per user the
 * entry and key slots of their last online login with the offline-login counters and
 * the failure delay (`users/NAME/login.json`, mode 0600), so the password unlocks the
 * cached slot without a network.
 *
 * @module
 */

import type { DirectoryPin } from "../directory/directory.ts";
import { type KeySlots, openSlots } from "../directory/key_slots.ts";
import { checkUserName, openEntry, type UserEntry } from "../directory/user_entry.ts";
import { writeFileAtomic } from "../fs_atomic.ts";

/** What a VAT keeps of a user's last online login (`users/NAME/login.json`, 0600). */
export interface CachedLogin {
  entry: string;
  slots: string;
  lastOnlineAt: number;
  offlineLogins: number;
  failures: number;
  nextAttemptAt: number;
}

/** The login files under a VAT's state directory, for the directory at `location`. */
export class LoginCache {
  readonly #stateDir: string;
  readonly #location: string;

  constructor(stateDir: string, location: string) {
    this.#stateDir = stateDir;
    this.#location = location;
  }

  /** The directory of user `name`'s own state. */
  userDir(name: string): string {
    return `${this.#stateDir}/users/${checkUserName(name)}`;
  }

  /** The directory's pinned id and administrator keys, if this VAT pinned them. */
  async pin(): Promise<DirectoryPin | undefined> {
    try {
      const pin = JSON.parse(await Deno.readTextFile(`${this.#stateDir}/directory.json`));
      if (pin.location === this.#location) return { id: pin.id, adminKeys: pin.adminKeys };
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
    }
    return undefined;
  }

  /** Pins the directory on first contact (a pin once made is not replaced). */
  async savePin(pin: DirectoryPin): Promise<void> {
    if (await this.pin()) return;
    await writeFileAtomic(
      `${this.#stateDir}/directory.json`,
      new TextEncoder().encode(JSON.stringify({ location: this.#location, ...pin }) + "\n"),
    );
  }

  /** User `name`'s cached login, or null. */
  async read(name: string): Promise<CachedLogin | null> {
    try {
      return JSON.parse(await Deno.readTextFile(`${this.userDir(name)}/login.json`));
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) return null;
      throw err;
    }
  }

  async write(name: string, cached: CachedLogin): Promise<void> {
    await Deno.mkdir(this.userDir(name), { recursive: true, mode: 0o700 });
    await writeFileAtomic(
      `${this.userDir(name)}/login.json`,
      new TextEncoder().encode(JSON.stringify(cached) + "\n"),
      { mode: 0o600 },
    );
  }
}

/** The cached entry, checked again against the pin. */
export function openCachedEntry(pin: DirectoryPin, name: string, cached: CachedLogin): UserEntry {
  return openEntry(fromBase64Url(cached.entry), {
    directoryId: pin.id,
    name,
    adminKeys: pin.adminKeys,
  });
}

/** The cached key slots, checked again against the pin and the entry. */
export function openCachedSlots(
  pin: DirectoryPin,
  entry: UserEntry,
  cached: CachedLogin,
): KeySlots {
  return openSlots(fromBase64Url(cached.slots), {
    directoryId: pin.id,
    name: entry.name,
    userKey: entry.userKey,
    adminKeys: pin.adminKeys,
  });
}

export const toBase64Url = (bytes: Uint8Array) => Buffer.from(bytes).toString("base64url");
export const fromBase64Url = (text: string) => new Uint8Array(Buffer.from(text, "base64url"));
