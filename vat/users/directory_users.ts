/**
 * The users of a VAT with a directory (`vat --directory DIR`; docs/USERS.md, "On the
 * VAT"): logging in online against the directory or offline against the entry and key
 * slot cached at the last online login, one user's state at a time, logging out, and
 * noticing a disabled account at the next contact with the directory.
 *
 * Each user's state lives under `users/NAME/` in the state directory (their appliances'
 * database, overlays, QEMU's run directory, backup outboxes, mirrors, the cached login);
 * the chunk cache, the fetch scheduler and the accelerator choice are the VAT's, shared
 * (content-addressed and verified: sharing leaks nothing a user could not fetch).
 *
 * @module
 */

import { deriveUserKey, type UserKey } from "../auth/user_key.ts";
import { Backups } from "../backup/backups.ts";
import { type Profile, writeProfile } from "../backup/profile.ts";
import type { ChunkCache } from "../cache/chunk_cache.ts";
import { Directory } from "../directory/directory.ts";
import {
  loginOnline,
  LoginRefusedError,
  unlockSlots,
  WRONG_NAME_OR_PASSWORD,
} from "../directory/login_client.ts";
import {
  changePassword as changeSlotPassword,
  replaceRecoveryKey,
} from "../directory/change_password.ts";
import { checkUserName, type UserEntry } from "../directory/user_entry.ts";
import {
  ConflictError,
  IntegrityError,
  isRetryable,
  NotFoundError,
  PermanentError,
  TransientError,
  UsageError,
} from "../errors.ts";
import type { FetchScheduler } from "../fetch/fetch_scheduler.ts";
import { openStore } from "../repo/open_store.ts";
import type { Store } from "../repo/store.ts";
import type { AcceleratorChoice } from "../vmm/accelerator.ts";
import { Appliances } from "../appliance/appliances.ts";
import { StateDb } from "../appliance/state_db.ts";
import { syncEntitlements } from "./entitlements.ts";
import { anotherUserHas } from "./user_states.ts";
import {
  type CachedLogin,
  fromBase64Url,
  LoginCache,
  openCachedEntry,
  openCachedSlots,
  toBase64Url,
} from "./login_cache.ts";

/** How the daemon's users are set up. */
export interface DirectoryUsersOptions {
  stateDir: string;
  /** The directory's location (`--directory`). */
  location: string;
  cache: ChunkCache;
  scheduler: FetchScheduler;
  accelerator: AcceleratorChoice;
  onPrefetchNeeded(): void;
  log(line: string): void;
  /** How often a logged-in user's entry is read again (default a minute). */
  checkIntervalMs?: number;
  snapshotIntervalMs?: number;
  uploadBytesPerSecond?: number;
  leaseTtlMs?: number;
}

/** The logged-in user, or one logged out whose backups still upload. */
export interface ActiveUser {
  name: string;
  displayName: string;
  entry: UserEntry;
  key: UserKey;
  db: StateDb;
  appliances: Appliances;
  backups: Backups | null;
  /** Logged in without the directory. */
  offline: boolean;
  /** Revoked appliances that could not be removed yet (running, changes unsent). */
  revokedKept: string[];
}

/** What `whoami` says. */
export interface WhoAmI {
  directory: string;
  user: { name: string; displayName: string; offline: boolean; backups: boolean } | null;
  /** Users logged out whose changes still upload (`safe` once none is left). */
  leaving: { name: string; pendingBytes: number; safe: boolean }[];
}

const FIRST_DELAY_MS = 1000;
const MAX_OFFLINE_DELAY_MS = 15 * 60_000;
const DAY_MS = 24 * 60 * 60_000;

