/**
 * Browser sessions: the sign-in URL's token is traded once for a random session id,
 * which the browser keeps in an HttpOnly, SameSite=Strict cookie. Sessions live in
 * memory, so they end with the daemon (whose token is new at every start anyway).
 *
 * @module
 */

import { randomBytes } from "node:crypto";

/** The cookie that carries a browser's session id. */
export const SESSION_COOKIE = "vat_session";

/** How long a session lasts after sign-in. */
export const SESSION_MAX_AGE_MS = 24 * 60 * 60 * 1000;

/** The daemon's signed-in browsers. */
export class BrowserSessions {
  #expiry = new Map<string, number>();
  #revokeListeners = new Set<(id: string) => void>();

  /** Creates a session and returns its id (256 random bits). */
  create(): string {
    const id = randomBytes(32).toString("base64url");
    this.#expiry.set(id, Date.now() + SESSION_MAX_AGE_MS);
    return id;
  }

  /** Whether `id` names a session that has not expired or been revoked. */
  valid(id: string | undefined): boolean {
    if (!id) return false;
    const expiry = this.#expiry.get(id);
    if (expiry === undefined) return false;
    if (expiry < Date.now()) {
      this.#expiry.delete(id);
      return false;
    }
    return true;
  }

  /** Ends a session (sign-out); unknown ids are ignored. */
  revoke(id: string | undefined): void {
    if (!id || !this.#expiry.delete(id)) return;
    for (const listener of [...this.#revokeListeners]) listener(id);
  }

  /**
   * Calls `listener` with the id of every session revoked from now on (what a session
   * holds open, such as a screen relay, ends with it); returns the function that stops.
   */
  onRevoke(listener: (id: string) => void): () => void {
    this.#revokeListeners.add(listener);
    return () => this.#revokeListeners.delete(listener);
  }
}
