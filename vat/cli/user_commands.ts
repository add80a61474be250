/**
 * `vat directory init` and `vat user ...`: the administrator's verbs of the directory
 * of users (docs/USERS.md), and `vat user passwd`, the user's own.
 *
 * @module
 */

import { randomBytes } from "node:crypto";
import { loadSigningKey, readPublicKeyId, type SigningKey } from "../auth/signing_key.ts";
import { deriveUserKey } from "../auth/user_key.ts";
import { MIN_LOG_N } from "../auth/kdf.ts";
import { DataRepository } from "../backup/data_repository.ts";
import { ConflictError, NotFoundError, UsageError } from "../errors.ts";
import { Directory } from "../directory/directory.ts";
import { makeSlot, newRecoveryKey, normaliseRecoveryKey } from "../directory/key_slots.ts";
import {
  checkUserName,
  DEFAULT_OFFLINE,
  type Entitlement,
  type UserEntry,
} from "../directory/user_entry.ts";
import { openStore } from "../repo/open_store.ts";
import type { Store } from "../repo/store.ts";
import { parseFlags, printJson, s3Options, STORE_FLAGS } from "./args.ts";
import type { Command } from "./command.ts";
import { readPassword, readPasswordFile } from "./password_input.ts";
import { changePassword } from "../directory/change_password.ts";

async function _withStore<T>(
  location: string,
  values: Record<string, unknown>,
  signingKey: SigningKey | undefined,
  fn: (store: Store) => Promise<T>,
): Promise<T> {
  const store = await openStore(location, { signingKey, s3: s3Options(values) });
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}

function _need(value: string | undefined, what: string): string {
  if (!value) throw new UsageError(`${what} is required`);
  return value;
}

/** Runs `fn` on the directory opened with the administrator's key. */
async function _asAdmin<T>(
  values: Record<string, unknown>,
  verb: string,
  fn: (dir: Directory, key: SigningKey) => Promise<T>,
): Promise<T> {
  const location = _need(values.directory as string | undefined, `${verb}: --directory DIR`);
  const key = await loadSigningKey(_need(values.key as string | undefined, `${verb}: --key KEY`));
  return await _withStore(location, values, key, async (store) => {
    const dir = await Directory.open(store);
    dir.checkAdmin(key);
    return await fn(dir, key);
  });
}

async function _entryOf(dir: Directory, name: string): Promise<UserEntry> {
  const entry = await dir.readEntry(checkUserName(name));
  if (!entry) {
    throw new NotFoundError(`no user ${name} in ${dir.store.location} (see: vat user ls)`);
  }
  return entry;
}

/** Rewrites `name`'s entry with `change` applied and the serial raised. */
async function _changeEntry(
  values: Record<string, unknown>,
  verb: string,
  name: string | undefined,
  change: (entry: UserEntry) => void,
): Promise<UserEntry> {
  return await _asAdmin(values, verb, async (dir, key) => {
    const entry = await _entryOf(dir, _need(name, `${verb}: NAME`));
    change(entry);
    entry.serial += 1;
    entry.updatedAt = new Date().toISOString();
    await dir.writeEntry(entry, key);
    return entry;
  });
}

const adminFlags = {
  directory: { type: "string" },
  key: { type: "string" },
  json: { type: "boolean" },
  ...STORE_FLAGS,
} as const;

export const directoryInitCommand: Command = {
  name: "directory init",
  summary: "create a directory of users",
  usage: `vat directory init DIR --key KEY [--json]

Makes a directory of users at DIR (a path, http(s)://... served by vat serve, or
s3://BUCKET/PREFIX) administered by KEY (from vat keygen): KEY signs every user's
entry; its public key is the directory's administrator key, which VATs pin.`,
  async run(args) {
    const { values, positionals } = parseFlags("directory init", args, adminFlags);
    const location = _need(positionals[0], "directory init: DIR");
    const key = await loadSigningKey(_need(values.key, "directory init: --key KEY"));
    const dir = await _withStore(location, values, key, (store) => Directory.init(store, key));
    if (values.json) printJson({ directory: location, id: dir.id, adminKeys: dir.adminKeys });
    else console.log(`made the directory ${location} (administrator ${key.publicKeyId})`);
    return 0;
  },
};

