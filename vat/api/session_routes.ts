/**
 * Signing in and out of the browser UI. `POST /api/session {"token"}` trades the
 * daemon's token (from its sign-in URL) for a session cookie: HttpOnly (no script can
 * read it), SameSite=Strict (other sites' pages cannot send it). `DELETE /api/session`
 * (behind `requireToken`) ends the session.
 *
 * @module
 */

import { Hono } from "hono";
import { deleteCookie, getCookie, setCookie } from "hono/cookie";
import { HTTPException } from "hono/http-exception";
import { isToken } from "./require_token.ts";
import { type BrowserSessions, SESSION_COOKIE, SESSION_MAX_AGE_MS } from "./browser_sessions.ts";

/** `POST /` : sign in with the token. Mounted at `/api/session`, ahead of `requireToken`. */
export function signInRoutes(token: string, sessions: BrowserSessions) {
  return new Hono().post("/", async (c) => {
    const body = await c.req.json().catch(() => ({})) as { token?: unknown };
    if (typeof body.token !== "string" || !isToken(body.token, token)) {
      throw new HTTPException(401, {
        message: "wrong access token: use the sign-in URL that the vat daemon printed at start",
      });
    }
    setCookie(c, SESSION_COOKIE, sessions.create(), {
      httpOnly: true,
      sameSite: "Strict",
      path: "/",
      maxAge: Math.floor(SESSION_MAX_AGE_MS / 1000),
    });
    return c.json({ signedIn: true });
  });
}

/** `DELETE /`: sign out. Mounted at `/api/session`, behind `requireToken`. */
export function signOutRoutes(sessions: BrowserSessions) {
  return new Hono().delete("/", (c) => {
    sessions.revoke(getCookie(c, SESSION_COOKIE));
    deleteCookie(c, SESSION_COOKIE, { path: "/" });
    return c.json({ signedIn: false });
  });
}