/** A VAT's users. Emits `change` when the user or their appliances change. */
export class DirectoryUsers extends EventTarget {
  readonly options: DirectoryUsersOptions;
  #current: ActiveUser | null = null;
  readonly #logins: LoginCache;
  readonly #leaving = new Map<string, ActiveUser>();
  /** Failed attempts of names never logged in here (not persisted: nothing to guard). */
  readonly #strangers = new Map<string, { failures: number; untilMs: number }>();
  #busy: Promise<unknown> = Promise.resolve();
  #checkTimer: ReturnType<typeof setInterval> | undefined;
  #profileTimer: ReturnType<typeof setTimeout> | undefined;
  #lastProfile = "";
  readonly #onChange = () => {
    this.dispatchEvent(new Event("change"));
    this.#scheduleProfile();
  };

  constructor(options: DirectoryUsersOptions) {
    super();
    this.options = options;
    this.#logins = new LoginCache(options.stateDir, options.location);
  }

  get location(): string {
    return this.options.location;
  }

  /** The logged-in user, or null. */
  get current(): ActiveUser | null {
    return this.#current;
  }

  /** Whether the directory answers now (for the login screen's offline note). */
  async reachable(): Promise<boolean> {
    try {
      const store = await openStore(this.location);
      try {
        let timer: ReturnType<typeof setTimeout> | undefined;
        const found = await Promise.race([
          store.stat("repo.json"),
          new Promise<null>((resolve) => timer = setTimeout(() => resolve(null), 3000)),
        ]).finally(() => clearTimeout(timer));
        return found !== null;
      } finally {
        await store.close();
      }
    } catch {
      return false;
    }
  }

  whoami(): WhoAmI {
    const u = this.#current;
    return {
      directory: this.location,
      user: u && {
        name: u.name,
        displayName: u.displayName,
        offline: u.offline,
        backups: u.backups !== null,
      },
      leaving: [...this.#leavingState.values()],
    };
  }

  readonly #leavingState = new Map<string, WhoAmI["leaving"][number]>();

  /**
   * Logs `name` in with `password`: online when the directory answers, else offline
   * against the cached login. One login at a time.
   */
  login(name: string, password: string): Promise<ActiveUser> {
    const run = this.#busy.then(() => this.#login(name, password));
    this.#busy = run.catch(() => {});
    return run;
  }

  async #login(name: string, password: string): Promise<ActiveUser> {
    try {
      checkUserName(name);
    } catch {
      throw new LoginRefusedError(WRONG_NAME_OR_PASSWORD);
    }
    if (this.#current && this.#current.name !== name) {
      throw new ConflictError(
        `${this.#current.displayName} is logged in on this VAT; they must log out first`,
      );
    }
    const cached = await this.#logins.read(name);
    const now = Date.now();
    const waitUntil = cached?.nextAttemptAt ?? this.#strangers.get(name)?.untilMs ?? 0;
    if (waitUntil > now) {
      const s = Math.ceil((waitUntil - now) / 1000);
      throw new LoginRefusedError(`too many failed logins; try again in ${s} s`, waitUntil - now);
    }
    let result: { entry: UserEntry; secret: Uint8Array; offline: boolean };
    try {
      result = await this.#loginOnline(name, password, cached);
    } catch (err) {
      if (err instanceof LoginRefusedError && err.retryAfterMs === 0) {
        await this.#failed(name, cached);
      }
      if (!isRetryable(err)) throw err;
      this.options.log(`directory ${this.location} unreachable (${(err as Error).message})`);
      result = await this.#loginOffline(name, password, cached);
    }
    const key = deriveUserKey(result.secret);
    if (key.signingKey.publicKeyId !== result.entry.userKey) {
      throw new IntegrityError(`the key slot of ${name} holds another key than the entry names`);
    }
    this.#strangers.delete(name);
    if (this.#current?.name === name) {
      this.#current.offline = result.offline;
      return this.#current;
    }
    return await this.#activate(result.entry, key, result.offline);
  }

  async #loginOnline(name: string, password: string, cached: CachedLogin | null) {
    const store = await openStore(this.location);
    try {
      const dir = await this.#open(store);
      await this.#logins.savePin(dir.pin);
      const login = await loginOnline(dir, name, password);
      if (cached) {
        const old = dir.openEntry(name, fromBase64Url(cached.entry));
        if (login.entry.serial < old.serial) {
          throw new IntegrityError(
            `the directory's entry of ${name} (serial ${login.entry.serial}) is older than ` +
              `the one this VAT saw (serial ${old.serial}): refused (a rollback?)`,
          );
        }
        // Old slots would let an old (perhaps leaked) password in again.
        const oldSlots = openCachedSlots(dir.pin, old, cached);
        if (login.slots.serial < oldSlots.serial) {
          throw new IntegrityError(
            `the directory's key slots of ${name} (serial ${login.slots.serial}) are older than ` +
              `the ones this VAT saw (serial ${oldSlots.serial}): refused (a rollback?)`,
          );
        }
      }
      await this.#logins.write(name, {
        entry: toBase64Url(login.entryBytes),
        slots: toBase64Url(login.slotsBytes),
        lastOnlineAt: Date.now(),
        offlineLogins: 0,
        failures: 0,
        nextAttemptAt: 0,
      });
      if (!login.entry.enabled) {
        throw new PermanentError(`the account ${name} is disabled; ask an administrator`);
      }
      return { entry: login.entry, secret: login.secret, offline: false };
    } finally {
      await store.close();
    }
  }

  async #loginOffline(name: string, password: string, cached: CachedLogin | null) {
    const pin = await this.#logins.pin();
    if (!cached || !pin) {
      throw new LoginRefusedError(
        `${WRONG_NAME_OR_PASSWORD} (offline: using the password last used on this VAT)`,
      );
    }
    const entry = openCachedEntry(pin, name, cached);
    if (!entry.enabled) {
      throw new PermanentError(`the account ${name} is disabled; ask an administrator`);
    }
    const days = (Date.now() - cached.lastOnlineAt) / DAY_MS;
    if (days > entry.offline.days || cached.offlineLogins >= entry.offline.logins) {
      throw new PermanentError(
        `${name} has used up their offline logins on this VAT (${entry.offline.days} days or ` +
          `${entry.offline.logins} logins since the last online login); connect to the directory`,
      );
    }
    const opened = openCachedSlots(pin, entry, cached);
    let secret: Uint8Array;
    try {
      secret = await unlockSlots(opened, password);
    } catch (err) {
      if (err instanceof LoginRefusedError) {
        await this.#failed(name, cached);
        throw new LoginRefusedError(
          `${WRONG_NAME_OR_PASSWORD} (offline: using the password last used on this VAT)`,
        );
      }
      throw err;
    }
    await this.#logins.write(name, {
      ...cached,
      offlineLogins: cached.offlineLogins + 1,
      failures: 0,
      nextAttemptAt: 0,
    });
    return { entry, secret, offline: true };
  }

  /** A failed attempt: the next one waits 1 s, 2 s, 4 s, ... (persisted for known users). */
  async #failed(name: string, cached: CachedLogin | null): Promise<void> {
    const failures = (cached?.failures ?? this.#strangers.get(name)?.failures ?? 0) + 1;
    const untilMs = Date.now() +
      Math.min(FIRST_DELAY_MS * 2 ** (failures - 1), MAX_OFFLINE_DELAY_MS);
    if (cached) {
      await this.#logins.write(name, { ...cached, failures, nextAttemptAt: untilMs });
    } else {
      if (this.#strangers.size > 10_000) this.#strangers.clear();
      this.#strangers.set(name, { failures, untilMs });
    }
  }

  async #activate(entry: UserEntry, key: UserKey, offline: boolean): Promise<ActiveUser> {
    const o = this.options;
    let user = this.#leaving.get(entry.name);
    if (user) {
      this.#leaving.delete(entry.name);
      this.#leavingState.delete(entry.name);
      user.entry = entry;
      user.offline = offline;
    } else {
      const dir = this.#logins.userDir(entry.name);
      await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
      const backups = entry.dataRepo
        ? await Backups.open({
          dataRepo: entry.dataRepo,
          userKeyPath: `(the key slot of ${entry.name})`,
          userKey: { ...key, path: `the user key of ${entry.name}` },
          snapshotIntervalMs: o.snapshotIntervalMs,
          uploadBytesPerSecond: o.uploadBytesPerSecond,
          leaseTtlMs: o.leaseTtlMs,
        }, dir)
        : null;
      const db = StateDb.open(`${dir}/vat.sqlite`);
      const appliances = new Appliances(db, o.cache, dir, {
        scheduler: o.scheduler,
        onPrefetchNeeded: o.onPrefetchNeeded,
        backups,
        accelerator: o.accelerator,
      });
      if (backups) {
        backups.schedule = (task) => o.scheduler.run("backup", task);
        appliances.resumeBackups().catch((err) => o.log(`backup: ${(err as Error).message}`));
      }
      user = {
        name: entry.name,
        displayName: entry.displayName,
        entry,
        key,
        db,
        appliances,
        backups,
        offline,
        revokedKept: [],
      };
    }
    this.#current = user;
    user.appliances.addEventListener("change", this.#onChange);
    await this.#syncAppliances(user);
    this.#startChecking();
    o.log(`${entry.name} logged in${offline ? " (offline)" : ""}`);
    this.dispatchEvent(new Event("change"));
    o.onPrefetchNeeded();
    return user;
  }

  /** Brings the user's appliances in line with their entitlements and profile. */
  async #syncAppliances(user: ActiveUser): Promise<void> {
    const log = (line: string) => this.options.log(`${user.name}: ${line}`);
    await syncEntitlements(user, this.#logins.userDir(user.name), log);
    this.#lastProfile = "";
    await this.saveProfile().catch((err) => log(`profile not saved: ${(err as Error).message}`));
  }

  /** Writes the current user's profile when it changed (subscriptions, hoards). */
  async saveProfile(): Promise<void> {
    const user = this.#current;
    if (!user?.backups) return;
    // Locations as added (a status redacts credentials in them): another VAT adds these.
    const list = user.appliances.subscriptions();
    const entitled = new Set([
      ...user.entry.entitlements.map((e) => e.name),
      ...user.revokedKept,
    ]);
    const subscriptions = list.map((a) => ({
      name: a.name,
      repo: a.repo,
      hoarded: a.hoarded,
      entitled: entitled.has(a.name),
    })).sort((a, b) => a.name.localeCompare(b.name));
    const text = JSON.stringify(subscriptions);
    if (text === this.#lastProfile) return;
    const profile: Profile = { format: 1, updatedAt: new Date().toISOString(), subscriptions };
    await writeProfile(user.backups.store, user.key, profile);
    this.#lastProfile = text;
  }

  #scheduleProfile(): void {
    if (this.#profileTimer) return;
    this.#profileTimer = setTimeout(() => {
      this.#profileTimer = undefined;
      this.saveProfile().catch(() => {}); // offline: written at the next change or login
    }, 2000);
  }

  /**
   * Logs the current user out: their appliances stop (or suspend), their backups keep
   * uploading until nothing is left ("safe to leave", `whoami().leaving`).
   */
  logout(options: { suspend?: boolean; reason?: string } = {}): Promise<void> {
    const run = this.#busy.then(() => this.#logout(options));
    this.#busy = run.catch(() => {});
    return run;
  }

  async #logout(options: { suspend?: boolean; reason?: string }): Promise<void> {
    const user = this.#current;
    if (!user) throw new UsageError("nobody is logged in on this VAT");
    await this.saveProfile().catch(() => {});
    this.#current = null;
    clearInterval(this.#checkTimer);
    user.appliances.removeEventListener("change", this.#onChange);
    for (const name of user.appliances.runningNames()) {
      try {
        if (options.suspend) await user.appliances.suspend(name);
        else await user.appliances.stop(name);
      } catch (err) {
        this.options.log(
          `${user.name}: ${name} did not ${options.suspend ? "suspend" : "stop"}: ${
            (err as Error).message
          }`,
        );
      }
    }
    this.#leaving.set(user.name, user);
    this.#leavingState.set(user.name, { name: user.name, pendingBytes: 0, safe: false });
    this.options.log(`${user.name} logged out${options.reason ? ` (${options.reason})` : ""}`);
    this.dispatchEvent(new Event("change"));
    this.#watchLeaving(user);
  }

  /** Follows a logged-out user's uploads until nothing is left, then closes their state. */
  #watchLeaving(user: ActiveUser): void {
    const tick = async () => {
      if (this.#leaving.get(user.name) !== user) return;
      let pending = 0;
      try {
        for (const a of await user.appliances.list()) {
          pending += a.backup.pendingBytes + (a.backup.pendingSnapshots > 0 ? 1 : 0);
        }
      } catch {
        pending = 1;
      }
      // They may have logged in again while the list was read: then they are not leaving.
      if (this.#leaving.get(user.name) !== user) return;
      const safe = pending === 0;
      this.#leavingState.set(user.name, { name: user.name, pendingBytes: pending, safe });
      this.dispatchEvent(new Event("change"));
      if (safe) {
        this.#leaving.delete(user.name);
        await _closeUser(user);
        return;
      }
      user.backups?.kick();
      setTimeout(tick, 500);
    };
    tick();
  }

  /** Reads the entry again now and then: a disabled account's session ends. */
  #startChecking(): void {
    clearInterval(this.#checkTimer);
    this.#checkTimer = setInterval(() => this.checkNow(), this.options.checkIntervalMs ?? 60_000);
    Deno.unrefTimer(this.#checkTimer);
  }

  /** One contact with the directory for the current user (also called by tests). */
  async checkNow(): Promise<void> {
    const user = this.#current;
    if (!user) return;
    let entry: UserEntry | null;
    try {
      const store = await openStore(this.location);
      try {
        entry = await (await this.#open(store)).readEntry(user.name);
      } finally {
        await store.close();
      }
    } catch (err) {
      if (!isRetryable(err)) this.options.log(`directory check: ${(err as Error).message}`);
      return;
    }
    if (this.#current !== user) return;
    if (!entry || !entry.enabled) {
      const cached = await this.#logins.read(user.name);
      if (cached && entry) {
        // Keep the disabled entry: offline logins are refused from now on too.
        const bytes = await this.#entryBytes(user.name);
        if (bytes) await this.#logins.write(user.name, { ...cached, entry: toBase64Url(bytes) });
      }
      await this.logout({ suspend: true, reason: "the account was disabled" });
      return;
    }
    if (entry.serial > user.entry.serial) {
      user.entry = entry;
      await this.#syncAppliances(user);
    }
  }

  async #entryBytes(name: string): Promise<Uint8Array | null> {
    const store = await openStore(this.location);
    try {
      return await (await this.#open(store)).entryBytes(name);
    } finally {
      await store.close();
    }
  }

  /** Changes the current user's password (online only). */
  async changePassword(old: string, fresh: string): Promise<void> {
    const user = this.#requireUser();
    await changeSlotPassword(this.location, user.name, old, fresh, {
      pin: await this.#logins.pin(),
    });
    this.options.log(`${user.name} changed their password`);
    // This VAT's cached slot takes the new password too, so offline it is the one.
    const cached = await this.#logins.read(user.name);
    if (cached) await this.#loginOnline(user.name, fresh, cached);
  }

  /** Makes a new recovery key for the current user (online only); returns it, once. */
  async newRecoveryKey(password: string): Promise<string> {
    const user = this.#requireUser();
    return await replaceRecoveryKey(this.location, user.name, password, {
      pin: await this.#logins.pin(),
    });
  }

  /**
   * Opens the pinned directory. A directory whose `repo.json` is gone (an unmounted
   * USB disk or NFS share, a moved folder) counts as unreachable, as a server that does
   * not answer does: the VAT then logs in offline.
   */
  async #open(store: Store): Promise<Directory> {
    try {
      return await Directory.open(store, await this.#logins.pin());
    } catch (err) {
      if (!(err instanceof NotFoundError)) throw err;
      throw new TransientError(`the directory ${this.location} cannot be reached`, {
        cause: err,
      });
    }
  }

  #requireUser(): ActiveUser {
    if (!this.#current) throw new UsageError("nobody is logged in on this VAT");
    return this.#current;
  }

  /**
   * Whether appliance `name` is another user's on this VAT (not the current user's):
   * the API answers 403 then.
   */
  async belongsToAnother(name: string): Promise<boolean> {
    const current = this.#current;
    if (current && current.db.list().some((r) => r.name === name)) return false;
    return await anotherUserHas(name, {
      usersDir: `${this.options.stateDir}/users`,
      except: current?.name,
      dbPathOf: (user) => `${this.#logins.userDir(user)}/vat.sqlite`,
      openDbOf: (user) => this.#leaving.get(user)?.db,
    });
  }

  /** Stops everything (daemon shutdown). */
  async close(): Promise<void> {
    clearInterval(this.#checkTimer);
    clearTimeout(this.#profileTimer);
    const users = [...this.#leaving.values()];
    if (this.#current) users.push(this.#current);
    this.#current = null;
    this.#leaving.clear();
    for (const user of users) {
      await user.appliances.close();
      await _closeUser(user);
    }
  }
}

async function _closeUser(user: ActiveUser): Promise<void> {
  await user.backups?.close();
  user.db.close();
}
