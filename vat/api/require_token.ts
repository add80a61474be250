import type { MiddlewareHandler } from "hono";
import { getCookie } from "hono/cookie";
import { HTTPException } from "hono/http-exception";
import { timingSafeEqual } from "node:crypto";

/** Options of `requireToken`. */
export interface RequireTokenOptions {
  /** The daemon's access token (kept in the state directory, mode 0600). */
  token: string;
  /** The browsers' sessions (cookie `cookie`); without it only the token is accepted. */
  sessions?: { valid(id: string | undefined): boolean };
  /** The session cookie's name. */
  cookie?: string;
}

/** Whether `given` is the token; the comparison takes the same time whatever the guess. */
export function isToken(given: string, token: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(token);
  return a.length === b.length && timingSafeEqual(a, b);
}

/**
 * Refuses (401) every request without either the daemon's token as `Authorization:
 * Bearer <token>` (the CLI) or a valid session cookie (the browser). A cookie is sent by
 * the browser whoever made the page, so requests that change state (and WebSocket
 * upgrades, which SameSite does not always cover) must also come from our own origin:
 * `Sec-Fetch-Site: same-origin`, or, from browsers that do not send it, an `Origin`
 * matching the `Host` (403 otherwise).
 */
export function requireToken(options: RequireTokenOptions): MiddlewareHandler {
  return async function requireTokenMiddleware(c, next) {
    const header = c.req.header("authorization") ?? "";
    if (header !== "") {
      if (!header.startsWith("Bearer ") || !isToken(header.slice(7), options.token)) {
        throw new HTTPException(401, { message: "missing or wrong access token" });
      }
      return await next();
    }
    const session = options.cookie ? getCookie(c, options.cookie) : undefined;
    if (!options.sessions?.valid(session)) {
      throw new HTTPException(401, { message: "not signed in (missing or expired session)" });
    }
    const changesState = !["GET", "HEAD"].includes(c.req.method) ||
      (c.req.header("upgrade") ?? "").toLowerCase() === "websocket";
    if (changesState && !_sameOrigin(c.req.raw)) {
      throw new HTTPException(403, {
        message: "refused: the request did not come from the VAT's UI",
      });
    }
    await next();
  };
}

function _sameOrigin(req: Request): boolean {
  const site = req.headers.get("sec-fetch-site");
  if (site !== null) return site === "same-origin";
  const origin = req.headers.get("origin");
  const host = req.headers.get("host");
  if (origin === null || host === null) return false;
  try {
    return new URL(origin).host === host;
  } catch {
    return false;
  }
}
