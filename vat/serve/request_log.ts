/**
 * One log line per write request (PUT, DELETE), whatever its outcome: when, who (peer
 * address and publisher key), what, the status and, on failure, why.
 *
 * @module
 */

import type { MiddlewareHandler } from "hono";
import type { ServeEnv } from "./serve_env.ts";

/** Middleware: logs every request whose method is not GET or HEAD through `log`. */
export function requestLog(log: (line: string) => void): MiddlewareHandler<ServeEnv> {
  return async function requestLog(c, next) {
    if (c.req.method === "GET" || c.req.method === "HEAD") return await next();
    const startMs = performance.now();
    await next();
    const addr = c.env?.remoteAddr;
    const peer = addr && "hostname" in addr ? addr.hostname : "-";
    const key = c.get("publisherKey") ?? "-";
    // The body read, or for a write refused before reading it, the size it announced.
    const bytes = c.get("upload")?.receivedBytes ?? (Number(c.req.header("content-length")) || 0);
    const ms = Math.round(performance.now() - startMs);
    // The raw target: a refused path such as "/../x" is logged as it was sent.
    const target = c.req.url.slice(c.req.url.indexOf("/", c.req.url.indexOf("://") + 3));
    const why = c.res.status >= 400 && c.error ? ` (${c.error.message})` : "";
    log(
      `${new Date().toISOString()} ${peer} ${c.req.method} ${target} ${c.res.status} ` +
        `${key} ${bytes} B ${ms} ms${why}`,
    );
  };
}
