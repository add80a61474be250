/// <reference lib="dom" />
/**
 * The user of a VAT with a directory (docs/USERS.md): whether this VAT has one, who is
 * logged in, and the actions of the login screen, the logout (stop or suspend, then
 * "safe to leave" once every change is backed up), changing the password and making
 * a new recovery key.
 *
 * @module
 */

import { signal } from "@preact/signals";
import { ApiError, call } from "../api.ts";
import type { WhoAmI } from "../../vat/api/wire_types.ts";
import { session } from "./session.ts";

export type { WhoAmI };

/** null until asked; then whether this VAT has users and whether the directory answers. */
export const directory = signal<{ directory: boolean; reachable?: boolean } | null>(null);
/** Who is logged in (from `whoami`), null when unknown or no directory. */
export const me = signal<WhoAmI | null>(null);
export const loginError = signal<string | null>(null);
export const loggingIn = signal(false);
/** The user who logged out in this browser, while their changes upload. */
export const leaving = signal<WhoAmI["leaving"][number] | null>(null);
/** The logout question is open. */
export const logoutAsked = signal(false);
/** The dialogs of the password and the recovery key. */
export const passwordAsked = signal(false);
export const recoveryAsked = signal(false);
export const dialogError = signal<string | null>(null);
export const dialogBusy = signal(false);
/** A password change went through. */
export const passwordChanged = signal(false);
/** A recovery key just made, shown once. */
export const recoveryKey = signal<string | null>(null);

function _post(path: string, body: unknown) {
  return fetch(path, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
}

/** Asks whether this VAT has a directory of users (no session needed). */
export async function loadDirectory(): Promise<void> {
  try {
    directory.value = await call("asking the VAT about its users", fetch("/api/login"));
  } catch {
    directory.value = { directory: false };
  }
}

/** Reads who is logged in. */
export async function loadMe(): Promise<void> {
  try {
    me.value = await call<WhoAmI>("asking who is logged in", fetch("/api/whoami"));
  } catch {
    me.value = null;
  }
}

/** Logs in with a name and password. */
export async function logIn(name: string, password: string): Promise<void> {
  loggingIn.value = true;
  loginError.value = null;
  try {
    await call("logging in", _post("/api/login", { name, password }));
    leaving.value = null;
    await loadMe();
    session.value = "signed-in";
  } catch (err) {
    // The daemon's words ("wrong name or password", "try again in N s"), without the
    // "logging in failed:" prefix, which says nothing a login screen does not.
    loginError.value = err instanceof ApiError
      ? err.message.replace(/^logging in failed: /, "")
      : String(err);
    await loadDirectory();
  } finally {
    loggingIn.value = false;
  }
}

/** Logs out, stopping or suspending the appliances; then follows the upload. */
export async function logOut(suspend: boolean): Promise<void> {
  dialogBusy.value = true;
  const name = me.value?.user?.name ?? null;
  try {
    const who = await call<WhoAmI>("logging out", _post("/api/logout", { suspend }));
    logoutAsked.value = false;
    me.value = null;
    leaving.value = who.leaving.find((l) => l.name === name) ?? null;
    session.value = "signed-out";
    await loadDirectory();
    if (name) _followLeaving(name);
  } catch (err) {
    dialogError.value = (err as Error).message;
  } finally {
    dialogBusy.value = false;
  }
}

async function _followLeaving(name: string): Promise<void> {
  while (leaving.value?.name === name && !leaving.value.safe) {
    await new Promise((r) => setTimeout(r, 500));
    try {
      const who = await call<WhoAmI>("following the backup", fetch("/api/whoami"));
      const mine = who.leaving.find((l) => l.name === name);
      // Gone from the list: its uploads ended and its state was closed.
      if (leaving.value?.name === name) {
        leaving.value = mine ?? { name, pendingBytes: 0, safe: true };
      }
    } catch {
      // The daemon is busy or restarting: ask again.
    }
  }
}

/** Changes the password. */
export async function changePassword(old: string, fresh: string, again: string): Promise<void> {
  dialogError.value = null;
  if (fresh !== again) {
    dialogError.value = "the two new passwords differ";
    return;
  }
  dialogBusy.value = true;
  try {
    await call("changing the password", _post("/api/password", { old, new: fresh }));
    passwordChanged.value = true;
  } catch (err) {
    dialogError.value = (err as Error).message;
  } finally {
    dialogBusy.value = false;
  }
}

/** Makes a new recovery key (shown once). */
export async function makeRecoveryKey(password: string): Promise<void> {
  dialogError.value = null;
  dialogBusy.value = true;
  try {
    const answer = await call<{ recoveryKey: string }>(
      "making a recovery key",
      _post("/api/recovery", { password }),
    );
    recoveryKey.value = answer.recoveryKey;
  } catch (err) {
    dialogError.value = (err as Error).message;
  } finally {
    dialogBusy.value = false;
  }
}

/** Closes whichever user dialog is open. */
export function closeDialogs(): void {
  logoutAsked.value = false;
  passwordAsked.value = false;
  recoveryAsked.value = false;
  dialogError.value = null;
  passwordChanged.value = false;
  recoveryKey.value = null;
}