export const userAddCommand: Command = {
  name: "user add",
  summary: "add a user to a directory (prints their recovery key once)",
  usage: `vat user add NAME --directory DIR --key ADMIN_KEY [--display-name S]
             [--data-repo REPO] [--password-file F] [--offline-days N]
             [--offline-logins N] [--json]

Adds NAME (1 to 32 of a-z 0-9 . _ -) with a new user key, wrapped in two key slots: one
by the password (the first line of F, else asked twice on the terminal) and one by a
recovery key, printed once: keep it where the user can find it. --data-repo is where
their backups go (made now, or at their first login). They may log in offline for
--offline-days (default ${DEFAULT_OFFLINE.days}) and --offline-logins (default
${DEFAULT_OFFLINE.logins}) since their last online login.`,
  async run(args) {
    const { values, positionals } = parseFlags("user add", args, {
      ...adminFlags,
      "display-name": { type: "string" },
      "data-repo": { type: "string" },
      "password-file": { type: "string" },
      "offline-days": { type: "string" },
      "offline-logins": { type: "string" },
    });
    const name = checkUserName(_need(positionals[0], "user add: NAME"));
    const count = (flag: string, fallback: number) => {
      const text = values[flag as keyof typeof values] as string | undefined;
      if (text === undefined) return fallback;
      if (!/^\d+$/.test(text)) throw new UsageError(`--${flag} "${text}" is not a whole number`);
      return Number(text);
    };
    const offline = {
      days: count("offline-days", DEFAULT_OFFLINE.days),
      logins: count("offline-logins", DEFAULT_OFFLINE.logins),
    };
    const password = await readPassword(
      values["password-file"],
      "--password-file",
      `password for ${name}: `,
      true,
    );
    const recovery = newRecoveryKey();
    const result = await _asAdmin(values, "user add", async (dir, adminKey) => {
      if (await dir.entryBytes(name)) {
        throw new ConflictError(`user ${name} already exists in ${dir.store.location}`);
      }
      const secret = new Uint8Array(randomBytes(32));
      const userKey = deriveUserKey(secret);
      const context = { directoryId: dir.id, name };
      const now = new Date().toISOString();
      const slots = [
        await makeSlot(secret, password, "password", context),
        // A recovery key has 100 bits of entropy: the floor's work factor is plenty.
        await makeSlot(secret, recovery, "recovery", context, MIN_LOG_N),
      ];
      const entry: UserEntry = {
        format: 1,
        directoryId: dir.id,
        name,
        displayName: values["display-name"] ?? name,
        userKey: userKey.signingKey.publicKeyId,
        dataRepo: values["data-repo"] ?? null,
        entitlements: [],
        offline,
        enabled: true,
        serial: 1,
        updatedAt: now,
      };
      // The entry is created conditionally first (two admins adding one name: one
      // wins); until its slots follow, a login is refused as a wrong password.
      await dir.writeEntry(entry, adminKey, true);
      await dir.writeSlots({
        format: 1,
        directoryId: dir.id,
        name,
        userKey: entry.userKey,
        serial: 1,
        updatedAt: now,
        slots,
      }, adminKey);
      let dataRepoMade = false;
      if (entry.dataRepo) {
        // Made now with the administrator's key signing the requests (on vat serve,
        // creating a repository takes a key the server allows); else at first login.
        try {
          await _withStore(entry.dataRepo, values, adminKey, async (store) => {
            await (await DataRepository.open(store, userKey, { create: true })).close();
          });
          dataRepoMade = true;
        } catch (err) {
          console.error(
            `note: the data repository ${entry.dataRepo} was not made now ` +
              `(${(err as Error).message}); ${name}'s first login makes it`,
          );
        }
      }
      return { entry, dataRepoMade };
    });
    if (values.json) {
      printJson({ ...result.entry, recoveryKey: recovery, dataRepoMade: result.dataRepoMade });
    } else {
      console.log(`added ${name} (user key ${result.entry.userKey})`);
      console.log(`recovery key for ${name} (shown only now; keep it safe): ${recovery}`);
    }
    return 0;
  },
};

export const userGrantCommand: Command = {
  name: "user grant",
  summary: "entitle a user to an appliance",
  usage: `vat user grant NAME REPO --directory DIR --key ADMIN_KEY [--as APPNAME]
              [--publisher KEY.pub ...]

NAME's VATs show the appliance in REPO (named APPNAME, default the repository's last
path segment) from their next login. --publisher pins the keys its versions must be
signed by.`,
  async run(args) {
    const { values, positionals } = parseFlags("user grant", args, {
      ...adminFlags,
      as: { type: "string" },
      publisher: { type: "string", multiple: true },
    });
    const repo = _need(positionals[1], "user grant: REPO");
    const appName = values.as ?? _appName(repo);
    const publisherKeys: string[] = [];
    for (const p of values.publisher ?? []) publisherKeys.push(await readPublicKeyId(p));
    const entry = await _changeEntry(values, "user grant", positionals[0], (entry) => {
      const grant: Entitlement = { name: appName, repo, publisherKeys };
      entry.entitlements = entry.entitlements.filter((e) => e.name !== appName);
      entry.entitlements.push(grant);
    });
    if (values.json) printJson(entry);
    else console.log(`${entry.name} may use ${appName} (${repo})`);
    return 0;
  },
};

export const userRevokeCommand: Command = {
  name: "user revoke",
  summary: "take an appliance away from a user",
  usage: `vat user revoke NAME REPO|APPNAME --directory DIR --key ADMIN_KEY`,
  async run(args) {
    const { values, positionals } = parseFlags("user revoke", args, adminFlags);
    const which = _need(positionals[1], "user revoke: REPO or APPNAME");
    const entry = await _changeEntry(values, "user revoke", positionals[0], (entry) => {
      const left = entry.entitlements.filter((e) => e.name !== which && e.repo !== which);
      if (left.length === entry.entitlements.length) {
        throw new NotFoundError(`${entry.name} is not entitled to ${which}`);
      }
      entry.entitlements = left;
    });
    if (values.json) printJson(entry);
    else console.log(`${entry.name} may no longer use ${which}`);
    return 0;
  },
};

