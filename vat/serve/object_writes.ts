/**
 * Writes of the repository server: PUT replaces an object, PUT with
 * `If-None-Match: *` creates it only if absent (201, or 412 when it exists: the commit
 * point of a version), DELETE removes it (docs/HTTP.md). They run after
 * `writeAuthorisation` and store through `FileStore`, which makes each write atomic
 * and durable and lets exactly one of racing creates win.
 *
 * @module
 */

import type { Handler } from "hono";
import { HTTPException } from "hono/http-exception";
import type { FileStore } from "../repo/store_file.ts";
import type { ServeEnv } from "./serve_env.ts";

/** The PUT handler. */
export function putObject(store: FileStore): Handler<ServeEnv> {
  return async function putObject(c) {
    const { key } = c.get("objectPath");
    const body = c.get("body");
    const ifNoneMatch = c.req.header("if-none-match");
    if (c.req.header("if-match") !== undefined) {
      throw new HTTPException(400, { message: "If-Match is not supported" });
    }
    if (ifNoneMatch === undefined) {
      await store.put(key, body);
      return c.body(null, 204);
    }
    if (ifNoneMatch.trim() !== "*") {
      throw new HTTPException(400, { message: 'If-None-Match must be "*" (create if absent)' });
    }
    if (await store.create(key, body)) return c.body(null, 201);
    throw new HTTPException(412, { message: `${key} already exists` });
  };
}

/** The DELETE handler. */
export function deleteObject(root: string, store: FileStore): Handler<ServeEnv> {
  return async function deleteObject(c) {
    const { key } = c.get("objectPath");
    // Deno.remove would also remove an empty directory, which is not an object.
    const info = await Deno.lstat(`${root}/${key}`).catch(() => null);
    if (info?.isDirectory) {
      throw new HTTPException(409, { message: `${key} is a directory, not an object` });
    }
    await store.delete(key);
    return c.body(null, 204);
  };
}
