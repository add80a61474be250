/**
 * Logging in and out of a VAT with a directory (docs/USERS.md, "On the VAT"; API in
 * docs/DAEMON.md). `POST /api/login {"name", "password"}` needs no session: it logs the
 * user in on the daemon and gives the browser a session cookie bound to that user;
 * the CLI (`vat login`) uses the same route. Behind the session: `GET /api/whoami`,
 * `POST /api/logout {"suspend"?}`, `POST /api/password {"old", "new"}`,
 * `POST /api/recovery {"password"}`.
 *
 * @module
 */

import { Hono, type MiddlewareHandler } from "hono";
import { getCookie, setCookie } from "hono/cookie";
import { HTTPException } from "hono/http-exception";
import { UsageError } from "../errors.ts";
import type { DirectoryUsers } from "../users/directory_users.ts";
import { type BrowserSessions, SESSION_COOKIE, SESSION_MAX_AGE_MS } from "./browser_sessions.ts";

const MAX_BODY_BYTES = 4096;

/** Which user each browser session was opened by (sessions of the token have none). */
export class SessionUsers {
  readonly #users = new Map<string, string>();
  bind(session: string, name: string): void {
    this.#users.set(session, name);
  }
  userOf(session: string | undefined): string | null {
    return session ? this.#users.get(session) ?? null : null;
  }
  /** Ends every session of `name` but `keep`. */
  revokeUser(name: string, sessions: BrowserSessions, keep?: string): void {
    for (const [id, user] of this.#users) {
      if (user === name && id !== keep) {
        sessions.revoke(id);
        this.#users.delete(id);
      }
    }
  }
}

/**
 * Reads a small JSON body. It must say `Content-Type: application/json`: a browser sends
 * that cross-site only after a CORS preflight, which the daemon never grants, so another
 * site's page cannot post a login (or guess passwords) through the user's browser.
 */
async function _body(req: Request): Promise<Record<string, unknown>> {
  if (!(req.headers.get("content-type") ?? "").startsWith("application/json")) {
    throw new HTTPException(415, { message: "send the body as Content-Type: application/json" });
  }
  const tooLarge = () => new HTTPException(413, { message: `at most ${MAX_BODY_BYTES} bytes` });
  if (Number(req.headers.get("content-length") ?? 0) > MAX_BODY_BYTES) throw tooLarge();
  const parts: Uint8Array[] = [];
  let total = 0;
  for await (const part of req.body ?? []) {
    total += part.length;
    if (total > MAX_BODY_BYTES) throw tooLarge();
    parts.push(part);
  }
  const text = new TextDecoder().decode(Buffer.concat(parts));
  try {
    const value = JSON.parse(text || "{}");
    if (typeof value === "object" && value !== null) return value;
  } catch {
    // below
  }
  throw new UsageError("the body must be a JSON object");
}

function _string(body: Record<string, unknown>, field: string): string {
  const value = body[field];
  if (typeof value !== "string" || value === "") {
    throw new UsageError(`give "${field}" as a non-empty string`);
  }
  return value;
}

/** `GET /` and `POST /` of `/api/login`, mounted ahead of the session check. */
export function loginRoutes(
  users: DirectoryUsers | undefined,
  sessions: BrowserSessions,
  sessionUsers: SessionUsers,
) {
  return new Hono()
    .get("/", async (c) => {
      if (!users) return c.json({ directory: false });
      return c.json({ directory: true, reachable: await users.reachable() });
    })
    .post("/", async (c) => {
      if (!users) {
        throw new HTTPException(404, {
          message: "this VAT has no directory of users (start it with --directory DIR)",
        });
      }
      const body = await _body(c.req.raw);
      const user = await users.login(_string(body, "name"), _string(body, "password"));
      const id = sessions.create();
      sessionUsers.bind(id, user.name);
      setCookie(c, SESSION_COOKIE, id, {
        httpOnly: true,
        sameSite: "Strict",
        path: "/",
        maxAge: Math.floor(SESSION_MAX_AGE_MS / 1000),
      });
      return c.json({ name: user.name, displayName: user.displayName, offline: user.offline });
    });
}

/**
 * Middleware behind the session check: a browser session of a user who is no longer
 * the one logged in (logged out, disabled, or another user since) reaches only
 * `whoami`, `logout` and `session`; everything else is 401.
 */
export function requireCurrentUser(
  users: DirectoryUsers | undefined,
  sessionUsers: SessionUsers,
): MiddlewareHandler {
  return async function requireCurrentUser(c, next) {
    const owner = sessionUsers.userOf(getCookie(c, SESSION_COOKIE));
    const path = new URL(c.req.url).pathname;
    if (
      users && owner !== null && owner !== users.current?.name &&
      !/^\/api\/(whoami|logout|session)\/?$/.test(path)
    ) {
      throw new HTTPException(401, { message: "logged out: log in again" });
    }
    await next();
  };
}

/** `whoami`, `logout`, `password` and `recovery`, behind the session check. */
export function userRoutes(users: DirectoryUsers | undefined) {
  const need = () => {
    if (!users) {
      throw new HTTPException(404, {
        message: "this VAT has no directory of users (start it with --directory DIR)",
      });
    }
    return users;
  };
  return new Hono()
    .get("/whoami", (c) => c.json(need().whoami()))
    .post("/logout", async (c) => {
      const body = await _body(c.req.raw);
      if (body.suspend !== undefined && typeof body.suspend !== "boolean") {
        throw new UsageError('"suspend" is true or false');
      }
      await need().logout({ suspend: body.suspend === true });
      return c.json(need().whoami());
    })
    .post("/password", async (c) => {
      const body = await _body(c.req.raw);
      await need().changePassword(_string(body, "old"), _string(body, "new"));
      return c.json({ changed: true });
    })
    .post("/recovery", async (c) => {
      const body = await _body(c.req.raw);
      return c.json({ recoveryKey: await need().newRecoveryKey(_string(body, "password")) });
    });
}
