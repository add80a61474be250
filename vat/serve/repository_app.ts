/**
 * The repository server's Hono app: a directory tree of repositories served over HTTP
 * (docs/HTTP.md). Reads are open, like any static server's; writes are signed by a
 * publisher key and authorised per repository (`writeAuthorisation`); objects are
 * stored through `FileStore`, whose atomic writes and exclusive creates make the
 * server's guarantees.
 *
 * @module
 */

import { Hono } from "hono";
import { HTTPException } from "hono/http-exception";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { NotFoundError, PermanentError, UsageError } from "../errors.ts";
import { FileStore } from "../repo/store_file.ts";
import { objectPath } from "./object_path.ts";
import { objectReads, PROTOCOL_VERSION } from "./object_reads.ts";
import { deleteObject, putObject } from "./object_writes.ts";
import { ReplayGuard } from "./replay_guard.ts";
import { SIGNATURE_SCHEME } from "../auth/request_signature.ts";
import { requestLog } from "./request_log.ts";
import type { ServeEnv } from "./serve_env.ts";
import { writeAuthorisation } from "./write_authorisation.ts";
import { directoryLogin, hideKeySlots } from "./directory_login.ts";

/** Options of `repositoryApp`. */
export interface RepositoryAppOptions {
  /** The served directory (absolute, existing). */
  root: string;
  /** Public key ids that may write anywhere under `root`, repo.json included. */
  allowKeys?: Iterable<string>;
  /** Where the one line per write request goes (default: stdout). */
  log?: (line: string) => void;
  /** The largest object a PUT may carry (default 1 GiB). */
  maxObjectBytes?: number;
  /** How long a write's body may stall before it is dropped (default 30 s). */
  bodyTimeoutMs?: number;
  /** Requests handled at once; more are refused with 503 (default 64). */
  maxConcurrentRequests?: number;
  /**
   * The SQLite file of the replay guard, so that a restart does not forget the signed
   * requests it saw (default: in memory only).
   */
  replayFile?: string;
  /**
   * The names (`host:port`) this server is reached by: writes signed for any other Host
   * are refused (421). Default: any Host (the signature still names it).
   */
  hosts?: string[];
  /** The server's clock (tests move it). */
  nowMs?: () => number;
}

/** A repository server's app and what it holds open. */
export interface RepositoryApp {
  app: Hono<ServeEnv>;
  /** Closes the replay guard's database. */
  close(): void;
}

/** Builds the repository server's app. */
export function repositoryApp(options: RepositoryAppOptions): RepositoryApp {
  const root = options.root;
  const store = new FileStore(root);
  const log = options.log ?? ((line: string) => console.log(line));
  const replayGuard = new ReplayGuard(options.replayFile);
  const authorise = writeAuthorisation({
    root,
    allowKeys: new Set(options.allowKeys ?? []),
    maxObjectBytes: options.maxObjectBytes ?? 1024 ** 3,
    bodyTimeoutMs: options.bodyTimeoutMs ?? 30_000,
    replayGuard,
    hosts: (options.hosts ?? []).map((h) => h.toLowerCase()),
    nowMs: options.nowMs,
  });
  const maxConcurrent = options.maxConcurrentRequests ?? 64;
  let inFlight = 0;

  const app = new Hono<ServeEnv>();
  app.use(async function serveHeader(c, next) {
    await next();
    c.header("Vat-Serve", String(PROTOCOL_VERSION));
  });
  app.use(requestLog(log));
  app.use(async function concurrencyLimit(c, next) {
    if (inFlight >= maxConcurrent) {
      c.header("Retry-After", "1");
      throw new HTTPException(503, {
        message: `the server is handling ${maxConcurrent} requests already; retry shortly`,
      });
    }
    inFlight++;
    try {
      await next();
    } finally {
      inFlight--;
    }
  });
  app.use(objectPath());
  app.get("*", hideKeySlots(root), objectReads(root));
  app.post("*", directoryLogin({ root, nowMs: options.nowMs }));
  app.put("*", authorise, putObject(root, store));
  app.delete("*", authorise, deleteObject(root, store));
  app.all("*", (c) => {
    c.header("Allow", "GET, HEAD, PUT, DELETE, POST");
    return c.json({ error: `${c.req.method} is not supported` }, 405);
  });
  app.onError((err, c) => {
    const status = _statusOf(err);
    if (status === 500) log(`error serving ${c.req.method} ${c.req.url}: ${err.stack ?? err}`);
    if (status === 401) c.header("WWW-Authenticate", SIGNATURE_SCHEME);
    const message = status === 500
      ? "internal server error (see the server's log)"
      : _relativeToRoot(err.message, root);
    // A write refused before its body was read: the connection is not kept for the rest.
    if (c.req.method === "PUT" && status >= 400) c.header("Connection", "close");
    return c.json({ error: message }, status);
  });
  return { app, close: () => replayGuard.close() };
}

/** A message with the served directory's absolute path taken out (keys are relative). */
function _relativeToRoot(message: string, root: string): string {
  return message.replaceAll(`${root}/`, "").replaceAll(root, ".");
}

function _statusOf(err: Error): ContentfulStatusCode {
  if (err instanceof HTTPException) return err.status as ContentfulStatusCode;
  if (err instanceof UsageError) return 400;
  if (err instanceof NotFoundError) return 404;
  // What FileStore reports as permanent: a full disk, a directory it may not write.
  if (err instanceof PermanentError) return 507;
  // A key whose path runs into a file, or names a directory.
  if (
    err instanceof Deno.errors.NotADirectory || err instanceof Deno.errors.IsADirectory ||
    err instanceof Deno.errors.AlreadyExists
  ) return 409;
  return 500;
}
