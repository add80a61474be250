/**
 * Request paths of the repository server. A path names an object (or, ending in "/", a
 * directory) relative to the served root with the same plain segments as a store key
 * (`checkKey`), so no request can reach outside the root. Percent-encoding is refused
 * outright rather than decoded: keys never need it, and refusing it leaves exactly one
 * spelling of each path, which is also the one a signature covers.
 *
 * @module
 */

import type { MiddlewareHandler } from "hono";
import { HTTPException } from "hono/http-exception";
import { VatError } from "../errors.ts";
import { checkKey } from "../repo/store.ts";
import type { ServeEnv } from "./serve_env.ts";

/** A parsed request path. */
export interface ObjectPath {
  /** The request target exactly as received: path and query (what a signature covers). */
  target: string;
  /** The root-relative key without a leading or trailing "/"; "" for the root. */
  key: string;
  /** Whether the path ends with "/" (a directory: listings). */
  isDirectory: boolean;
  query: URLSearchParams;
}

/**
 * Parses the target of a request URL as `Deno.serve` gives it (unnormalised, so "/../"
 * is still visible here). Throws `HTTPException(400)` for anything but plain segments.
 */
export function parseObjectPath(url: string): ObjectPath {
  const start = url.indexOf("/", url.indexOf("://") + 3);
  const target = start < 0 ? "/" : url.slice(start).replace(/#.*$/, "");
  const question = target.indexOf("?");
  const path = question < 0 ? target : target.slice(0, question);
  const query = new URLSearchParams(question < 0 ? "" : target.slice(question + 1));
  if (path.includes("%")) {
    throw new HTTPException(400, {
      message: `bad path ${path}: object paths are plain names and are not percent-encoded`,
    });
  }
  if (path === "/") return { target, key: "", isDirectory: true, query };
  const isDirectory = path.endsWith("/");
  const key = path.slice(1, isDirectory ? -1 : undefined);
  try {
    checkKey(key);
  } catch (err) {
    if (!(err instanceof VatError)) throw err;
    throw new HTTPException(400, { message: `bad path ${path}: ${err.message}`, cause: err });
  }
  return { target, key, isDirectory, query };
}

/** Middleware: parses and checks the request path into `c.get("objectPath")`. */
export function objectPath(): MiddlewareHandler<ServeEnv> {
  return async function objectPath(c, next) {
    c.set("objectPath", parseObjectPath(c.req.url));
    await next();
  };
}
