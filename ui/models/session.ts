/// <reference lib="dom" />
/**
 * The browser's session with the daemon: signed in or not, and the sign-in action that
 * trades the token (from the sign-in URL or typed in) for the session cookie.
 *
 * @module
 */

import { signal } from "@preact/signals";
import { api, ApiError, call } from "../api.ts";
import { loginError } from "./user.ts";

/** "unknown" until the first answer from the daemon. */
export const session = signal<"unknown" | "signed-out" | "signed-in">("unknown");
/** Why the last sign-in failed. */
export const signInError = signal<string | null>(null);
/** A sign-in is under way. */
export const signingIn = signal(false);

/** Asks the daemon whether this browser has a session. */
export async function checkSession(): Promise<void> {
  try {
    await call("checking the session", api.api.status.$get());
    session.value = "signed-in";
  } catch (err) {
    session.value = "signed-out";
    if (!(err instanceof ApiError && err.status === 401)) {
      signInError.value = (err as Error).message;
    }
  }
}

/** Signs in with the daemon's token; accepts the whole sign-in URL too. */
export async function signIn(tokenOrUrl: string): Promise<void> {
  const token = /#token=([^&]+)/.exec(tokenOrUrl)?.[1] ?? tokenOrUrl.trim();
  signingIn.value = true;
  signInError.value = null;
  try {
    await call("signing in", api.api.session.$post({ json: { token } }));
    session.value = "signed-in";
  } catch (err) {
    signInError.value = (err as Error).message;
    session.value = "signed-out";
  } finally {
    signingIn.value = false;
  }
}

/** Ends the session. */
export async function signOut(): Promise<void> {
  try {
    await call("signing out", api.api.session.$delete());
  } finally {
    session.value = "signed-out";
  }
}

/** The daemon said 401: the session ended (expired, or the daemon restarted). */
export function sessionLost(): void {
  session.value = "signed-out";
  signInError.value = "your session ended (the daemon restarted or it expired): sign in again";
  loginError.value = "you are logged out (your session ended): log in again";
}
