import type { MiddlewareHandler } from "hono";
import { HTTPException } from "hono/http-exception";
import { timingSafeEqual } from "node:crypto";

/** Options of `requireToken`. */
export interface RequireTokenOptions {
  /** The daemon's access token (kept in the state directory, mode 0600). */
  token: string;
}

/**
 * Refuses (401) every request without the daemon's token as `Authorization: Bearer
 * <token>`. The comparison takes the same time whatever the guess.
 */
export function requireToken(options: RequireTokenOptions): MiddlewareHandler {
  const expected = Buffer.from(options.token);
  return async function requireTokenMiddleware(c, next) {
    const header = c.req.header("authorization") ?? "";
    const given = Buffer.from(header.startsWith("Bearer ") ? header.slice(7) : "");
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
      throw new HTTPException(401, { message: "missing or wrong access token" });
    }
    await next();
  };
}
