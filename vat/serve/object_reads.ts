/**
 * Reads of the repository server: objects with GET and HEAD, with single byte ranges
 * (so the server is also a valid static server for read-only clients), listings and
 * the capabilities probe (docs/HTTP.md).
 *
 * @module
 */

import type { Handler } from "hono";
import { HTTPException } from "hono/http-exception";
import { checkKey } from "../repo/store.ts";
import { DEFAULT_LIST_LIMIT, listingBody, MAX_LIST_LIMIT } from "./listing.ts";
import type { ServeContext, ServeEnv } from "./serve_env.ts";

/** The protocol version this server speaks, sent in every response's `Vat-Serve`. */
export const PROTOCOL_VERSION = 2;

const READ_BYTES = 256 * 1024;

/** A GET (and HEAD) handler serving the objects, listings and capabilities under `root`. */
export function objectReads(root: string): Handler<ServeEnv> {
  return async function objectReads(c) {
    const path = c.get("objectPath");
    if (path.query.has("capabilities")) {
      return c.json({ server: "vat serve", protocol: PROTOCOL_VERSION, write: true, list: true });
    }
    const dir = path.key === "" ? root : `${root}/${path.key}`;
    if (path.query.has("list")) {
      if (!path.isDirectory) {
        throw new HTTPException(400, {
          message: "a listing is of a directory: end the path with /",
        });
      }
      return _listing(c, dir);
    }
    if (path.isDirectory) {
      throw new HTTPException(404, { message: `${path.target} is a directory, not an object` });
    }
    return await _object(c, `${root}/${path.key}`);
  };
}

function _listing(c: ServeContext, dir: string): Response {
  const query = c.get("objectPath").query;
  const after = query.get("after") ?? "";
  if (after !== "") {
    try {
      checkKey(after);
    } catch (err) {
      throw new HTTPException(400, { message: `bad after=: ${(err as Error).message}` });
    }
  }
  const limitText = query.get("limit");
  const limit = limitText === null ? DEFAULT_LIST_LIMIT : Number(limitText);
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_LIST_LIMIT) {
    throw new HTTPException(400, { message: `bad limit=: an integer from 1 to ${MAX_LIST_LIMIT}` });
  }
  c.header("Content-Type", "text/plain; charset=utf-8");
  c.header("Cache-Control", "no-store");
  return c.body(listingBody(dir, after, limit));
}

async function _object(c: ServeContext, path: string): Promise<Response> {
  const notFound = () =>
    new HTTPException(404, { message: `${c.get("objectPath").key} does not exist` });
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true });
  } catch (err) {
    if (
      err instanceof Deno.errors.NotFound || err instanceof Deno.errors.NotADirectory ||
      err instanceof Deno.errors.IsADirectory
    ) throw notFound();
    throw err;
  }
  // Sizes come from the open file, so a concurrent replacement (a rename over the
  // name) cannot mix two versions: the open file is the old one, whole.
  let info: Deno.FileInfo;
  try {
    info = await file.stat();
  } catch (err) {
    file.close();
    throw err;
  }
  if (!info.isFile) {
    file.close();
    throw notFound();
  }
  const size = info.size;
  const modifiedMs = info.mtime?.getTime() ?? 0;
  c.header("Accept-Ranges", "bytes");
  c.header("Content-Type", "application/octet-stream");
  c.header("Last-Modified", new Date(modifiedMs).toUTCString());
  c.header("Vat-Modified-Ms", String(modifiedMs));

  let start = 0;
  let count = size;
  let status: 200 | 206 = 200;
  const range = parseRange(c.req.header("range"), size);
  if (range === "unsatisfiable") {
    file.close();
    c.header("Content-Range", `bytes */${size}`);
    return c.body(null, 416);
  }
  if (range) {
    start = range.start;
    count = range.end - range.start + 1;
    status = 206;
    c.header("Content-Range", `bytes ${range.start}-${range.end}/${size}`);
  }
  c.header("Content-Length", String(count));
  // Hono answers HEAD by running this GET handler and dropping the body it returns,
  // so a HEAD must not open a stream that nobody would ever close.
  if (c.req.method === "HEAD" || count === 0) {
    file.close();
    return c.body(null, status);
  }
  return c.body(await _fileStream(file, start, count), status);
}

/**
 * Parses a `Range` header against an object of `size` bytes: a single range
 * (`bytes=a-b`, `bytes=a-`, `bytes=-n`), "unsatisfiable" when it starts at or after the
 * end, or null when there is none or it is not one we serve (several ranges, bad
 * syntax), in which case the whole object is sent, as RFC 9110 allows.
 */
export function parseRange(
  header: string | undefined,
  size: number,
): { start: number; end: number } | "unsatisfiable" | null {
  const m = header ? /^bytes=(\d*)-(\d*)$/.exec(header.trim()) : null;
  if (!m || (m[1] === "" && m[2] === "")) return null;
  if (m[1] === "") {
    const suffix = Number(m[2]);
    if (suffix === 0 || size === 0) return "unsatisfiable";
    return { start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(m[1]);
  if (m[2] !== "" && Number(m[2]) < start) return null;
  if (start >= size) return "unsatisfiable";
  return { start, end: m[2] === "" ? size - 1 : Math.min(Number(m[2]), size - 1) };
}

async function _fileStream(
  file: Deno.FsFile,
  start: number,
  count: number,
): Promise<ReadableStream<Uint8Array>> {
  let closed = false;
  const close = () => {
    if (!closed) file.close();
    closed = true;
  };
  try {
    if (start > 0) await file.seek(start, Deno.SeekMode.Start);
  } catch (err) {
    close();
    throw err;
  }
  let left = count;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const buffer = new Uint8Array(Math.min(left, READ_BYTES));
        const n = await file.read(buffer);
        if (n === null) {
          // Truncated in place while being sent: fail the response rather than send
          // fewer bytes than its Content-Length promised.
          throw new Error("the file shrank while it was being sent");
        }
        left -= n;
        controller.enqueue(buffer.subarray(0, n));
        if (left === 0) {
          close();
          controller.close();
        }
      } catch (err) {
        close();
        controller.error(err);
      }
    },
    cancel: close,
  });
}