function _enableCommand(enabled: boolean): Command {
  const verb = enabled ? "enable" : "disable";
  return {
    name: `user ${verb}`,
    summary: enabled ? "let a disabled user log in again" : "stop a user from logging in",
    usage: `vat user ${verb} NAME --directory DIR --key ADMIN_KEY
${
      enabled ? "" : `
A VAT sees it at its next contact with the directory: the user's open session ends
and their appliances suspend.`
    }`,
    async run(args) {
      const { values, positionals } = parseFlags(`user ${verb}`, args, adminFlags);
      const entry = await _changeEntry(values, `user ${verb}`, positionals[0], (entry) => {
        entry.enabled = enabled;
      });
      if (values.json) printJson(entry);
      else console.log(`${entry.name} is ${enabled ? "enabled" : "disabled"}`);
      return 0;
    },
  };
}

export const userEnableCommand = _enableCommand(true);
export const userDisableCommand = _enableCommand(false);

const readFlags = {
  directory: { type: "string" },
  json: { type: "boolean" },
  ...STORE_FLAGS,
} as const;

export const userLsCommand: Command = {
  name: "user ls",
  summary: "list a directory's users",
  usage: `vat user ls --directory DIR [--json]`,
  async run(args) {
    const { values } = parseFlags("user ls", args, readFlags);
    const location = _need(values.directory, "user ls: --directory DIR");
    const entries = await _withStore(location, values, undefined, async (store) => {
      const dir = await Directory.open(store);
      const all: UserEntry[] = [];
      for (const name of await dir.listUsers()) all.push(await _entryOf(dir, name));
      return all;
    });
    if (values.json) {
      printJson(entries);
      return 0;
    }
    for (const e of entries) {
      console.log(
        `${e.name.padEnd(16)} ${e.enabled ? "enabled " : "disabled"} ` +
          `${e.entitlements.map((g) => g.name).join(", ") || "(no appliances)"}  ${e.displayName}`,
      );
    }
    if (entries.length === 0) console.log("(no users)");
    return 0;
  },
};

export const userShowCommand: Command = {
  name: "user show",
  summary: "show a user's entry",
  usage: `vat user show NAME --directory DIR [--json]`,
  async run(args) {
    const { values, positionals } = parseFlags("user show", args, readFlags);
    const location = _need(values.directory, "user show: --directory DIR");
    const entry = await _withStore(location, values, undefined, async (store) => {
      return await _entryOf(await Directory.open(store), _need(positionals[0], "user show: NAME"));
    });
    if (values.json) {
      printJson(entry);
      return 0;
    }
    console.log(`${entry.name} (${entry.displayName}), ${entry.enabled ? "enabled" : "disabled"}`);
    console.log(`user key:       ${entry.userKey}`);
    console.log(`data repo:      ${entry.dataRepo ?? "(none: nothing is backed up)"}`);
    console.log(
      `offline:        ${entry.offline.days} days or ${entry.offline.logins} logins`,
    );
    for (const g of entry.entitlements) {
      console.log(
        `appliance:      ${g.name} ${g.repo}` +
          (g.publisherKeys.length ? ` (keys ${g.publisherKeys.join(", ")})` : ""),
      );
    }
    return 0;
  },
};

export const userPasswdCommand: Command = {
  name: "user passwd",
  summary: "change your password (with the old one or the recovery key)",
  usage: `vat user passwd NAME --directory DIR [--password-file F | --recovery-file F]
              [--new-password-file F]

Unlocks NAME's user key with the current password (or the recovery key) and writes a
new password slot, signed by the user's own key: no administrator is needed. The
recovery key stays as it was. Passwords are read from the files' first lines, else
asked on the terminal.`,
  async run(args) {
    const { values, positionals } = parseFlags("user passwd", args, {
      ...readFlags,
      "password-file": { type: "string" },
      "recovery-file": { type: "string" },
      "new-password-file": { type: "string" },
    });
    const name = checkUserName(_need(positionals[0], "user passwd: NAME"));
    const location = _need(values.directory, "user passwd: --directory DIR");
    const byRecovery = values["recovery-file"] !== undefined;
    const old = byRecovery
      ? normaliseRecoveryKey(await readPasswordFile(values["recovery-file"]!, "--recovery-file"))
      : await readPassword(values["password-file"], "--password-file", "current password: ");
    const fresh = await readPassword(
      values["new-password-file"],
      "--new-password-file",
      "new password: ",
      true,
    );
    await changePassword(location, name, old, fresh, {
      byRecovery,
      s3: s3Options(values),
    });
    console.log(`changed the password of ${name}`);
    return 0;
  },
};

function _appName(repo: string): string {
  const last = repo.replace(/\/+$/, "").split("/").pop() ?? "";
  const name = last.toLowerCase().replace(/[^a-z0-9._-]/g, "-").replace(/^[^a-z0-9]+/, "");
  if (!name) throw new UsageError(`name the appliance of ${repo} with --as APPNAME`);
  return name;
}
