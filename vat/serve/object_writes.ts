/**
 * Writes of the repository server: PUT replaces an object, PUT with
 * `If-None-Match: *` creates it only if absent (201, or 412 when it exists: the commit
 * point of a version), DELETE removes it (docs/HTTP.md). They run after
 * `writeAuthorisation` and stream the body through `FileStore` into a temporary file,
 * checked against its signed hash and length before it is put in place, which makes
 * each write atomic and durable and lets exactly one of racing creates win.
 *
 * @module
 */

import type { Handler } from "hono";
import { HTTPException } from "hono/http-exception";
import { createHash } from "node:crypto";
import type { FileStore } from "../repo/store_file.ts";
import type { ServeEnv } from "./serve_env.ts";

/** The PUT handler. */
export function putObject(root: string, store: FileStore): Handler<ServeEnv> {
  return async function putObject(c) {
    const { key } = c.get("objectPath");
    const upload = c.get("upload");
    const ifNoneMatch = c.req.header("if-none-match");
    if (c.req.header("if-match") !== undefined) {
      throw new HTTPException(400, { message: "If-Match is not supported" });
    }
    if (ifNoneMatch !== undefined && ifNoneMatch.trim() !== "*") {
      throw new HTTPException(400, { message: 'If-None-Match must be "*" (create if absent)' });
    }
    const exclusive = ifNoneMatch !== undefined;
    const created = await store.putStream(key, upload.parts(), {
      exclusive,
      check: () => upload.check(),
    });
    if (!exclusive) return c.body(null, 204);
    if (created) return c.body(null, 201);
    // A create whose reply was lost and is retried (or on NFS, a link reported as failed)
    // finds its own bytes there: that is a success (a committed object has a nonce).
    // The body was checked before the link was tried.
    if (await _sha256OfFile(`${root}/${key}`) === upload.declaredSha256) {
      return c.body(null, 201);
    }
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

/** The SHA-256 (hex) of a file, read in pieces; null when it is not a readable file. */
async function _sha256OfFile(path: string): Promise<string | null> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true });
  } catch {
    return null;
  }
  const hash = createHash("sha256");
  try {
    for await (const part of file.readable) hash.update(part);
  } catch {
    return null;
  }
  return hash.digest("hex");
}
