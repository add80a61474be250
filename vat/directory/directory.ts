/**
 * An organisation's directory of users (docs/USERS.md): a repository of kind
 * `directory` on any transport, whose `repo.json` publisher keys are its
 * administrators' keys. Each user has an entry (`users/NAME/entry.json`, signed by an
 * administrator) and key slots (`users/NAME/slots.json`, signed by an administrator or
 * the user's own key).
 *
 * @module
 */

import { ConflictError, IntegrityError, NotFoundError, PermanentError } from "../errors.ts";
import type { SigningKey } from "../auth/signing_key.ts";
import { DEFAULT_CHUNK_BYTES, type RepoConfig } from "../repo/repo_config.ts";
import { Repository } from "../repo/repository.ts";
import type { Store } from "../repo/store.ts";
import { checkUserName, openEntry, signEntry, type UserEntry } from "./user_entry.ts";
import { type KeySlots, openSlots, signSlots } from "./key_slots.ts";

/** Object keys of a user. */
export const entryKey = (name: string) => `users/${checkUserName(name)}/entry.json`;
export const slotsKey = (name: string) => `users/${checkUserName(name)}/slots.json`;

/** What a VAT pins of a directory the first time it sees it. */
export interface DirectoryPin {
  id: string;
  adminKeys: string[];
}

/** A directory opened on a store. */
export class Directory {
  readonly store: Store;
  readonly config: RepoConfig;

  private constructor(store: Store, config: RepoConfig) {
    this.store = store;
    this.config = config;
  }

  /** Makes a directory administered by `adminKey`; `ConflictError` if one is there. */
  static async init(store: Store, adminKey: SigningKey): Promise<Directory> {
    const repo = await Repository.init(store, {
      kind: "directory",
      chunkSizeBytes: DEFAULT_CHUNK_BYTES,
      publisherKeys: [adminKey.publicKeyId],
    });
    return new Directory(store, repo.config);
  }

  /**
   * Opens the directory in `store`. With `pin` (what a VAT saw before), a `repo.json`
   * of another id or other administrators is refused: a storage operator cannot swap
   * in keys of their own.
   */
  static async open(store: Store, pin?: DirectoryPin): Promise<Directory> {
    const repo = await Repository.open(store);
    if (repo.config.kind !== "directory") {
      throw new PermanentError(
        `${store.location} is an ${repo.config.kind} repository, not a directory of users`,
      );
    }
    if (
      pin && (pin.id !== repo.config.id ||
        repo.config.publisherKeys.some((k) => !pin.adminKeys.includes(k)))
    ) {
      throw new IntegrityError(
        `the directory at ${store.location} is not the one this VAT knows ` +
          `(id ${repo.config.id}, administrators ${repo.config.publisherKeys.join(", ")}); refused`,
      );
    }
    return new Directory(store, repo.config);
  }

  get id(): string {
    return this.config.id;
  }

  get adminKeys(): string[] {
    return this.config.publisherKeys;
  }

  get pin(): DirectoryPin {
    return { id: this.id, adminKeys: [...this.adminKeys] };
  }

  /** Throws unless `key` is an administrator's. */
  checkAdmin(key: SigningKey): void {
    if (!this.adminKeys.includes(key.publicKeyId)) {
      throw new PermanentError(
        `key ${key.publicKeyId} is not an administrator of the directory ${this.store.location}`,
      );
    }
  }

  /** The raw bytes of `name`'s entry, or null when there is no such user. */
  async entryBytes(name: string): Promise<Uint8Array | null> {
    try {
      return await this.store.get(entryKey(name));
    } catch (err) {
      if (err instanceof NotFoundError) return null;
      throw err;
    }
  }

  /** `name`'s verified entry, or null when there is no such user. */
  async readEntry(name: string): Promise<UserEntry | null> {
    const bytes = await this.entryBytes(name);
    return bytes && this.openEntry(name, bytes);
  }

  openEntry(name: string, bytes: Uint8Array): UserEntry {
    return openEntry(bytes, { directoryId: this.id, name, adminKeys: this.adminKeys });
  }

  /** Writes an entry (its serial one above the stored one's). */
  async writeEntry(entry: UserEntry, adminKey: SigningKey, create = false): Promise<void> {
    this.checkAdmin(adminKey);
    const bytes = signEntry(entry, adminKey);
    if (create) {
      if (!(await this.store.create(entryKey(entry.name), bytes))) {
        throw new ConflictError(`user ${entry.name} already exists in ${this.store.location}`);
      }
      return;
    }
    await this.store.put(entryKey(entry.name), bytes);
  }

  /** The raw bytes of `name`'s key slots (readable only where the storage lets you). */
  slotsBytes(name: string): Promise<Uint8Array> {
    return this.store.get(slotsKey(name));
  }

  openSlots(entry: UserEntry, bytes: Uint8Array): KeySlots {
    return openSlots(bytes, {
      directoryId: this.id,
      name: entry.name,
      userKey: entry.userKey,
      adminKeys: this.adminKeys,
    });
  }

  /** Writes `slots`, signed by an administrator or the user's own key. */
  async writeSlots(slots: KeySlots, key: SigningKey): Promise<void> {
    await this.store.put(slotsKey(slots.name), signSlots(slots, key));
  }

  /** Every user's name, sorted (stores that can list). */
  async listUsers(): Promise<string[]> {
    const names = new Set<string>();
    for await (const key of this.store.list("users/")) {
      const m = /^users\/([^/]+)\/entry\.json$/.exec(key);
      if (m) names.add(m[1]);
    }
    return [...names].sort();
  }
}
